"""`syncctl demo`, the README's first command: a tour that needs no network."""

from __future__ import annotations

from tests.helpers import query, stored


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


def test_the_demo_ends_with_a_dashboard_query_over_the_weather_table(cli, db_path):
    result = cli("demo")

    assert result.returncode == 0, result
    out = result.stdout
    assert "$ syncctl schema weather" in out
    assert out.index("$ syncctl schema weather") > out.rindex("$ syncctl run-due -v")
    # The SQL it ran, on a line of its own, ready to copy into a dashboard.
    lines = out.splitlines()
    sql_at = next(i for i, line in enumerate(lines) if line.strip().upper().startswith("SELECT "))
    sql = lines[sql_at].strip().rstrip(";")
    assert "FROM weather" in sql and sql_at > next(i for i, line in enumerate(lines) if "schema weather" in line)
    # Then its rows as a small table: a header, one line per row, and a blank line.
    header = lines[sql_at + 2].split()
    printed = []
    for line in lines[sql_at + 3:]:
        if not line.strip():
            break
        printed.append(line.split())
    assert header == ["city", "temp_c"]
    # What the demo printed is what the query gives on the database it wrote...
    rows = query(db_path, sql)
    assert printed == [[str(r[c]) for c in header] for r in rows]
    # ... the warmest of the cities the sample API served, from the typed table.
    served = stored(db_path, "weather").values()
    warm = sorted((-r["temp_c"], r["city"]) for r in served if r["temp_c"] >= 20)
    assert printed == [[city, str(-temp)] for temp, city in warm]
    assert printed == [["Turku", "27"], ["Pune", "25"], ["Hanoi", "22"], ["Quito", "20"]]
    types = {r["name"]: r["type"] for r in query(db_path, "SELECT name, type FROM pragma_table_info('weather')")}
    assert types["temp_c"] == "INTEGER" and types["city"] == "TEXT"
    # The tour's own sign-off still closes it.
    assert lines[-1].startswith("Deploy:") and out.index("Explore:") > sql_at


def test_the_demo_never_adds_its_samples_to_a_database_in_use(cli, db_path):
    assert cli("add", "prod", "--url", "https://example.com/api").returncode == 0

    result = cli("demo")

    assert result.returncode == 0, result
    assert [r["name"] for r in query(db_path, "SELECT name FROM integrations")] == ["prod"]
    assert str(db_path) not in result.stdout  # it says which (temporary) database it used
