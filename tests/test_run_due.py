"""run-due as cron runs it (issue 4): real processes, a real HTTP server on 127.0.0.1, real
locks, races, SIGKILL, SIGTERM/SIGINT, and time travel with Debian's faketime."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from syncctl import liveness
from syncctl.timeutil import format_ts, parse_ts
from tests.helpers import HANG_GUARD, Result, ceil_second, query, run_syncctl, wait_for
from tests.httpsources import HTTPSource, drip, gated, hang_mid_body, json_body, send
from tests.httpsources import hang as hang_before_headers

# -- helpers -------------------------------------------------------------------------------------


def logs(db_path: Path, name: str | None = None) -> list[dict]:
    sql = "SELECT l.*, i.name FROM sync_logs l JOIN integrations i ON i.id = l.integration_id"
    if name:
        return query(db_path, sql + " WHERE i.name = ? ORDER BY l.id", (name,))
    return query(db_path, sql + " ORDER BY l.id")


def running(db_path: Path) -> list[dict]:
    return query(db_path, "SELECT * FROM sync_logs WHERE status IN ('RUNNING', 'PENDING')")


def integration(db_path: Path, name: str) -> dict:
    return query(db_path, "SELECT * FROM integrations WHERE name = ?", (name,))[0]


def records(db_path: Path) -> list[tuple]:
    rows = query(db_path, "SELECT integration_id, key, data, synced_at FROM records ORDER BY 1, 2")
    return [tuple(r.values()) for r in rows]


def integrity(db_path: Path) -> str:
    return query(db_path, "PRAGMA integrity_check")[0]["integrity_check"]


def make_due(db_path: Path, name: str) -> None:
    """Move an integration's next sync into the past, as the passing of time would."""
    import sqlite3

    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute(
            "UPDATE integrations SET next_sync_at = '2000-01-01T00:00:00.000Z' WHERE name = ?", (name,)
        )
    conn.close()


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def add(cli: Callable[..., Result], name: str, url: str, *extra: str) -> None:
    result = cli("add", name, "--url", url, "--interval", "1h", *extra)
    assert result.returncode == 0, result.stderr


def finish(proc: subprocess.Popen) -> Result:
    out, err = proc.communicate(timeout=HANG_GUARD)
    return Result(proc.returncode, out, err)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


# -- one at a time -------------------------------------------------------------------------------


def test_five_run_dues_started_together_fetch_each_due_integration_exactly_once(cli, spawn, source, db_path):
    names = ["alpha", "bravo", "charlie"]
    gate = source.gate()  # the syncs stay in flight until every other run-due has given up
    for name in names:
        add(cli, name, source.add(f"/{name}", gated(json_body([{"id": 1, "n": name}]), gate)))

    procs = [spawn("run-due") for _ in range(5)]
    for name in names:
        source.wait_hits(f"/{name}")
    wait_for(lambda: sum(p.poll() is not None for p in procs) == 4, "the four run-dues without the lock to exit")
    gate.set()
    results = [finish(p) for p in procs]

    assert [(r.returncode, r.stdout, r.stderr) for r in results] == [(0, "", "")] * 5
    assert {name: source.count(f"/{name}") for name in names} == dict.fromkeys(names, 1)
    assert sorted((log["name"], log["status"], log["trigger"]) for log in logs(db_path)) == [
        (name, "SUCCESS", "schedule") for name in names
    ]
    assert Path(f"{db_path}.lock").exists()


def test_sync_racing_run_due_exits_75_naming_the_holder_and_fetches_nothing(cli, spawn, source, db_path):
    gate = source.gate()
    add(cli, "slow", source.add("/slow", gated(json_body([{"id": 1}]), gate)))
    run = spawn("run-due")
    source.wait_hits("/slow")
    wait_for(lambda: running(db_path), "the RUNNING log")

    manual = cli("sync", "slow")
    gate.set()

    assert manual.returncode == 75, manual
    assert manual.stdout == ""
    assert len(lines(manual.stderr)) == 1
    assert "slow" in manual.stderr and f"pid {run.pid}" in manual.stderr
    assert (finish(run).returncode, source.count("/slow")) == (0, 1)
    assert [(log["status"], log["trigger"]) for log in logs(db_path)] == [("SUCCESS", "schedule")]


