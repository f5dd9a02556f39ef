"""Several hosts on one PostgreSQL database, and its faults: claims split among real
run-due processes (each playing a host: ``SYNCCTL_HOSTNAME``), leases that outlive a killed
host and are reaped by another, a server restarted mid-run, and the password rules.

Skipped locally without PostgreSQL or psycopg; CI (CI=true) must run them."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Callable, Iterator

import pytest

from syncctl.store import Store
from tests.helpers import HANG_GUARD, Result, add, wait_for
from tests.httpsources import HTTPSource, gated, json_body
from tests.pgcluster import SECRET_PASSWORD, SECRET_USER


@pytest.fixture
def pstore(pg_url: str) -> Iterator[Store]:
    opened = Store.open(pg_url)
    yield opened
    opened.close()


def as_host(pg_url: str, host: str, env: dict[str, str] | None) -> dict[str, str]:
    """The variables that make a syncctl process a host on the test's PostgreSQL database."""
    return {"SYNCCTL_DB": pg_url, "SYNCCTL_HOSTNAME": host, **(env or {})}


@pytest.fixture
def pcli(pg_url: str, cli) -> Callable[..., Result]:  # noqa: ANN001
    """``syncctl ARGS…`` against the test's PostgreSQL database, as host ``host-b`` unless
    ``host=`` says otherwise (conftest's ``cli``, pointed there)."""

    def run(*args: str, host: str = "host-b", env: dict[str, str] | None = None) -> Result:
        return cli(*args, env=as_host(pg_url, host, env))

    return run


@pytest.fixture
def pspawn(pg_url: str, spawn) -> Callable[..., subprocess.Popen]:  # noqa: ANN001
    """Start ``syncctl ARGS…`` in the background as host ``host-a`` unless ``host=`` says
    otherwise (conftest's ``spawn``, which kills what is left at the end)."""

    def start(*args: str, host: str = "host-a", env: dict[str, str] | None = None) -> subprocess.Popen:
        return spawn(*args, env=as_host(pg_url, host, env))

    return start


def rows(store: Store, sql: str, params: tuple = ()) -> list[dict]:
    return list(store._query(sql, params))


def make_all_due(store: Store) -> None:
    store.conn.execute("UPDATE integrations SET next_sync_at = '2000-01-01T00:00:00.000Z'")


def run_due_on_host_a_held_at_slow(
    store: Store, pspawn: Callable[..., subprocess.Popen], source: HTTPSource, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, threading.Event]:
    """``run-due`` on host-a, syncing "slow", whose source answers once the returned gate
    is set; returns when the request has reached the source."""
    gate = source.gate()
    add(store, "slow", source.add("/slow", gated(json_body([{"id": 1}]), gate)))
    make_all_due(store)
    run = pspawn("run-due", host="host-a", env=env)
    source.wait_hits("/slow")
    return run, gate


