"""One contract, two backends: every domain verb of the store, the claim race, migrations
and the JSON a script reads, run against SQLite and against a real PostgreSQL cluster
(huey's ``StorageTests`` idea: the ``target`` fixture is parametrized over both).

PostgreSQL tests skip locally without PostgreSQL or psycopg, and fail in CI (CI=true)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from syncctl.config import IntegrationConfig
from syncctl.errors import DatabaseError, UsageError
from syncctl.models import Status
from syncctl.schedule import Plan
from syncctl.store import Store, schema_steps
from syncctl.timeutil import format_ts
from tests.helpers import (
    HANG_GUARD,
    ROOT,
    add,
    base_env,
    run_syncctl,
    spawn_syncctl,
    utc_ms,
    wait_for,
)
from tests.httpsources import json_body


@pytest.fixture
def tstore(target: str) -> Iterator[Store]:
    opened = Store.open(target)
    yield opened
    opened.close()


def failed_plan(integration, log) -> Plan:  # noqa: ANN001
    return Plan(utc_ms() + timedelta(minutes=5), integration.slot_at, integration.consecutive_failures + 1)


def ok_plan(integration, log) -> Plan:  # noqa: ANN001
    return Plan(utc_ms() + timedelta(hours=1), integration.slot_at, 0)


def run_at_once(tstore: Store, count: int, work: Callable[[Store, int], None]) -> None:
    """``work(store, n)`` in ``count`` threads, each with a connection of its own, let go
    together (a barrier), as several hosts would."""
    stores = [tstore.reopen() for _ in range(count)]
    barrier = threading.Barrier(count)

    def together(store: Store, n: int) -> None:
        barrier.wait()
        work(store, n)

    threads = [threading.Thread(target=together, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD)
    for s in stores:
        s.close()


# -- the verbs ---------------------------------------------------------------------------------


def test_integrations_are_added_found_and_listed_in_the_same_order(tstore):
    for name in ("ab", "a_b", "a.b", "a-b", "b1"):
        add(tstore, name, f"http://127.0.0.1:9/{name}")

    assert tstore.names() == ["a-b", "a.b", "a_b", "ab", "b1"]  # bytewise on both
    assert [i.name for i in tstore.list_integrations()] == tstore.names()
    assert tstore.get("a-b").url == "http://127.0.0.1:9/a-b"
    assert [i.name for i in tstore.resolve(["b1", "ab", "b1"], False)] == ["b1", "ab"]
    with pytest.raises(UsageError, match="already exists"):
        add(tstore, "ab", "http://127.0.0.1:9/other")
    with pytest.raises(UsageError, match="did you mean 'b1'"):
        tstore.get("b2")


def test_settings_change_and_pause_resume(tstore):
    add(tstore, "one", "http://127.0.0.1:9/one")
    one = tstore.get("one")
    now = utc_ms()

    tstore.update_integration(one.id, url="http://127.0.0.1:9/new", config=IntegrationConfig(key="uid"), now=now)
    tstore.set_interval(one.id, 900, now + timedelta(minutes=15), now)
    tstore.pause([one.id], now)
    paused = tstore.get("one")
    resumed = tstore.resume([one.id], now, lambda i: now + timedelta(minutes=1))

    assert (paused.url, paused.config.key, paused.sync_interval, paused.state) == (
        "http://127.0.0.1:9/new", "uid", 900, "paused")
    assert paused.next_sync_at == now + timedelta(minutes=15)
    assert [(i.state, i.next_sync_at) for i in resumed] == [("active", now + timedelta(minutes=1))]


def test_a_sync_is_claimed_once_finished_once_and_logged(tstore):
    add(tstore, "one", "http://127.0.0.1:9/one")
    one = tstore.get("one")
    now = utc_ms()

    log_id, claimed, trigger = tstore.claim(one.id, manual=False, now=now, pid=1, owner="h:b:1:2")
    busy = tstore.claim(one.id, manual=True, now=now, pid=2, owner="h:b:2:3")
    assert tstore.get("one").running_since == now
    done = tstore.finish_sync(log_id, integration_id=one.id, status=Status.FAILED, now=now + timedelta(seconds=2), records_count=0,
                              error_message="boom", error_hint="fix it", plan=failed_plan)  # fmt: skip
    again = tstore.finish_sync(log_id, integration_id=one.id, status=Status.SUCCESS, now=now, records_count=0, error_message=None,
                               error_hint=None, plan=ok_plan)  # fmt: skip

    assert (claimed.name, trigger, busy.id, busy.pid) == ("one", "schedule", log_id, 1)
    assert again is None  # finished once: the second finish changes nothing
    integration = tstore.get("one")
    assert (integration.last_status, integration.last_error, integration.consecutive_failures) == (
        "FAILED", "boom", 1)
    [log] = tstore.history(integration_id=one.id)
    assert (log.status, log.duration_ms, log.error_message, log.attempt) == ("FAILED", 2000, "boom", 1)
    assert tstore.history_entry(log_id) == log == done  # what finish_sync returns is what it stored
    assert tstore.unfinished_logs() == []
    assert tstore.history(status="SUCCESS") == [] and tstore.history(since=now - timedelta(seconds=1)) == [log]


def test_due_integrations_come_oldest_first_and_a_scheduled_claim_skips_what_is_not_due(tstore):
    now = utc_ms()
    for name in ("late", "early", "future"):
        add(tstore, name, f"http://127.0.0.1:9/{name}")
    for name, minutes in (("late", -1), ("early", -10), ("future", 10)):
        i = tstore.get(name)
        tstore.set_interval(i.id, 3600, now + timedelta(minutes=minutes), now)

    assert [i.name for i in tstore.due_integrations(now)] == ["early", "late"]
    assert tstore.claim(tstore.get("future").id, manual=False, now=now, pid=1, owner="h:b:1:2") is None


def test_records_are_upserted_and_read_back_alike(tstore):
    add(tstore, "one", "http://127.0.0.1:9/one")
    one = tstore.get("one")
    first = {"1": {"id": 1, "name": "Zoë ✓", "n": 1.5, "tags": ["a", None], "nested": {"deep": True}},
             "2": {"id": 2}}
    tstore.upsert_records(one.id, [(k, json.dumps(v)) for k, v in first.items()], utc_ms())
    tstore.upsert_records(one.id, [("2", json.dumps({"id": 2, "changed": "yes"}))], utc_ms())

    assert tstore.records(one.id) == {**first, "2": {"id": 2, "changed": "yes"}}


def test_remove_refuses_a_running_integration_then_removes_everything(tstore):
    add(tstore, "one", "http://127.0.0.1:9/one")
    one = tstore.get("one")
    log_id, _, _ = tstore.claim(one.id, manual=True, now=utc_ms(), pid=7, owner="h:b:7:8")
    tstore.upsert_records(one.id, [("1", "{}"), ("2", "{}")], utc_ms())

    holder = tstore.remove_integration(one.id)
    tstore.finish_sync(log_id, integration_id=one.id, status=Status.SUCCESS, now=utc_ms(), records_count=2, error_message=None,
                       error_hint=None, plan=ok_plan)  # fmt: skip

    assert holder.pid == 7
    assert tstore.remove_integration(one.id) == (1, 2)
    assert tstore.names() == []


def test_prune_keeps_the_newest_and_disable_notices_are_taken_once(tstore):
    add(tstore, "one", "http://127.0.0.1:9/one")
    one = tstore.get("one")
    start = utc_ms() - timedelta(days=10)
    for n in range(4):
        log_id, _, _ = tstore.claim(one.id, manual=True, now=start + timedelta(minutes=n), pid=1, owner="h:b:1:2")
        tstore.finish_sync(log_id, integration_id=one.id, status=Status.FAILED, now=start + timedelta(minutes=n, seconds=1),
                           records_count=0, error_message="x", error_hint=None,
                           plan=lambda i, log: Plan(None, None, 3, disable=True))  # fmt: skip

    assert tstore.prune(utc_ms() - timedelta(days=1), keep=1) == {"one": 3}
    assert [i.name for i in tstore.take_disable_notices()] == ["one"]
    assert tstore.take_disable_notices() == []
    assert tstore.get("one").state == "disabled"


def test_a_lease_expires_on_the_databases_clock_unless_renewed(tstore, monkeypatch):
    monkeypatch.setenv("SYNCCTL_LEASE_SECONDS", "1")
    add(tstore, "one", "http://127.0.0.1:9/one")
    one = tstore.get("one")
    tstore.claim(one.id, manual=True, now=utc_ms(), pid=1, owner="other-host:b:1:2")

    assert tstore.unfinished_logs()[0].lease_expired is False
    wait_for(lambda: tstore.unfinished_logs()[0].lease_expired, "the lease to expire")
    monkeypatch.setenv("SYNCCTL_LEASE_SECONDS", "600")
    assert tstore.renew_leases("other-host:b:1:2") == 1
    assert tstore.unfinished_logs()[0].lease_expired is False


def test_list_json_is_built_by_the_database(tstore):
    add(tstore, "one", "http://127.0.0.1:9/one", "--interval", "manual")

    [summary] = json.loads(tstore.summaries_json(now=utc_ms()))

    assert list(summary) == ["name", "url", "state", "interval_seconds", "sync_enabled", "next_sync_at",
                             "last_sync_at", "last_status", "consecutive_failures", "records_count",
                             "last_error", "last_hint", "stale", "last_success_at"]  # fmt: skip
    assert (summary["state"], summary["sync_enabled"], summary["interval_seconds"]) == ("manual", True, None)
    assert json.loads(tstore.summaries_json("nobody", now=utc_ms())) == []


def test_concurrent_claims_of_one_integration_have_one_winner(tstore):
    add(tstore, "one", "http://127.0.0.1:9/one")
    one = tstore.get("one")
    results: list[object] = []

    def claim(store: Store, n: int) -> None:
        results.append(store.claim(one.id, manual=True, now=utc_ms(), pid=n, owner=f"h{n}:b:{n}:1"))

    run_at_once(tstore, 6, claim)

    winners = [r for r in results if isinstance(r, tuple)]
    assert len(results) == 6 and len(winners) == 1
    assert {r.id for r in results if not isinstance(r, tuple)} == {winners[0][0]}
    assert len(tstore.unfinished_logs()) == 1



def test_claim_next_due_takes_the_oldest_due_that_nobody_holds_and_passes_over_skipped_ones(tstore):
    now = utc_ms()
    for name, minutes in (("late", -1), ("early", -10), ("middle", -5), ("future", 10), ("held", -20)):
        add(tstore, name, f"http://127.0.0.1:9/{name}")
        tstore.set_interval(tstore.get(name).id, 3600, now + timedelta(minutes=minutes), now)
    add(tstore, "manual", "http://127.0.0.1:9/manual", "--interval", "manual")
    tstore.claim(tstore.get("held").id, manual=True, now=now, pid=9, owner="other:b:9:1")  # another host's
    tstore.set_interval(tstore.get("held").id, 3600, now - timedelta(minutes=20), now)
    early = tstore.get("early")

    log_id, claimed, trigger = tstore.claim_next_due(now, pid=1, owner="h:b:1:2")
    skipped = tstore.claim_next_due(now, pid=1, owner="h:b:1:2", skip=[tstore.get("middle").id])
    by_then = tstore.claim_next_due(now, pid=1, owner="h:b:1:2", due_by=now - timedelta(minutes=3))
    rest = tstore.claim_next_due(now, pid=1, owner="h:b:1:2")

    assert (claimed.id, trigger) == (early.id, "schedule")
    assert [log.id for log in tstore.unfinished_logs(early.id)] == [log_id]
    assert tstore.history_entry(log_id).started_at == now and tstore.history_entry(log_id).pid == 1
    assert skipped[1].name == "late"  # "middle" passed over
    assert by_then[1].name == "middle"  # due ten minutes ago: due by three minutes ago
    assert rest is None  # "future" is not due, "held" is another host's, "manual" is not scheduled
    assert {log.integration for log in tstore.unfinished_logs()} == {"early", "late", "middle", "held"}


def test_a_claimed_sync_finishes_with_what_it_stored(tstore):
    add(tstore, "one", "http://127.0.0.1:9/one")
    now = utc_ms() + timedelta(seconds=1)
    log_id, one, _ = tstore.claim_next_due(now, pid=1, owner="h:b:1:2")
    tstore.upsert_records(one.id, [("1", "{}")], now)

    done = tstore.finish_sync(log_id, integration_id=one.id, status=Status.SUCCESS, now=now + timedelta(seconds=3),
                              records_count=1, error_message=None, error_hint="warning: w", plan=ok_plan,
                              not_modified=False, records_deleted=2, validators=('"v2"', None))  # fmt: skip

    assert done == tstore.history_entry(log_id)
    assert (done.status, done.duration_ms, done.error_hint, done.records_deleted) == ("SUCCESS", 3000, "warning: w", 2)
    integration = tstore.get("one")
    assert (integration.last_status, integration.last_error, integration.last_hint, integration.etag) == (
        "SUCCESS", None, None, '"v2"')
    assert (integration.records_count, integration.last_success_at) == (1, now + timedelta(seconds=3))


def test_a_change_made_while_a_claimed_sync_runs_is_what_its_schedule_is_decided_on(tstore):
    add(tstore, "one", "http://127.0.0.1:9/one")
    now = utc_ms() + timedelta(seconds=1)
    log_id, one, _ = tstore.claim_next_due(now, pid=1, owner="h:b:1:2")
    tstore.set_interval(one.id, 60, now, now)  # the admin, while it syncs

    tstore.finish_sync(log_id, integration_id=one.id, status=Status.SUCCESS, now=now, records_count=0,
                       error_message=None, error_hint=None,
                       plan=lambda i, log: Plan(now + timedelta(seconds=i.sync_interval), i.slot_at, 0))  # fmt: skip

    assert tstore.get("one").next_sync_at == now + timedelta(seconds=60)


def test_a_claimed_sync_someone_else_finished_is_not_finished_twice(tstore):
    add(tstore, "one", "http://127.0.0.1:9/one")
    now = utc_ms() + timedelta(seconds=1)
    log_id, one, _ = tstore.claim_next_due(now, pid=1, owner="h:b:1:2")
    other = tstore.reopen()
    first = other.finish_sync(log_id, integration_id=one.id, status=Status.FAILED, now=now, records_count=None,
                              error_message="interrupted", error_hint=None, plan=failed_plan)  # fmt: skip
    other.close()

    again = tstore.finish_sync(log_id, integration_id=one.id, status=Status.SUCCESS, now=now, records_count=0,
                               error_message=None, error_hint=None, plan=ok_plan)  # fmt: skip

    assert first is not None and again is None
    assert (tstore.history_entry(log_id).status, tstore.get("one").consecutive_failures) == ("FAILED", 1)


def test_claim_next_due_claims_a_failed_one_as_a_retry(tstore):
    add(tstore, "one", "http://127.0.0.1:9/one")
    now = utc_ms() + timedelta(seconds=1)  # the first sync is due at once
    log_id, one, _ = tstore.claim_next_due(now, pid=1, owner="h:b:1:2")
    tstore.finish_sync(log_id, integration_id=one.id, status=Status.FAILED, now=now, records_count=0,
                       error_message="boom", error_hint=None, plan=lambda i, log: Plan(now, i.slot_at, 1))  # fmt: skip

    retry_id, _, trigger = tstore.claim_next_due(now, pid=1, owner="h:b:1:2")

    assert trigger == "retry" and tstore.history_entry(retry_id).attempt == 2


def test_concurrent_claims_of_the_next_due_take_each_integration_once(tstore):
    for n in range(30):
        add(tstore, f"i{n:02}", f"http://127.0.0.1:9/{n}")
    now = utc_ms() + timedelta(seconds=1)  # the first syncs are due at once
    taken: list[str] = []

    def drain(store: Store, n: int) -> None:
        while (claimed := store.claim_next_due(now, pid=n, owner=f"h{n}:b:{n}:1")) is not None:
            taken.append(claimed[1].name)

    run_at_once(tstore, 6, drain)

    assert sorted(taken) == [f"i{n:02}" for n in range(30)]  # each once, none left over
    assert len(tstore.unfinished_logs()) == 30


# -- migrations ---------------------------------------------------------------------------------


def test_both_schema_files_number_their_steps_alike():
    assert [n for n, _ in schema_steps("postgres")] == [n for n, _ in schema_steps("sqlite")]


def test_a_newer_schema_is_refused_and_left_alone(target, tcli, tstore):
    known = schema_steps()[-1][0]
    if target.startswith("postgresql://"):
        tstore.conn.execute("UPDATE syncctl_meta SET value = ? WHERE key = 'schema_version'", (str(known + 1),))
    else:
        tstore.conn.execute(f"PRAGMA user_version = {known + 1}")

    result = tcli("list")

    assert result.returncode == 3 and result.stdout == ""
    assert f"newer syncctl (schema version {known + 1}" in result.stderr and result.stderr.count("\n") == 1


def test_postgres_refuses_a_database_of_another_program(pg_cluster, pg_url):
    pg_cluster.admin("CREATE TABLE integrations (id int)", pg_url.rsplit("/", 1)[1])

    result = run_syncctl(pg_url, "list")

    assert result.returncode == 3 and "is not a syncctl database" in result.stderr
    assert "search_path" in result.stderr and result.stderr.count("\n") == 1


def test_hosts_migrating_a_new_postgres_database_at_once_all_succeed(pg_cluster, pg_url):
    procs = [spawn_syncctl(pg_url, "list", "--json") for _ in range(4)]
    outcomes = [(p.wait(HANG_GUARD), p.stdout.read().strip(), p.stderr.read()) for p in procs]

    assert outcomes == [(0, "[]", "")] * 4
    meta = dict(pg_cluster.admin("SELECT key, value FROM syncctl_meta", pg_url.rsplit("/", 1)[1]))
    steps = [n for n, _ in schema_steps("postgres")]
    assert meta == {"schema_version": str(steps[-1]), "steps": ",".join(map(str, steps))}


def test_a_sqlite_database_of_step_3_gains_the_lease_and_its_dead_syncs_are_reaped(db_path, cli):
    import sqlite3

    from syncctl.store import APPLICATION_ID, split_sql

    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    for number, sql in schema_steps():
        if number <= 3:
            for statement in filter(None, split_sql(sql)):
                conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO integrations (name, url, sync_interval, next_sync_at, created_at, updated_at)"
                 " VALUES ('old', 'http://127.0.0.1:9/', 60, '2000-01-01T00:00:00.000Z', '2000-01-01T00:00:00.000Z',"
                 " '2000-01-01T00:00:00.000Z')")  # fmt: skip
    conn.execute("INSERT INTO sync_logs (integration_id, trigger, status, started_at, pid, owner)"
                 " VALUES (1, 'schedule', 'RUNNING', '2000-01-01T00:00:00.000Z', 999999, NULL)")
    conn.commit()
    conn.close()

    result = cli("history", "--json")

    assert result.returncode == 0, result.stderr
    [log] = result.json()
    assert log["status"] == "FAILED" and "process 999999 ended" in log["error_message"]
    columns = [r[1] for r in sqlite3.connect(db_path).execute("PRAGMA table_info(sync_logs)")]
    assert "lease_until" in columns


# -- what a script reads, through the CLI ---------------------------------------------------------

# A data table's column types are each backend's own (spec §15: what dashboards see).
_MASKED = re.compile(r'"(\w+_at)":"[^"]+"'
                     r'|"duration_ms":\d+|"id":\d+|"(type|from)":"[^"]+"')


def _shape(text: str) -> str:
    return _MASKED.sub(lambda m: m.group(0).split(":")[0] + ":…", text)


def test_list_show_and_history_json_are_the_same_on_both_backends(pg_url, db_path, source):
    url = source.add("/items", json_body([{"id": 1, "v": "é"}, {"id": 2, "v": None}]))
    outputs = {}
    for target in (str(db_path), pg_url):
        run = lambda *args: run_syncctl(target, *args)  # noqa: B023, E731
        assert run("add", "items", "--url", url, "--interval", "15m").returncode == 0
        assert run("add", "off", "--url", source.url("/missing"), "--interval", "manual").returncode == 0
        assert run("run-due").returncode == 0
        assert run("sync", "off").returncode == 1
        assert run("pause", "items").returncode == 0
        outputs[target] = [_shape(run(*args).stdout) for args in (
            ("list", "--json"), ("show", "items", "--json"), ("show", "off", "--json"), ("history", "--json"),
            ("history", "off", "--status", "failed", "--json"))]  # fmt: skip

    sqlite, postgres = outputs.values()
    for a, b in zip(sqlite, postgres, strict=True):
        assert a == b
    assert '"name":"items","url"' in postgres[0] and '"state":"paused"' in postgres[0]


# -- the seam ------------------------------------------------------------------------------------


def test_an_idle_sqlite_tick_never_imports_psycopg(cli, store, db_path):
    code = (
        "import sys\n"
        "from syncctl.cli import main\n"
        "try:\n"
        f"    main(['--db', {str(db_path)!r}, 'run-due'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'sqlalchemy')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=base_env(db_path), capture_output=True, text=True,
                            timeout=HANG_GUARD, cwd=ROOT)  # fmt: skip

    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "[]", "")


def test_nothing_above_the_store_imports_a_driver():
    for path in (ROOT / "syncctl").glob("*.py"):
        if path.name in ("store_sqlite.py", "store_postgres.py", "demo.py"):
            continue  # the backends; and the demo, which reads its data table as a dashboard does
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(import|from) (sqlite3|psycopg)\b", text, re.M), path.name


def test_a_missing_psycopg_is_named_with_the_extra(pg_url, db_path):
    code = ("import sys; sys.modules['psycopg'] = None\n"  # as if the extra were not installed
            "from syncctl.cli import main\n"
            f"main(['--db', {pg_url!r}, 'list'])\n")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], env=base_env(db_path), capture_output=True, text=True,
                            timeout=HANG_GUARD, cwd=ROOT)  # fmt: skip

    assert result.returncode == 3
    assert result.stderr.startswith("syncctl: cannot use PostgreSQL") and "syncctl[postgres]" in result.stderr


def test_store_open_names_an_unreachable_server_in_one_line(pg_cluster):
    from tests.httpsources import closed_port

    with pytest.raises(DatabaseError) as caught:
        Store.open(f"postgresql://postgres@127.0.0.1:{closed_port()}/nothing")

    assert "cannot reach PostgreSQL postgres@127.0.0.1:" in caught.value.message
    assert "connection refused" in caught.value.message and "\n" not in caught.value.message


# -- the verbs of freshness (spec §10) and faithful syncs (spec §11) -----------------------------------


def test_ticks_and_metrics_rows_read_alike(tstore):
    add(tstore, "one", "http://127.0.0.1:9/one")
    one = tstore.get("one")
    now = utc_ms()
    tstore.record_tick("host-a", 1, now - timedelta(minutes=1))
    tstore.record_tick("host-b", 2, now)
    tstore.record_tick("host-a", 3, now - timedelta(seconds=30))
    log_id, _, _ = tstore.claim(one.id, manual=True, now=now, pid=1, owner="h:b:1:2")
    tstore.finish_sync(log_id, integration_id=one.id, status=Status.SUCCESS, now=now + timedelta(seconds=1), records_count=0,
                       error_message=None, error_hint=None, plan=ok_plan)  # fmt: skip

    [row] = tstore.metrics_rows()

    assert tstore.last_tick_at() == now
    assert row[:4] == ("one", 1, format_ts(now + timedelta(seconds=1)), format_ts(now + timedelta(seconds=1)))
    assert row[4:10] == (1000, 0, 0, 0, 1, 0)
    assert row[10] == format_ts(now + timedelta(seconds=1, hours=3))  # three intervals of 1h
    assert tstore.metrics_fingerprint().endswith(" 1")  # one sync finished
    assert tstore.next_staleness_change(now) == now + timedelta(seconds=1, hours=3)


def test_notification_targets_state_and_outbox(tstore):
    now = utc_ms()
    target = tstore.add_notify_target("json://127.0.0.1:9/", ["failing", "recovered"], 2, now)

    def decide(targets, states):  # noqa: ANN001, ANN202
        return [{"target_id": target, "subject": "integration:1", "state": "failing", "announced": True,
                 "notified": True, "message": ("failing", "title", "body")}]  # fmt: skip

    tstore.announce(decide, now)
    tstore.announce(decide, now)  # the same state again: an upsert, not a second row
    [claimed, second] = tstore.claim_notifications(now, expire_before=now - timedelta(hours=1),
                                                   lease_before=now - timedelta(minutes=5))  # fmt: skip
    tstore.notification_delivered(claimed["id"], target, now)
    tstore.notification_failed(second["id"], target, "no route")

    [listed] = tstore.notify_targets()
    assert (listed["events"], listed["after"], listed["last_error"]) == (["failing", "recovered"], 2, "no route")
    assert tstore.has_notify_targets() and tstore.remove_notify_target(target)
    assert not tstore.has_notify_targets()


def test_cursor_validators_and_deletion_sweeps(tstore):
    add(tstore, "one", "http://127.0.0.1:9/one")
    one = tstore.get("one")
    first, second = utc_ms(), utc_ms() + timedelta(seconds=1)
    tstore.upsert_records(one.id, [("1", '{"id":1,"at":{"t":5}}'), ("2", '{"id":2,"at":{"t":"x"}}')], first,
                          cursor={"at": 5})  # fmt: skip
    log_id, _, _ = tstore.claim(one.id, manual=True, now=first, pid=1, owner="h:b:1:2")
    tstore.finish_sync(log_id, integration_id=one.id, status=Status.SUCCESS, now=first, records_count=2,
                       error_message=None, error_hint=None, plan=ok_plan, not_modified=False, records_deleted=0,
                       validators=('"v1"', "Mon, 01 Jan 2024 00:00:00 GMT"))  # fmt: skip
    tstore.upsert_records(one.id, [("1", '{"id":1,"at":{"t":6}}')], second)

    unseen = tstore.unseen_records(one.id, second)
    marked = tstore.sweep_records(one.id, second, remove=False, now=second)
    live = tstore.stored_records(one.id, limit=10, include_deleted=False)
    everything = tstore.stored_records(one.id, limit=10, include_deleted=True)
    integration = tstore.get("one")

    assert unseen == (1, 2) and marked == 1
    assert live == [{"id": 1, "at": {"t": 6}}] and len(everything) == 2
    assert (integration.cursor, integration.etag) == ({"at": 5}, '"v1"')
    assert sorted(tstore.record_field_values(one.id, "at.t"), key=str) == [6]
    tstore.reset_sync_state(one.id, second)
    assert (tstore.get("one").cursor, tstore.get("one").etag) == (None, None)
    assert tstore.sweep_records(one.id, second, remove=True, now=second) == 1