def test_a_live_sync_is_never_reaped_and_run_due_leaves_it_alone(cli, spawn, source, db_path):
    gate = source.gate()
    add(cli, "slow", source.add("/slow", gated(json_body([{"id": 1}]), gate)))
    manual = spawn("sync", "slow")
    source.wait_hits("/slow")
    wait_for(lambda: running(db_path), "the RUNNING log")

    for args in (["list"], ["history", "slow"], ["show", "slow"], ["run-due"]):
        result = cli(*args)
        assert result.returncode == 0, (args, result)
        assert [r["status"] for r in logs(db_path)] == ["RUNNING"], args
    assert cli("run-due").stderr == ""  # busy elsewhere: cron gets no mail about it

    gate.set()
    done = finish(manual)
    assert done.returncode == 0, done
    assert source.count("/slow") == 1
    assert [(log["status"], log["trigger"]) for log in logs(db_path)] == [("SUCCESS", "manual")]


def _insert_running(db_path: Path, name: str, pid: int, owner: str | None) -> int:
    import sqlite3

    conn = sqlite3.connect(db_path)
    with conn:
        cursor = conn.execute(
            "INSERT INTO sync_logs (integration_id, trigger, status, attempt, started_at, pid, owner)"
            " SELECT id, 'manual', 'RUNNING', 1, ?, ?, ? FROM integrations WHERE name = ?",
            (format_ts(now_utc()), pid, owner, name),
        )
    conn.close()
    return cursor.lastrowid


def test_a_reused_pid_does_not_keep_a_dead_sync_running(cli, source, db_path):
    add(cli, "reused", source.add("/reused", json_body([])))
    add(cli, "alive", source.add("/alive", json_body([])))
    # This test process is alive; a token with its pid but another start time is what a
    # sync left behind when its pid was later given to an unrelated process.
    pid = os.getpid()
    host_boot_pid, ticks = liveness.owner_token(pid).rsplit(":", 1)
    reused = _insert_running(db_path, "reused", pid, f"{host_boot_pid}:{int(ticks) + 4242}")
    alive = _insert_running(db_path, "alive", pid, liveness.owner_token(pid))

    assert cli("list").returncode == 0

    rows = {r["id"]: r for r in logs(db_path)}
    assert rows[reused]["status"] == "FAILED"
    assert "interrupted" in rows[reused]["error_message"]
    assert rows[alive]["status"] == "RUNNING"  # the owner really is alive: never reaped


def test_a_sync_from_before_a_reboot_is_reaped(cli, source, db_path):
    add(cli, "rebooted", source.add("/rebooted", json_body([])))
    host, _boot, pid, ticks = liveness.owner_token(os.getpid()).rsplit(":", 3)
    log_id = _insert_running(db_path, "rebooted", int(pid), f"{host}:another-boot-id:{pid}:{ticks}")

    assert cli("history", "--json").returncode == 0

    row = {r["id"]: r for r in logs(db_path)}[log_id]
    assert row["status"] == "FAILED" and "interrupted" in row["error_message"]


# -- crashes -------------------------------------------------------------------------------------


def _killed_mid_sync(cli, spawn, source: HTTPSource, db_path: Path, *, reap: bool = True):  # noqa: ANN202
    """Two integrations synced once, then run-due SIGKILLed while it fetches one of them
    again from a source that hangs mid-body. Returns (records before, the killed process)."""
    add(cli, "steady", source.add("/steady", json_body([{"id": i, "v": "s"} for i in range(5)])))
    add(cli, "slow", source.add("/slow", json_body([{"id": i, "v": "x"} for i in range(3)])))
    first = cli("run-due")
    assert (first.returncode, first.stderr) == (0, "")
    before = records(db_path)
    assert len(before) == 8

    source.add("/slow", hang_mid_body())
    make_due(db_path, "slow")
    run = spawn("run-due")
    source.wait_hits("/slow", 2)
    wait_for(lambda: running(db_path), "the RUNNING log")
    run.send_signal(signal.SIGKILL)
    if reap:
        run.wait(timeout=HANG_GUARD)
        assert run.returncode == -signal.SIGKILL
    assert len(running(db_path)) == 1  # an orphan, until someone looks
    return before, run


