"""`syncctl demo`, the README's first command: a tour that needs no network."""

from __future__ import annotations

from tests.conftest import query


def test_the_demo_shows_successes_a_failure_with_its_hint_and_a_scheduled_retry(cli, db_path):
    result = cli("demo")

    assert result.returncode == 0, result
    assert "Traceback" not in result.stderr
    for step in ("$ syncctl add weather", "$ syncctl run-due -v", "$ syncctl list", "$ syncctl history"):
        assert step in result.stdout
    # The flaky source's failure reaches stderr as one line with its hint, as cron would mail it.
    failures = [line for line in result.stderr.splitlines() if "inventory" in line]
    assert len(failures) == 1 and "503" in failures[0] and "hint:" in failures[0]
    # The database the tour wrote (the --db/SYNCCTL_DB path, which did not exist yet).
    states = {
        r["name"]: r
        for r in query(db_path, "SELECT name, last_status, records_count, consecutive_failures,"
                       " next_sync_at, last_sync_at FROM integrations")
    }
    assert states["weather"]["last_status"] == "SUCCESS" and states["weather"]["records_count"] == 8
    assert states["orders"]["last_status"] == "SUCCESS" and states["orders"]["records_count"] == 75
    flaky = states["inventory"]
    assert flaky["last_status"] == "FAILED" and flaky["consecutive_failures"] == 1
    assert flaky["next_sync_at"] > flaky["last_sync_at"]  # a retry is scheduled, not immediate
    logs = query(db_path, "SELECT status FROM sync_logs")
    assert sorted(r["status"] for r in logs) == ["FAILED", "SUCCESS", "SUCCESS"]  # the second run synced nothing


def test_the_demo_never_adds_its_samples_to_a_database_in_use(cli, db_path):
    assert cli("add", "prod", "--url", "https://example.com/api").returncode == 0

    result = cli("demo")

    assert result.returncode == 0, result
    assert [r["name"] for r in query(db_path, "SELECT name FROM integrations")] == ["prod"]
    assert str(db_path) not in result.stdout  # it says which (temporary) database it used
