"""``syncctl history`` (filters, JSON shape, table) and ``syncctl prune`` (spec §3, §5)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from syncctl.timeutil import format_ts
from tests.helpers import HANG_GUARD, add, query, stored, wait_for
from tests.httpsources import hang, json_body, text_body

HISTORY_KEYS = {
    "id", "integration", "trigger", "status", "attempt", "started_at", "completed_at", "duration_ms",
    "records_count", "error_message", "error_hint", "not_modified", "records_deleted",
    "schema_changes",
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def now() -> datetime:
    return datetime.now(timezone.utc)


def insert_log(store, name: str, started: datetime, status: str = "SUCCESS", trigger: str = "schedule",
               error: tuple[str, str] | None = None, records: int | None = 1) -> int:
    """A finished sync log, written straight into the database (for logs in the past)."""
    integration_id = store.get(name).id
    cursor = store.conn.execute(
        "INSERT INTO sync_logs (integration_id, trigger, status, attempt, started_at, completed_at,"
        " duration_ms, records_count, error_message, error_hint) VALUES (?, ?, ?, 1, ?, ?, 250, ?, ?, ?)",
        (integration_id, trigger, status, format_ts(started), format_ts(started + timedelta(seconds=0.25)),
         records if status == "SUCCESS" else None, *(error or (None, None))),
    )
    return cursor.lastrowid


@pytest.fixture
def two_synced(cli, store, source):
    """``alpha`` synced twice (SUCCESS, then FAILED with a 404) and ``beta`` once (SUCCESS)."""
    source.add("/alpha", json_body([{"id": 1}, {"id": 2}]))
    source.add("/beta", json_body({"data": [{"id": "b"}]}))
    add(store, "alpha", source.url("/alpha"))
    add(store, "beta", source.url("/beta"))
    assert cli("sync", "alpha").returncode == 0
    assert cli("run-due").returncode == 0  # both due: alpha again, beta
    source.add("/alpha", text_body("gone", status=404))
    assert cli("sync", "alpha").returncode == 1


def test_history_json_shape_and_newest_first(cli, two_synced):
    result = cli("history", "--json")

    assert result.returncode == 0 and result.stderr == ""
    logs = result.json()
    assert all(set(log) == HISTORY_KEYS for log in logs)
    assert [log["id"] for log in logs] == sorted((log["id"] for log in logs), reverse=True)
    assert [(log["integration"], log["status"]) for log in logs][0] == ("alpha", "FAILED")
    failed = logs[0]
    assert failed["trigger"] == "manual" and failed["attempt"] == 1
    assert "HTTP 404" in failed["error_message"] and "/alpha" in failed["error_hint"]
    assert failed["records_count"] == 0
    succeeded = [log for log in logs if log["status"] == "SUCCESS"]
    assert len(succeeded) == 3
    for log in succeeded:
        assert log["error_message"] is None and log["error_hint"] is None
        assert log["records_count"] == (2 if log["integration"] == "alpha" else 1)
    assert {log["trigger"] for log in succeeded} == {"manual", "schedule"}
    for log in logs:
        assert TIMESTAMP.match(log["started_at"]) and TIMESTAMP.match(log["completed_at"])
        assert isinstance(log["duration_ms"], int) and log["duration_ms"] >= 0
        assert log["completed_at"] >= log["started_at"]


def test_history_filters_by_name_status_and_limit(cli, two_synced):
    alpha = cli("history", "alpha", "--json").json()
    assert {log["integration"] for log in alpha} == {"alpha"} and len(alpha) == 3

    failed = cli("history", "--status", "failed", "--json").json()
    assert [(log["integration"], log["status"]) for log in failed] == [("alpha", "FAILED")]

    succeeded = cli("history", "alpha", "--status", "SUCCESS", "--json").json()
    assert [log["status"] for log in succeeded] == ["SUCCESS", "SUCCESS"]

    everything = cli("history", "--json").json()
    limited = cli("history", "--limit", "2", "--json").json()
    assert limited == everything[:2]

    assert cli("history", "beta", "--status", "failed", "--json").json() == []


def test_history_shows_20_by_default(cli, store, source):
    add(store, "many", source.url("/m"))
    ids = [insert_log(store, "many", now() - timedelta(minutes=30 - i)) for i in range(25)]

    shown = cli("history", "many", "--json").json()

    assert [log["id"] for log in shown] == ids[::-1][:20]


def test_history_since_keeps_only_recent_logs(cli, store, source):
    source.add("/s", json_body([{"id": 1}]))
    add(store, "since", source.url("/s"))
    old = insert_log(store, "since", now() - timedelta(days=2))
    yesterday = insert_log(store, "since", now() - timedelta(hours=20), status="FAILED",
                           error=("HTTP 500 from x", "a remote fault"))
    assert cli("sync", "since").returncode == 0

    day = cli("history", "--since", "24h", "--json").json()
    hour = cli("history", "since", "--since", "1h", "--json").json()
    stamp = cli("history", "--since", format_ts(now() - timedelta(days=3)), "--json").json()

    assert old not in [log["id"] for log in day]
    assert yesterday in [log["id"] for log in day] and len(day) == 2
    assert len(hour) == 1 and hour[0]["trigger"] == "manual"
    assert [log["id"] for log in stamp][-1] == old and len(stamp) == 3


def test_history_running_shows_a_live_sync(cli, spawn, store, db_path, source):
    url = source.add("/hang", hang(HANG_GUARD))
    add(store, "slow", url)
    proc = spawn("sync", "slow")
    source.wait_hits("/hang")  # the sync is in flight, and stays so until killed
    wait_for(lambda: query(db_path, "SELECT 1 FROM sync_logs WHERE status = 'RUNNING'"), "the RUNNING log")

    running = cli("history", "--status", "running", "--json").json()

    assert len(running) == 1
    log = running[0]
    assert (log["integration"], log["status"], log["trigger"]) == ("slow", "RUNNING", "manual")
    assert log["completed_at"] is None and log["duration_ms"] is None
    table = cli("history", "--status", "running")
    assert "RUNNING" in table.stdout and "slow" in table.stdout

    proc.kill()
    proc.wait(HANG_GUARD)

    # The sync's process is gone: the next command that looks finishes its log.
    assert cli("history", "--status", "running", "--json").json() == []
    interrupted = cli("history", "slow", "--json").json()
    assert [log["status"] for log in interrupted] == ["FAILED"]
    assert "interrupted" in interrupted[0]["error_message"] and interrupted[0]["error_hint"]


def test_history_table_shows_status_trigger_error_and_hint(cli, two_synced):
    result = cli("history")

    assert result.returncode == 0 and result.stderr == ""
    header = result.stdout.splitlines()[0]
    for column in ("STATUS", "TRIGGER", "STARTED", "DURATION", "RECORDS", "ERROR"):
        assert column in header
    failed_line = next(line for line in result.stdout.splitlines() if "FAILED" in line)
    assert "alpha" in failed_line and "manual" in failed_line
    assert "HTTP 404" in failed_line and "check the URL path (/alpha)" in failed_line
    assert "SUCCESS" in result.stdout and "schedule" in result.stdout
    assert "\x1b[" not in result.stdout  # no colour when not on a terminal


def test_history_with_nothing_to_show(cli, store, source):
    add(store, "quiet", source.url("/q"))

    assert cli("history", "--json").json() == []
    table = cli("history", "quiet")
    assert table.returncode == 0 and "No sync logs" in table.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--status", "ok"), "--status"),
        (("--status", "pending"), "--status"),
        (("--since", "yesterday"), "--since"),
        (("--since", "-5h"), "--since"),
        (("--limit", "0"), "--limit"),
        (("--limit", "ten"), "limit"),
        (("alpah",), "'alpha'"),
    ],
)
def test_history_refuses_invalid_values(cli, store, source, args, needle):
    add(store, "alpha", source.url("/a"))

    result = cli("history", *args, "--json")

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr


# -- prune -------------------------------------------------------------------------------------


def test_prune_deletes_old_logs_but_keeps_the_newest_10_and_all_records(cli, store, source,
                                                                        db_path):
    source.add("/p", json_body([{"id": 1}, {"id": 2}, {"id": 3}]))
    for name in ("old", "mixed", "few"):
        add(store, name, source.url("/p"))
    long_ago = now() - timedelta(days=200)
    old_ids = [insert_log(store, "old", long_ago + timedelta(hours=i)) for i in range(15)]
    mixed_old = [insert_log(store, "mixed", long_ago + timedelta(hours=i), status="FAILED",
                            error=("HTTP 500", "a remote fault")) for i in range(5)]
    mixed_new = [insert_log(store, "mixed", now() - timedelta(days=1, hours=-i)) for i in range(6)]
    few_ids = [insert_log(store, "few", long_ago + timedelta(hours=i)) for i in range(3)]
    assert cli("sync", "--all").returncode == 0  # one fresh log each, and records to keep
    records_before = {name: stored(db_path, name) for name in ("old", "mixed", "few")}

    result = cli("prune", "--older-than", "90d")

    assert result.returncode == 0, result.stderr
    # old: 16 logs, 15 of them old: the newest 10 stay (the fresh one and the 9 newest old).
    # mixed: 12 logs, 5 old: the newest 10 are the 7 recent ones and the 3 newest old ones.
    assert result.stdout.splitlines()[0].startswith("removed 8 logs")
    assert "  old: 6" in result.stdout.splitlines()
    assert "  mixed: 2" in result.stdout.splitlines()
    assert "few" not in result.stdout
    remaining = {r["id"] for r in query(db_path, "SELECT id FROM sync_logs")}
    assert remaining.isdisjoint(old_ids[:6]) and set(old_ids[6:]) <= remaining
    assert remaining.isdisjoint(mixed_old[:2]) and set(mixed_old[2:] + mixed_new) <= remaining
    assert set(few_ids) <= remaining
    counts = {r["name"]: r["n"] for r in query(
        db_path, "SELECT i.name, COUNT(*) AS n FROM sync_logs l JOIN integrations i"
        " ON i.id = l.integration_id GROUP BY i.name")}
    assert counts == {"old": 10, "mixed": 10, "few": 4}
    assert {name: stored(db_path, name) for name in ("old", "mixed", "few")} == records_before
    assert all(len(records) == 3 for records in records_before.values())
    assert {i["name"]: i["records_count"] for i in cli("list", "--json").json()} == {
        "old": 3, "mixed": 3, "few": 3,
    }

    again = cli("prune", "--older-than", "90d")
    assert again.returncode == 0 and again.stdout.startswith("removed 0 logs")


def test_prune_keeps_logs_newer_than_the_cutoff(cli, store, source, db_path):
    add(store, "recent", source.url("/r"))
    for i in range(12):
        insert_log(store, "recent", now() - timedelta(days=30, hours=i))

    result = cli("prune", "--older-than", "90d")

    assert result.returncode == 0 and result.stdout.startswith("removed 0 logs")
    assert query(db_path, "SELECT COUNT(*) AS n FROM sync_logs")[0]["n"] == 12
    shorter = cli("prune", "--older-than", "7d")
    assert shorter.stdout.startswith("removed 2 logs") and "  recent: 2" in shorter.stdout


@pytest.mark.parametrize("args", [("--older-than", "ninety days"), ("--older-than", "-5d"), ()])
def test_prune_refuses_invalid_values(cli, store, source, db_path, args):
    add(store, "x", source.url("/x"))
    insert_log(store, "x", now() - timedelta(days=400))

    result = cli("prune", *args)

    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "--older-than" in result.stderr
    assert query(db_path, "SELECT COUNT(*) AS n FROM sync_logs")[0]["n"] == 1