def one_line(result: Result, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("syncctl: "), result.stderr
    return result.stderr


# -- the URL and its password ----------------------------------------------------------------------


def test_a_literal_password_is_refused_and_never_shown(pcli, pg_cluster, pg_url):
    url = pg_url.replace("postgres@", f"{SECRET_USER}:{SECRET_PASSWORD}@")

    line = one_line(pcli("--db", url, "list"), 2)

    assert "password in plain text" in line and "${VAR}" in line and "PGPASSWORD" in line
    assert SECRET_PASSWORD not in line and SECRET_PASSWORD[:6] not in line


def test_the_password_comes_from_a_variable_pgpassword_or_pgpass(pcli, pg_url, tmp_path):
    by_variable = pg_url.replace("postgres@", f"{SECRET_USER}:${{SYNCCTL_PG_PASSWORD}}@")
    as_user = pg_url.replace("postgres@", f"{SECRET_USER}@")
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:*:*:{SECRET_USER}:{SECRET_PASSWORD}\n")
    pgpass.chmod(0o600)

    results = [
        pcli("--db", by_variable, "list", "--json", env={"SYNCCTL_PG_PASSWORD": SECRET_PASSWORD}),
        pcli("--db", as_user, "list", "--json", env={"PGPASSWORD": SECRET_PASSWORD}),
        pcli("--db", as_user, "list", "--json", env={"PGPASSFILE": str(pgpass)}),
    ]

    assert [(r.returncode, r.stdout.strip(), r.stderr) for r in results] == [(0, "[]", "")] * 3


def test_a_wrong_or_missing_password_is_one_line_exit_3(pcli, pg_url):
    as_user = pg_url.replace("postgres@", f"{SECRET_USER}:${{PW}}@")

    wrong = one_line(pcli("--db", as_user, "list", env={"PW": "not-the-Password-9"}), 3)
    unset = one_line(pcli("--db", as_user, "list"), 3)
    none = one_line(pcli("--db", pg_url.replace("postgres@", f"{SECRET_USER}@"), "list",
                         env={"PGPASSFILE": "/nonexistent"}), 3)  # fmt: skip

    assert f"refused the password of user {SECRET_USER}" in wrong and "not-the-Password-9" not in wrong
    assert "PW is not set" in unset
    assert "asks for a password and none was given" in none


# -- hosts sharing the work ---------------------------------------------------------------------------


def test_three_hosts_sync_each_of_150_due_integrations_exactly_once(pstore, pspawn, source, pg_url):
    for n in range(150):
        add(pstore, f"i{n:03}", source.add(f"/i{n:03}", json_body([{"id": n}])))
    make_all_due(pstore)

    procs = [pspawn("run-due", "--concurrency", "8", host=f"host-{h}") for h in "abc"]
    outcomes = [(p.wait(HANG_GUARD), p.stderr.read()) for p in procs]

    assert outcomes == [(0, "")] * 3
    assert {source.count(f"/i{n:03}") for n in range(150)} == {1}
    logs = rows(pstore, "SELECT integration_id, status, owner FROM sync_logs")
    assert len(logs) == 150 and {log["status"] for log in logs} == {"SUCCESS"}
    assert len({log["integration_id"] for log in logs}) == 150
    assert len({log["owner"].split(":")[0] for log in logs}) >= 2  # the work was shared


def test_sync_busy_on_another_host_exits_75_naming_host_and_pid(pstore, pspawn, pcli, source):
    gate = source.gate()
    add(pstore, "slow", source.add("/slow", gated(json_body([{"id": 1}]), gate)))
    first = pspawn("sync", "slow", host="host-a")
    source.wait_hits("/slow")

    busy = pcli("sync", "slow", host="host-b")
    gate.set()

    assert busy.returncode == 75
    assert f"pid {first.pid} on host host-a" in busy.stdout + busy.stderr
    assert first.wait(HANG_GUARD) == 0


@pytest.mark.slow
def test_a_live_sync_keeps_its_lease_and_a_killed_hosts_is_reaped_by_another(pstore, pspawn, pcli, source):
    lease = {"SYNCCTL_LEASE_SECONDS": "2"}
    host_a, gate = run_due_on_host_a_held_at_slow(pstore, pspawn, source, env=lease)
    [log] = pstore.unfinished_logs()

    # Three leases later the heartbeat has renewed it: another host leaves it alone.
    pstore.conn.execute("SELECT pg_sleep(6)")
    looked = pcli("history", "slow", "--json", env=lease)
    assert looked.returncode == 0 and looked.json()[0]["status"] == "RUNNING"

    host_a.send_signal(signal.SIGKILL)
    host_a.wait(HANG_GUARD)
    wait_for(lambda: pstore.unfinished_logs()[0].lease_expired, "the dead host's lease to run out")
    reaped = pcli("history", "slow", "--json", env=lease).json()[0]
    gate.set()
    again = pcli("sync", "slow", env=lease)

    assert reaped["id"] == log.id and reaped["status"] == "FAILED"
    assert reaped["error_message"].startswith("interrupted: lease expired (pid ")
    assert "on host host-a" in reaped["error_message"]
    assert again.returncode == 0, again.stderr
    assert pstore.get("slow").consecutive_failures == 0 and pstore.unfinished_logs() == []


def test_a_killed_sync_on_the_same_host_is_reaped_at_once_by_its_pid(pstore, pspawn, pcli, source):
    # The default 60 s lease: only the pid can tell.
    run, gate = run_due_on_host_a_held_at_slow(pstore, pspawn, source)
    run.send_signal(signal.SIGKILL)
    run.wait(HANG_GUARD)
    gate.set()

    log = pcli("history", "slow", "--json", host="host-a").json()[0]

    assert log["status"] == "FAILED" and f"process {run.pid} ended" in log["error_message"]


# -- the database going away ------------------------------------------------------------------------


def test_postgres_restarted_mid_run_loses_nothing_and_the_next_tick_works(pg_cluster, pg_url, pstore, pspawn, pcli,
                                                                          source):
    add(pstore, "kept", source.add("/kept", json_body([{"id": n} for n in range(50)])))
    assert pcli("sync", "kept").returncode == 0
    gate = source.gate()
    for name in ("a", "b"):
        add(pstore, name, source.add(f"/{name}", gated(json_body([{"id": 1}]), gate)))
    make_all_due(pstore)
    pstore.conn.execute("UPDATE integrations SET next_sync_at = '2999-01-01T00:00:00.000Z' WHERE name = 'kept'")
    run = pspawn("run-due", host="host-a")
    source.wait_hits("/a")
    source.wait_hits("/b")
    pstore.close()

    pg_cluster.pg_ctl("stop", "-m", "fast")
    try:
        away = pcli("list", host="host-a")
        gate.set()
        run.wait(HANG_GUARD)
        lost = run.stderr.read()
    finally:
        pg_cluster.pg_ctl("start")

    line = one_line(away, 3)
    assert "cannot reach PostgreSQL postgres@127.0.0.1:" in line and "connection refused" in line
    assert run.returncode == 3, lost
    assert lost.count("\n") == 1 and "cannot reach PostgreSQL" in lost
    after = pcli("history", "--json", host="host-a")
    assert after.returncode == 0, after.stderr
    by_name = {log["integration"]: log for log in after.json()}
    assert by_name["a"]["status"] == by_name["b"]["status"] == "FAILED"  # reaped: its process is gone
    tick = pcli("run-due", host="host-a")
    assert (tick.returncode, tick.stderr) == (0, "")
    assert pcli("sync", "a", "b", host="host-a").returncode == 0
    kept = Store.open(pg_url)
    try:
        assert len(kept.records(kept.get("kept").id)) == 50
    finally:
        kept.close()


@pytest.mark.slow
def test_a_host_stopped_past_its_lease_is_reaped_and_its_late_finish_changes_nothing(pstore, pspawn, pcli, source):
    lease = {"SYNCCTL_LEASE_SECONDS": "2"}
    host_a, gate = run_due_on_host_a_held_at_slow(pstore, pspawn, source, env=lease)

    host_a.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: pstore.unfinished_logs()[0].lease_expired, "the stopped host's lease to run out")
        reaped = pcli("history", "slow", "--json", env=lease).json()[0]
    finally:
        host_a.send_signal(signal.SIGCONT)
    gate.set()
    host_a.wait(HANG_GUARD)
    final = pcli("history", "slow", "--json").json()

    assert reaped["status"] == "FAILED" and "lease expired" in reaped["error_message"]
    assert final == [reaped]  # the late finish found its log reaped and changed nothing
    assert host_a.returncode == 1 and "lease expired" in host_a.stderr.read()