@pytest.mark.parametrize("next_command", [["run-due"], ["list"], ["history", "--json"]])
def test_sigkill_mid_sync_is_recovered_by_the_next_command(cli, spawn, source, db_path, next_command):
    before, _ = _killed_mid_sync(cli, spawn, source, db_path)
    killed_at = now_utc()

    after = cli(*next_command)

    assert after.returncode == 0, after
    assert running(db_path) == []
    assert integrity(db_path) == "ok"
    assert records(db_path) == before  # the interrupted sync changed no stored record
    last = logs(db_path, "slow")[-1]
    assert (last["status"], last["trigger"], last["attempt"]) == ("FAILED", "schedule", 1)
    assert "interrupted" in last["error_message"] and last["error_hint"]
    assert last["completed_at"] is not None
    slow = integration(db_path, "slow")
    assert slow["consecutive_failures"] == 1
    assert slow["sync_enabled"] == 1
    retry_at = parse_ts(slow["next_sync_at"])
    # The retry is scheduled after the first backoff step (60 s ±10 %), not at once.
    assert killed_at + timedelta(seconds=50) < retry_at < now_utc() + timedelta(seconds=70)
    assert source.count("/slow") == 2  # and it was not fetched again by the recovering run
    listed = {i["name"]: i for i in cli("list", "--json").json()}
    assert listed["slow"]["state"] == "active" and "interrupted" in listed["slow"]["last_error"]
    assert listed["steady"]["last_status"] == "SUCCESS"


def test_a_killed_but_unreaped_process_counts_as_gone(cli, spawn, source, db_path):
    """A zombie (killed, its parent has not waited for it yet) still has a /proc entry
    with the same start time, but it will never finish its sync."""
    _, run = _killed_mid_sync(cli, spawn, source, db_path, reap=False)
    wait_for(lambda: _proc_state(run.pid) in ("Z", None), "the killed process to become a zombie")

    assert cli("list").returncode == 0

    assert running(db_path) == []
    assert "interrupted" in logs(db_path, "slow")[-1]["error_message"]
    run.wait(timeout=HANG_GUARD)


def test_a_crash_that_uses_up_the_retries_disables_with_a_notice_from_run_due(cli, spawn, source, db_path):
    """The attempt that disables an integration may be one that was killed: the run-due
    that recovers it must still tell cron (nobody else will)."""
    add(cli, "fragile", source.add("/fragile", hang_mid_body()), "--max-retries", "0")
    run = spawn("run-due")
    wait_for(lambda: running(db_path), "the RUNNING log")
    run.kill()
    run.wait(timeout=HANG_GUARD)

    after = cli("run-due")

    assert running(db_path) == []
    assert integration(db_path, "fragile")["sync_enabled"] == 0
    assert after.returncode == 1
    assert after.stdout == ""
    notice = [line for line in lines(after.stderr) if "disabled" in line]
    assert len(notice) == 1
    assert "fragile" in notice[0] and "interrupted" in notice[0] and "syncctl resume fragile" in notice[0]
    assert cli("list", "--json").json()[0]["state"] == "disabled"


def test_an_auto_disable_found_by_another_command_is_announced_by_the_next_run_due_once(
    cli, spawn, source, db_path
):
    """Crash recovery can run in any command: when `list` is the one that finds the killed
    sync and disables the integration, the next run-due still tells cron, and only once."""
    add(cli, "fragile", source.add("/fragile", hang_mid_body()), "--max-retries", "0")
    run = spawn("run-due")
    wait_for(lambda: running(db_path), "the RUNNING log")
    run.kill()
    run.wait(timeout=HANG_GUARD)

    listed = cli("list", "--json")

    assert listed.json()[0]["state"] == "disabled" and listed.stderr == ""
    first, second = cli("run-due"), cli("run-due")
    assert (first.returncode, first.stdout) == (1, "")
    assert len(lines(first.stderr)) == 1
    assert "fragile" in first.stderr and "interrupted" in first.stderr
    assert "syncctl resume fragile" in first.stderr
    assert (second.returncode, second.stdout, second.stderr) == (0, "", "")


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[0]


# -- signals -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "hang"),
    [
        (signal.SIGTERM, 143, "body"),
        (signal.SIGTERM, 143, "headers"),
        (signal.SIGINT, 130, "body"),
    ],
)
def test_a_signal_during_a_hanging_sync_interrupts_and_reschedules_it(
    cli, spawn, source, db_path, signum, code, hang
):
    name = signal.Signals(signum).name
    add(cli, "ok", source.add("/ok", json_body([{"id": 1}])))
    add(cli, "hangs", source.add("/hangs", hang_mid_body() if hang == "body" else hang_before_headers()))
    run = spawn("run-due")
    source.wait_hits("/hangs")
    wait_for(lambda: running(db_path), "the RUNNING log")
    wait_for(lambda: source.count("/ok") == 1 and len(running(db_path)) == 1, "the other sync to end")

    run.send_signal(signum)
    stopped = finish(run)
    signalled_at = now_utc()

    assert stopped.returncode == code, stopped
    assert stopped.stdout == ""
    assert f"stopped by {name}" in stopped.stderr
    assert running(db_path) == []
    assert integrity(db_path) == "ok"
    last = logs(db_path, "hangs")[-1]
    assert last["status"] == "FAILED"
    assert last["error_message"] == f"interrupted by {name}"
    hangs = integration(db_path, "hangs")
    assert parse_ts(hangs["next_sync_at"]) <= signalled_at  # due again at the next run
    assert hangs["consecutive_failures"] == 0  # the source did nothing wrong
    assert [log["status"] for log in logs(db_path, "ok")] == ["SUCCESS"]

    source.add("/hangs", json_body([{"id": 7}]))
    again = cli("run-due")
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert [log["status"] for log in logs(db_path, "hangs")] == ["FAILED", "SUCCESS"]


