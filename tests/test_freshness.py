"""Freshness (issue 9, spec §10): the heartbeat, staleness, the --min-records guard, the
health check, notifications through Apprise to a real webhook receiver, Healthchecks-style
pings, and Prometheus metrics checked with promtool. Real processes, real receivers on
127.0.0.1, time travel with Debian's faketime."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from syncctl import health
from syncctl import store as store_module
from syncctl.config import IntegrationConfig
from syncctl.models import Integration
from syncctl.runlock import Holder
from syncctl.store import Store
from tests.helpers import (
    HANG_GUARD,
    Result,
    add,
    base_env,
    can_exchange,
    query,
    require_tool,
    run_syncctl,
    utc_ms,
)
from tests.httpsources import closed_port, json_body, sequence

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)

# -- helpers ---------------------------------------------------------------------------------


def at(db_path: Path, moment: datetime, *args: str, env: dict[str, str] | None = None) -> Result:
    """syncctl with the wall clock at ``moment`` (libfaketime; it keeps ticking from there)."""
    return run_syncctl(db_path, *args, env=env, at=moment)


def make_due(db_path: Path, name: str) -> None:
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("UPDATE integrations SET next_sync_at = '2000-01-01T00:00:00.000Z' WHERE name = ?", (name,))
    conn.close()


def listed(cli, name: str) -> dict:  # noqa: ANN001
    result = cli("list", "--json")
    assert result.returncode == 0, result
    return next(i for i in result.json() if i["name"] == name)


def notifications(source, path: str = "/hook") -> list[dict]:  # noqa: ANN001
    """What the webhook receiver got from Apprise's json:// (title, message, type…)."""
    with source.lock:
        return [json.loads(body) for seen, _, body in source.bodies if seen == path]


def titles(source, path: str = "/hook") -> list[str]:  # noqa: ANN001
    return [n["title"] for n in notifications(source, path)]


class HeldLock:
    """The run-due lock held by this test process, as a run-due that has held it since
    ``since`` would (the pid in the file, the file's mtime when it was taken)."""

    def __init__(self, db_path: Path, since: datetime | None = None) -> None:
        self.fd = os.open(f"{db_path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()}\n".encode(), 0)
        if since is not None:
            os.utime(f"{db_path}.lock", (since.timestamp(), since.timestamp()))

    def release(self) -> None:
        os.close(self.fd)


def integration(name: str = "crm", **fields) -> Integration:  # noqa: ANN003
    values = dict(
        id=1, name=name, url="https://x.example/", config=IntegrationConfig(), sync_interval=3600,
        sync_enabled=True, disabled_reason=None, next_sync_at=NOW, slot_at=NOW, last_sync_at=None,
        last_status=None, last_error=None, last_hint=None, consecutive_failures=0, records_count=0,
        created_at=NOW - timedelta(days=30), updated_at=NOW, state="active",
        last_success_at=NOW - timedelta(minutes=10), stale_at=NOW + timedelta(hours=3),
    )
    values.update(fields)
    return Integration(**values)


# -- the rules, without a database (syncctl/health.py) -------------------------------------------


def test_health_rules_name_each_problem_kind_with_its_severity():
    ok = integration("ok")
    stale = integration("stale", stale_at=NOW - timedelta(minutes=1))
    disabled = integration("dead", state="disabled", sync_enabled=False, consecutive_failures=4,
                           last_error="HTTP 401", last_hint="check ${TOKEN}", disabled_at=NOW - timedelta(hours=1),
                           stale_at=NOW - timedelta(minutes=1))
    failing = integration("flaky", consecutive_failures=2, last_error="HTTP 503", failing_since=NOW - timedelta(minutes=5))
    paused_long = integration("old", state="paused", sync_enabled=False, disabled_at=NOW - timedelta(days=8),
                              stale_at=NOW - timedelta(days=7))
    paused_new = integration("new", state="paused", sync_enabled=False, disabled_at=NOW - timedelta(days=6),
                             stale_at=NOW - timedelta(days=5))
    report = health.check(NOW, [ok, stale, disabled, failing, paused_long, paused_new], NOW - timedelta(seconds=30), None)

    kinds = {(p.integration, p.kind.value, p.status.value) for p in report.problems}
    assert kinds == {
        ("stale", "stale", "CRITICAL"), ("dead", "disabled", "CRITICAL"), ("flaky", "failing", "WARNING"),
        ("old", "paused", "WARNING"),
    }  # fmt: skip
    assert report.status is health.CheckStatus.CRITICAL
    dead = next(p for p in report.problems if p.kind is health.Kind.DISABLED)
    assert "syncctl resume dead" in dead.hint and "HTTP 401" in dead.message and dead.since == disabled.disabled_at
    assert health.check(NOW, [ok, failing], NOW, None).status is health.CheckStatus.WARNING
    assert health.check(NOW, [ok, paused_new], NOW, None).status is health.CheckStatus.OK