# -- timeouts ------------------------------------------------------------------------------------


def test_sync_timeout_stops_a_source_that_drips_forever(cli, source, db_path):
    add(cli, "drips", source.add("/drips", drip(b'[{"id": 1}, ' + b" " * 100_000 + b"]", every=0.5)))
    add(cli, "fine", source.add("/fine", json_body([{"id": 1}])))

    run = cli("run-due", "--sync-timeout", "2", timeout=60)

    assert run.returncode == 1, run
    assert run.stdout == ""
    assert len(lines(run.stderr)) == 1
    assert "drips" in run.stderr and "--sync-timeout" in run.stderr
    last = logs(db_path, "drips")[-1]
    assert last["status"] == "FAILED"
    assert "--sync-timeout" in last["error_message"] and last["error_hint"]
    assert [log["status"] for log in logs(db_path, "fine")] == ["SUCCESS"]
    assert running(db_path) == []
    after = cli("run-due", "-v")  # the lock was released
    assert after.returncode == 0 and "another run-due" not in after.stderr


# -- backoff across runs, with faketime ----------------------------------------------------------


def faked(db_path: Path, moment: datetime, *args: str) -> Result:
    """Run syncctl with the wall clock set to ``moment`` (Debian's libfaketime; the clock
    keeps ticking from there). Monotonic time stays real, so timeouts behave."""
    return run_syncctl(db_path, *args, at=moment)