def test_no_tick_counts_from_the_last_tick_or_the_oldest_scheduled_creation():
    scheduled = integration(created_at=NOW - timedelta(minutes=10))
    assert health.no_tick_problem(NOW, NOW - timedelta(minutes=2), [scheduled]) is None
    late = health.no_tick_problem(NOW, NOW - timedelta(minutes=4), [scheduled])
    assert late is not None and late.kind is health.Kind.NO_TICK and late.integration is None
    never = health.no_tick_problem(NOW, None, [scheduled])
    assert never is not None and never.since == scheduled.created_at
    assert health.no_tick_problem(NOW, None, [integration(created_at=NOW - timedelta(minutes=2))]) is None
    manual = integration(state="manual", sync_interval=None)
    assert health.no_tick_problem(NOW, None, [manual]) is None  # nothing scheduled: cron may be off


def test_a_run_due_is_stuck_after_twice_the_sync_timeout_plus_five_minutes():
    holder = Holder(pid=4242, started_at=NOW - timedelta(minutes=15))
    assert health.stuck_problem(NOW, holder, 300) is None  # exactly 2 × 5m + 5m: not yet
    stuck = health.stuck_problem(NOW, Holder(pid=4242, started_at=NOW - timedelta(minutes=16)), 300)
    assert stuck is not None and "pid 4242" in stuck.message and "4242" in stuck.hint
    assert health.stuck_problem(NOW, Holder(pid=4242, started_at=NOW - timedelta(minutes=16)), 600) is None


# -- staleness in list and show --------------------------------------------------------------------


def test_list_shows_staleness_from_creation_then_from_the_last_success(cli, db_path, source):
    url = source.add("/items", json_body([{"id": 1}]))
    assert cli("add", "crm", "--url", url, "--interval", "1m").returncode == 0
    assert cli("add", "manual", "--url", url, "--interval", "manual").returncode == 0
    later = utc_ms() + timedelta(minutes=5)

    before = {i["name"]: i for i in at(db_path, later, "list", "--json").json()}
    assert (before["crm"]["stale"], before["crm"]["last_success_at"]) == (True, None)
    assert before["manual"]["stale"] is False  # manual only, no --max-staleness: never stale
    table = at(db_path, later, "list")
    assert "active, stale" in table.stdout

    assert cli("sync", "crm").returncode == 0
    fresh = listed(cli, "crm")
    assert fresh["stale"] is False and fresh["last_success_at"] is not None
    assert query(db_path, "SELECT last_success_at FROM integrations WHERE name = 'crm'")[0]["last_success_at"] == (
        fresh["last_success_at"]
    )
    # Three intervals (3 minutes) after that success it is stale again; 2 minutes is not.
    success = datetime.strptime(fresh["last_success_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert json.loads(at(db_path, success + timedelta(minutes=2), "show", "crm", "--json").stdout)["stale"] is False
    assert json.loads(at(db_path, success + timedelta(minutes=4), "show", "crm", "--json").stdout)["stale"] is True
    assert "stale: last success" in at(db_path, success + timedelta(minutes=4), "show", "crm").stdout


def test_max_staleness_overrides_the_default_and_watches_a_manual_integration(cli, db_path, source):
    url = source.add("/items", json_body([]))
    assert cli("add", "manual", "--url", url, "--interval", "manual", "--max-staleness", "1h").returncode == 0
    assert at(db_path, utc_ms() + timedelta(minutes=50), "list", "--json").json()[0]["stale"] is False
    assert at(db_path, utc_ms() + timedelta(minutes=70), "list", "--json").json()[0]["stale"] is True


def test_the_migration_backfills_last_success_and_the_counters_from_the_logs(cli, db_path):
    db_path.parent.mkdir(parents=True)
    steps = [s for s in store_module.schema_steps() if s[0] <= 2]
    conn = sqlite3.connect(db_path)
    for _, sql in steps:
        conn.executescript(sql)
    conn.execute(f"PRAGMA application_id = {store_module.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO integrations (name, url, config, sync_interval, consecutive_failures, last_sync_at,"
        " last_status, created_at, updated_at) VALUES ('old', 'https://x.example/', '{}', 3600, 1,"
        " '2026-01-03T00:00:00.000Z', 'FAILED', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')"
    )
    for status, day in (("SUCCESS", 1), ("SUCCESS", 2), ("FAILED", 3)):
        conn.execute(
            "INSERT INTO sync_logs (integration_id, trigger, status, started_at, completed_at, duration_ms,"
            f" records_count) VALUES (1, 'schedule', ?, '2026-01-0{day}T00:00:00.000Z',"
            f" '2026-01-0{day}T00:00:01.000Z', 1000, {day})",
            (status,),
        )
    conn.commit()
    conn.close()

    item = listed(cli, "old")

    assert (item["last_success_at"], item["stale"]) == ("2026-01-02T00:00:01.000Z", True)
    row = query(db_path, "SELECT * FROM integrations")[0]
    assert (row["syncs_succeeded"], row["syncs_failed"], row["failing_since"], row["last_records_count"]) == (
        2, 1, "2026-01-03T00:00:00.000Z", 3,
    )  # fmt: skip


# -- the heartbeat -----------------------------------------------------------------------------------


def test_every_tick_records_the_heartbeat_idle_and_lock_busy_ones_too(cli, db_path, store):
    add(store, "manual", "https://x.example/", "--interval", "manual")
    assert cli("run-due") == Result(0, "", "")
    first = query(db_path, "SELECT * FROM run_due_ticks")
    assert len(first) == 1 and first[0]["host"]

    lock = HeldLock(db_path)
    try:
        busy = cli("run-due")
    finally:
        lock.release()
    assert busy == Result(0, "", "")
    second = query(db_path, "SELECT * FROM run_due_ticks")
    assert len(second) == 1 and second[0]["ticked_at"] > first[0]["ticked_at"]


# -- the guard ------------------------------------------------------------------------------------------


def test_min_records_turns_an_empty_success_into_a_failure_that_deletes_nothing(cli, db_path, source):
    route = sequence(json_body([{"id": 1}, {"id": 2}]), json_body({"items": []}))
    url = source.add("/items", route)
    assert cli("add", "crm", "--url", url, "--min-records", "1").returncode == 0
    assert cli("run-due").returncode == 0
    make_due(db_path, "crm")

    result = cli("run-due")

    assert result.returncode == 1
    assert "crm: returned 0 records, at least 1 expected (hint: " in result.stderr
    assert "--min-records" in result.stderr
    log = query(db_path, "SELECT status, error_message FROM sync_logs ORDER BY id DESC LIMIT 1")[0]
    assert log == {"status": "FAILED", "error_message": "returned 0 records, at least 1 expected"}
    row = query(db_path, "SELECT consecutive_failures, records_count FROM integrations")[0]
    assert row == {"consecutive_failures": 1, "records_count": 2}


# -- the health check ---------------------------------------------------------------------------------


def test_health_is_ok_then_critical_without_ticks(cli, db_path, store):
    add(store, "crm", "https://x.example/", "--interval", "1h")
    store.conn.execute("UPDATE integrations SET last_success_at = ?, next_sync_at = ?",
                       ("2099-01-01T00:00:00.000Z", "2099-01-01T00:00:00.000Z"))
    assert cli("run-due").returncode == 0

    ok = cli("health")
    assert ok.returncode == 0, ok
    assert ok.stdout.startswith("SYNCCTL OK - 1 integration, none stale, failing or disabled")
    assert " | integrations=1 stale=0 disabled=0 failing=0 paused=0 last_tick_age=" in ok.stdout

    late = at(db_path, utc_ms() + timedelta(minutes=4), "health", "--json")
    assert late.returncode == 2
    report = late.json()
    assert report["status"] == "CRITICAL" and report["last_tick_at"]
    assert [(p["kind"], p["integration"]) for p in report["problems"]] == [("no_tick", None)]
    assert "cron" in report["problems"][0]["hint"]


def test_health_reports_stale_disabled_failing_and_long_paused_integrations(cli, db_path, store):
    for name in ("stale", "dead", "flaky", "old"):
        add(store, name, f"https://x.example/{name}", "--interval", "1h")
    now = utc_ms()
    far = "2099-01-01T00:00:00.000Z"
    store.conn.execute("UPDATE integrations SET last_success_at = ?, next_sync_at = ?", (far, far))
    store.conn.execute("UPDATE integrations SET last_success_at = '2000-01-01T00:00:00.000Z' WHERE name = 'stale'")
    store.conn.execute(
        "UPDATE integrations SET sync_enabled = 0, disabled_reason = 'failures', consecutive_failures = 4,"
        " last_error = 'HTTP 401 Unauthorized', disabled_at = ? WHERE name = 'dead'", (far,))
    store.conn.execute("UPDATE integrations SET consecutive_failures = 1, last_error = 'HTTP 503' WHERE name = 'flaky'")
    assert cli("pause", "old").returncode == 0
    assert cli("run-due").returncode == 0

    result = at(db_path, now + timedelta(days=8), "run-due")  # a tick 8 days on: no no_tick
    checked = at(db_path, now + timedelta(days=8, seconds=5), "health")

    assert result.returncode == 0
    assert checked.returncode == 2
    first, *lines = checked.stdout.splitlines()
    assert first.startswith("SYNCCTL CRITICAL - 4 problems: ")
    assert first.endswith("integrations=4 stale=1 disabled=1 failing=1 paused=1 " + first.split()[-1])
    assert any(line.startswith("dead: disabled after 4 failed attempts: HTTP 401") and "syncctl resume dead" in line
               for line in lines)
    assert any(line.startswith("stale: stale: last success") for line in lines)
    assert any(line.startswith("flaky: failing (1 failed attempt): HTTP 503") for line in lines)
    assert any(line.startswith("old: paused for 8d") for line in lines)
    kinds = {p["integration"]: p["kind"] for p in at(db_path, now + timedelta(days=8), "health", "--json").json()["problems"]}
    assert kinds == {"stale": "stale", "dead": "disabled", "flaky": "failing", "old": "paused"}


def test_health_reports_a_stuck_run_due_and_warns_for_a_failing_one(cli, db_path, store):
    add(store, "crm", "https://x.example/", "--interval", "1h")
    far = "2099-01-01T00:00:00.000Z"
    store.conn.execute("UPDATE integrations SET last_success_at = ?, next_sync_at = ?", (far, far))
    assert cli("run-due").returncode == 0
    lock = HeldLock(db_path, since=datetime.now(timezone.utc) - timedelta(minutes=20))
    try:
        # Spec §9: a tick that finds the lock held past 2 × --sync-timeout + 5 min says so and
        # exits 1 (cron mails it); it still beats (the heartbeat).
        assert cli("run-due").returncode == 1
        stuck = cli("health", "--json")
        relaxed = cli("health", "--sync-timeout", "900")
    finally:
        lock.release()
    assert stuck.returncode == 2
    problem = stuck.json()["problems"][0]
    assert (problem["kind"], problem["integration"]) == ("stuck_run", None)
    assert f"pid {os.getpid()}" in problem["message"]
    assert relaxed.returncode == 0, relaxed  # 20 minutes is fine with --sync-timeout 900


def test_health_of_a_missing_database_is_unknown_and_creates_nothing(cli, db_path):
    result = cli("health")
    assert result.returncode == 3
    assert result.stdout.startswith("SYNCCTL UNKNOWN - ") and str(db_path) in result.stdout
    assert not db_path.exists()
    as_json = cli("health", "--json")
    assert as_json.returncode == 3 and as_json.json()["status"] == "UNKNOWN"


# -- notifications (Apprise json:// to a real receiver) ------------------------------------------------------


def test_failing_disabled_and_recovered_are_each_sent_once_across_ticks(cli, db_path, source):
    items = source.add("/items", json_body({"error": "down"}, status=500))
    hook = source.add("/hook", json_body({}))
    assert cli("add", "crm", "--url", items, "--max-retries", "1").returncode == 0
    added = cli("notify", "add", hook.replace("http://", "json://"))
    assert added.returncode == 0, added

    assert cli("run-due").returncode == 1  # fails: 'failing'
    assert cli("run-due").returncode == 0  # not due: nothing new
    make_due(db_path, "crm")
    disabled = cli("run-due")  # fails again: disabled
    assert disabled.returncode == 1
    assert cli("run-due").returncode == 0
    assert titles(source) == ["syncctl: crm is failing", "syncctl: crm is disabled"]
    body = notifications(source)[1]["message"]
    assert "HTTP 500" in body and "syncctl resume crm" in body

    source.add("/items", json_body([{"id": 1}]))
    assert cli("resume", "crm").returncode == 0
    assert cli("run-due") == Result(0, "", "")
    assert cli("run-due") == Result(0, "", "")
    assert titles(source) == ["syncctl: crm is failing", "syncctl: crm is disabled", "syncctl: crm recovered"]
    target = cli("notify", "list", "--json").json()[0]
    assert target["last_sent_at"] and target["last_error"] is None


def test_stale_is_sent_once_then_again_a_day_later_and_a_failed_delivery_is_retried(cli, db_path, source, store):
    add(store, "feed", "https://x.example/", "--interval", "manual")
    store.conn.execute("UPDATE integrations SET config = json_set(config, '$.max_staleness', 60)")
    hook = source.add("/hook", sequence(json_body({}, status=500), json_body({})))
    token = "hookpath-Zx9pQ2w"
    assert cli("notify", "add", hook.replace("http://", "json://") + "?-token=${HOOK_TOKEN}",
               "--events", "stale").returncode == 0
    env = {"HOOK_TOKEN": token}
    start = utc_ms()

    refused = at(db_path, start + timedelta(minutes=5), "run-due", env=env)  # the receiver answers 500
    assert refused == Result(0, "", "")
    listed_targets = cli("notify", "list", "--json").json()
    assert listed_targets[0]["last_error"] and listed_targets[0]["last_sent_at"] is None
    assert "${HOOK_TOKEN}" in listed_targets[0]["url"]

    assert at(db_path, start + timedelta(minutes=6), "run-due", env=env) == Result(0, "", "")  # retried
    assert at(db_path, start + timedelta(minutes=7), "run-due", env=env) == Result(0, "", "")
    assert titles(source) == ["syncctl: feed is stale"] * 2  # the refused one, then its retry
    assert cli("notify", "list", "--json").json()[0]["last_error"] is None

    assert at(db_path, start + timedelta(days=1, minutes=10), "run-due", env=env) == Result(0, "", "")
    assert titles(source) == ["syncctl: feed is stale"] * 3
    with source.lock:
        assert all(target.endswith(f"-token={token}") or f"token={token}" in target
                   for _, target, _ in source.bodies)
    assert token not in Path(db_path).read_bytes().decode("latin-1")


def test_notify_add_list_remove_and_test(cli, db_path, source):
    hook = source.add("/hook", json_body({}))
    assert cli("notify", "add", "ftp://nowhere").returncode == 2
    assert cli("notify", "add", "json://x", "--events", "failing,bogus").returncode == 2
    added = cli("notify", "add", hook.replace("http://", "json://"), "--events", "failing,recovered", "--after", "3")
    assert added.returncode == 0 and db_path.exists()  # notify add creates the database
    assert cli("notify", "add", f"json://127.0.0.1:{closed_port()}/down").returncode == 0

    targets = cli("notify", "list", "--json").json()
    assert [(t["id"], t["events"], t["after"]) for t in targets] == [(1, ["failing", "recovered"], 3), (2, list(
        ("failing", "disabled", "recovered", "stale", "stuck")), 1)]
    assert set(targets[0]) == {"id", "url", "events", "after", "last_sent_at", "last_error"}

    assert cli("notify", "test", "1").returncode == 0
    assert titles(source) == ["syncctl: test notification"]
    failed = cli("notify", "test")
    assert failed.returncode == 1
    assert "notification target #2" in failed.stderr and len(failed.stderr.splitlines()) == 1
    assert cli("notify", "list", "--json").json()[1]["last_error"]

    assert cli("notify", "remove", "2").returncode == 0
    assert [t["id"] for t in cli("notify", "list", "--json").json()] == [1]
    assert cli("notify", "add", hook.replace("http://", "json://") + "?t=${HOOK_TOKEN}").returncode == 0
    token_target = str(cli("notify", "list", "--json").json()[-1]["id"])
    unset = cli("notify", "test", token_target, env={"HOOK_TOKEN": None})
    assert unset.returncode == 1 and "HOOK_TOKEN is not set" in unset.stderr, unset.stderr
    assert "(hint: export HOOK_TOKEN in the environment syncctl runs in" in unset.stderr, unset.stderr
    assert cli("notify", "remove", token_target).returncode == 0
    assert cli("notify", "remove", "2").returncode == 2


def test_a_stuck_run_due_is_announced_once_from_lock_busy_ticks(cli, db_path, source, store):
    add(store, "crm", "https://x.example/", "--interval", "manual")
    hook = source.add("/hook", json_body({}))
    assert cli("notify", "add", hook.replace("http://", "json://"), "--events", "stuck").returncode == 0
    lock = HeldLock(db_path, since=datetime.now(timezone.utc) - timedelta(minutes=20))
    try:
        cli("run-due")
        cli("run-due")
    finally:
        lock.release()
    assert titles(source) == ["syncctl: run-due is stuck"]
    assert f"pid {os.getpid()}" in notifications(source)[0]["message"]


# -- pings ------------------------------------------------------------------------------------------------


def test_pings_start_success_and_fail_share_a_rid_and_idle_ticks_ping_success(cli, db_path, source):
    for path in ("/hc", "/hc/start", "/hc/fail"):
        source.add(path, json_body({}))
    ok = source.add("/ok", json_body([{"id": 1}]))
    assert cli("add", "good", "--url", ok).returncode == 0
    ping = source.url("/hc")

    assert cli("run-due", "--ping", ping) == Result(0, "", "")
    start, success = source.queries("/hc/start"), source.queries("/hc")
    assert len(start) == 1 and len(success) == 1 and start[0]["rid"] == success[0]["rid"]

    assert cli("run-due", env={"SYNCCTL_PING_URL": ping}) == Result(0, "", "")  # idle: success only
    assert len(source.queries("/hc/start")) == 1 and len(source.queries("/hc")) == 2
    assert source.queries("/hc")[1]["rid"] != success[0]["rid"]

    source.add("/bad", json_body({"error": "x"}, status=500))
    assert cli("add", "bad", "--url", source.url("/bad")).returncode == 0
    failed = cli("run-due", "--ping", ping)
    assert failed.returncode == 1
    fail_rid = source.queries("/hc/fail")[0]["rid"]
    assert source.queries("/hc/start")[-1]["rid"] == fail_rid
    with source.lock:
        body = next(b for path, _, b in source.bodies if path == "/hc/fail").decode()
    assert body.startswith("syncctl: bad: HTTP 500") and body.strip() == failed.stderr.strip()


def test_a_ping_that_fails_never_fails_the_run(cli, store):
    add(store, "manual", "https://x.example/", "--interval", "manual")
    assert cli("run-due", "--ping", f"http://127.0.0.1:{closed_port()}/hc") == Result(0, "", "")
    assert cli("run-due", "--ping", "file:///etc/passwd").returncode == 2


# -- Prometheus ------------------------------------------------------------------------------------------


def test_metrics_are_valid_for_promtool_and_name_each_integration(cli, db_path, source, tmp_path):
    promtool = require_tool("promtool", "apt-get install prometheus")
    assert cli("add", "good", "--url", source.add("/ok", json_body([{"id": 1}, {"id": 2}]))).returncode == 0
    assert cli("add", "bad", "--url", source.add("/bad", json_body({}, status=500))).returncode == 0
    assert cli("run-due").returncode == 1

    text = cli("metrics").stdout
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                             timeout=HANG_GUARD)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    assert samples['syncctl_syncs_total{integration="good",status="success"}'] == 1
    assert samples['syncctl_syncs_total{integration="bad",status="failed"}'] == 1
    assert samples['syncctl_last_sync_records{integration="good"}'] == 2
    assert samples['syncctl_records_stored{integration="good"}'] == 2
    assert samples['syncctl_consecutive_failures{integration="bad"}'] == 1
    assert samples['syncctl_enabled{integration="bad"}'] == 1
    assert samples['syncctl_stale{integration="good"}'] == 0
    assert 'syncctl_last_success_timestamp_seconds{integration="bad"}' not in samples
    assert abs(samples['syncctl_last_success_timestamp_seconds{integration="good"}'] - time.time()) < HANG_GUARD
    assert samples["syncctl_run_due_last_tick_timestamp_seconds"] > 0

    metrics_file = tmp_path / "textfile" / "syncctl.prom"
    assert cli("run-due", "--metrics-file", str(metrics_file)).returncode == 2  # no such folder
    metrics_file.parent.mkdir()
    lock = HeldLock(db_path)
    try:
        busy = cli("run-due", "--metrics-file", str(metrics_file))  # lock-busy: still written
    finally:
        lock.release()
    assert busy == Result(0, "", "")
    written = metrics_file.read_text()
    assert "syncctl_run_due_last_tick_timestamp_seconds" in written
    assert sorted(p.name for p in metrics_file.parent.iterdir()) == ["syncctl.prom"]  # no temporary left


def test_the_metrics_file_follows_every_tick_and_every_change(cli, db_path, source, tmp_path):
    promtool = require_tool("promtool", "apt-get install prometheus")
    url = source.add("/ok", json_body([{"id": 1}]))
    assert cli("add", "good", "--url", url, "--interval", "1h").returncode == 0
    metrics_file = tmp_path / "syncctl.prom"

    def sample(name: str) -> float:
        lines = [line for line in metrics_file.read_text().splitlines() if line.startswith(name + " ")]
        return float(lines[0].rsplit(" ", 1)[1])

    assert cli("run-due", "--metrics-file", str(metrics_file)).returncode == 0
    first_tick = sample("syncctl_run_due_last_tick_timestamp_seconds")
    assert sample('syncctl_syncs_total{integration="good",status="success"}') == 1
    assert at(db_path, utc_ms() + timedelta(seconds=30), "run-due", "--metrics-file", str(metrics_file)).returncode == 0
    assert sample("syncctl_run_due_last_tick_timestamp_seconds") > first_tick  # nothing else changed
    checked = subprocess.run([promtool, "check", "metrics"], input=metrics_file.read_text(), capture_output=True,
                             text=True, timeout=HANG_GUARD)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    assert cli("sync", "good").returncode == 0  # a change between ticks
    assert cli("run-due", "--metrics-file", str(metrics_file)).returncode == 0
    assert sample('syncctl_syncs_total{integration="good",status="success"}') == 2
    assert cli("pause", "good").returncode == 0
    assert cli("run-due", "--metrics-file", str(metrics_file)).returncode == 0
    assert (sample('syncctl_stale{integration="good"}'), sample('syncctl_enabled{integration="good"}')) == (0, 0)
    later = utc_ms() + timedelta(hours=4)  # stale with time alone: nothing changed in the database
    assert at(db_path, later, "run-due", "--metrics-file", str(metrics_file)).returncode == 0
    assert sample('syncctl_stale{integration="good"}') == 1


def test_an_idle_tick_rewrites_only_the_last_tick_sample_of_the_metrics_file(cli, db_path, source, tmp_path):
    url = source.add("/ok", json_body([{"id": 1}]))
    for name in ("one", "two"):
        assert cli("add", name, "--url", url, "--interval", "1h").returncode == 0
    metrics_file = tmp_path / "textfile" / "syncctl.prom"
    metrics_file.parent.mkdir()
    spare = metrics_file.with_name(".syncctl.prom.spare")
    start = utc_ms() + timedelta(minutes=1)
    versions = []
    for minute in range(4):  # a full write, then three idle ticks
        moment = start + timedelta(minutes=minute)
        assert at(db_path, moment, "run-due", "--metrics-file", str(metrics_file)) == Result(0, "", "")
        stat = metrics_file.stat()
        versions.append(((stat.st_ino, stat.st_dev), metrics_file.read_text()))
    body = [text.rsplit("\n", 2)[0] for _, text in versions]  # all but the last-tick sample
    assert body == [body[0]] * 4
    ticks = [float(text.rstrip("\n").rsplit(" ", 1)[1]) for _, text in versions]
    assert ticks == sorted(ticks) and len(set(ticks)) == 4, ticks
    assert [p.name for p in metrics_file.parent.iterdir() if p.name.endswith(".prom")] == ["syncctl.prom"]
    assert not [p for p in metrics_file.parent.iterdir() if p.name.endswith(".tmp")]
    if can_exchange(tmp_path):  # two files take turns: nothing copied, nothing freed
        inodes = [inode for inode, _ in versions[1:]]
        assert inodes[0] != inodes[1] and inodes[0] == inodes[2], inodes
        assert spare.read_text() == versions[-2][1]  # the previous version, whole
    # What the idle ticks made is what a full write makes at the same moment.
    last = start + timedelta(minutes=3)
    metrics_file.unlink()
    spare.unlink(missing_ok=True)
    assert at(db_path, last, "run-due", "--metrics-file", str(metrics_file)).returncode == 0
    assert metrics_file.read_text().rsplit("\n", 2)[0] == body[-1]


def test_a_healthy_tick_with_every_monitor_configured_prints_nothing(cli, db_path, source, tmp_path):
    for path in ("/hc", "/hc/start", "/hook"):
        source.add(path, json_body({}))
    assert cli("add", "good", "--url", source.add("/ok", json_body([{"id": 1}]))).returncode == 0
    assert cli("notify", "add", source.url("/hook").replace("http://", "json://")).returncode == 0
    result = cli("run-due", "--ping", source.url("/hc"), "--metrics-file", str(tmp_path / "m.prom"))
    assert result == Result(0, "", "")
    assert titles(source) == [] and (tmp_path / "m.prom").exists()


@pytest.mark.parametrize("module", ["apprise", "prometheus_client", "urllib.request", "requests"])
def test_an_idle_tick_without_monitors_imports_none_of_them(db_path, module):
    Store.open(db_path).close()
    code = (
        "import sys\nfrom syncctl.cli import main\n"
        f"try:\n    main(['--db', {str(db_path)!r}, 'run-due'])\nexcept SystemExit:\n    pass\n"
        f"assert {module!r} not in sys.modules, 'imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=base_env(db_path), capture_output=True, text=True,
                            timeout=HANG_GUARD)
    assert result.returncode == 0, result.stderr