def test_faketime_moves_syncctls_clock(db_path):
    moment = datetime(2031, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    added = faked(db_path, moment, "add", "probe", "--url", "http://127.0.0.1:9/", "--interval", "1h")
    assert added.returncode == 0, added
    created = parse_ts(query(db_path, "SELECT created_at FROM integrations")[0]["created_at"])
    assert moment <= created < moment + timedelta(seconds=30)


@pytest.mark.slow
def test_a_failing_source_backs_off_60_120_240_s_then_is_disabled_until_resumed(source, db_path):
    url = source.add("/broken", json_body({"error": "gone"}, status=404))
    t = datetime(2030, 1, 7, 10, 0, 0, tzinfo=timezone.utc)
    assert faked(db_path, t, "add", "broken", "--url", url, "--interval", "1h").returncode == 0

    delays = []
    for attempt in range(1, 5):
        run = faked(db_path, t, "run-due")
        assert run.returncode == 1, run
        assert run.stdout == ""
        assert source.count("/broken") == attempt
        log = logs(db_path, "broken")[-1]
        trigger = "schedule" if attempt == 1 else "retry"
        assert (log["status"], log["trigger"], log["attempt"]) == ("FAILED", trigger, attempt)
        assert "404" in log["error_message"]
        row = integration(db_path, "broken")
        assert row["consecutive_failures"] == attempt
        if attempt == 4:
            break
        assert len(lines(run.stderr)) == 1 and "broken" in run.stderr
        retry_at = parse_ts(row["next_sync_at"])
        delays.append((retry_at - parse_ts(log["completed_at"])).total_seconds())
        # Not a moment early: a run just before the retry time fetches nothing.
        early = faked(db_path, retry_at - timedelta(seconds=5), "run-due")
        assert (early.returncode, early.stdout, early.stderr) == (0, "", "")
        assert source.count("/broken") == attempt
        t = ceil_second(retry_at) + timedelta(seconds=1)

    for delay, base in zip(delays, (60, 120, 240), strict=True):
        assert 0.9 * base - 0.01 <= delay <= 1.1 * base + 0.01, delays
    # The fourth failure (the third retry) disables it, and says so once, for cron to mail.
    notice = [line for line in lines(run.stderr) if "disabled" in line]
    assert len(lines(run.stderr)) == 2 and len(notice) == 1
    assert "broken" in notice[0] and "404" in notice[0] and "syncctl resume broken" in notice[0]
    listed = faked(db_path, t, "list", "--json").json()[0]
    assert listed["state"] == "disabled" and listed["sync_enabled"] is False
    assert "404" in listed["last_error"] and listed["last_hint"]

    later = t + timedelta(hours=5)
    idle = faked(db_path, later, "run-due")
    assert (idle.returncode, idle.stdout, idle.stderr) == (0, "", "")
    assert source.count("/broken") == 4

    resumed = faked(db_path, later, "resume", "broken")
    assert resumed.returncode == 0, resumed
    listed = faked(db_path, later, "list", "--json").json()[0]
    assert listed["state"] == "active" and listed["consecutive_failures"] == 0
    assert parse_ts(listed["next_sync_at"]) <= later + timedelta(seconds=30)  # due now
    source.add("/broken", json_body([{"id": 1}]))
    healed = faked(db_path, later + timedelta(seconds=30), "run-due")
    assert (healed.returncode, healed.stdout, healed.stderr) == (0, "", "")
    log = logs(db_path, "broken")[-1]
    assert (log["status"], log["trigger"], log["attempt"]) == ("SUCCESS", "schedule", 1)


# -- what cron sees ------------------------------------------------------------------------------


def test_an_all_success_run_is_silent(cli, source):
    for name in ("one", "two"):
        add(cli, name, source.add(f"/{name}", json_body([{"id": 1}])))
    run = cli("run-due")
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    idle = cli("run-due")  # nothing due
    assert (idle.returncode, idle.stdout, idle.stderr) == (0, "", "")


def test_failures_print_one_stderr_line_each_and_exit_1(cli, source, db_path):
    add(cli, "good", source.add("/good", json_body([{"id": 1}])))
    add(cli, "missing", source.add("/missing", json_body({}, status=404)))
    add(cli, "teapot", source.add("/teapot", json_body({}, status=418)))

    run = cli("run-due")

    assert run.returncode == 1
    assert run.stdout == ""
    errors = lines(run.stderr)
    assert len(errors) == 2
    assert sorted(line.split(":")[1].strip() for line in errors) == ["missing", "teapot"]
    assert all("Traceback" not in line for line in errors)


def test_verbose_prints_a_summary(cli, source):
    add(cli, "good", source.add("/good", json_body([{"id": 1}, {"id": 2}])))
    run = cli("run-due", "-v")
    assert run.returncode == 0 and run.stderr == ""
    assert "good" in run.stdout and "SUCCESS" in run.stdout
    idle = cli("run-due", "-v")
    assert idle.returncode == 0 and idle.stdout.strip()  # says that nothing was due


def test_an_integration_due_again_during_the_run_is_not_synced_twice_by_it(cli, source, db_path):
    # "again" fails fast; while "other" syncs after it, "again" becomes due again (as a
    # clock set back would make it): this run must not claim it a second time, the next does.
    def make_again_due(handler) -> None:  # noqa: ANN001
        make_due(db_path, "again")
        send(handler, 200, b'[{"id": 1}]')

    add(cli, "again", source.add("/again", json_body({}, status=404)))
    add(cli, "other", source.add("/other", make_again_due))
    make_due(db_path, "again")  # the oldest due: claimed first

    run = cli("run-due", "--concurrency", "1")

    assert run.returncode == 1 and "again:" in run.stderr
    assert [log["status"] for log in logs(db_path)] == ["FAILED", "SUCCESS"]
    assert source.hits["/other"] == 1
    assert cli("run-due", "--concurrency", "1").returncode == 1  # the next tick takes it
    assert [log["name"] for log in logs(db_path)] == ["again", "other", "again"]


def test_a_held_lock_means_exit_0_and_silence_and_the_lock_file_stays(cli, source, db_path):
    add(cli, "good", source.add("/good", json_body([{"id": 1}])))
    lock_path = Path(f"{db_path}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run-due, as far as it can tell
        quiet = cli("run-due")
        noted = cli("run-due", "-v")
    finally:
        os.close(fd)
    inode = lock_path.stat().st_ino

    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert noted.returncode == 0 and noted.stdout == ""
    assert "another run-due" in noted.stderr
    assert source.count("/good") == 0

    for _ in range(2):
        run = cli("run-due")
        assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    assert source.count("/good") == 1
    assert lock_path.stat().st_ino == inode  # never deleted nor replaced
    assert lock_path.stat().st_mode & 0o777 == 0o600
