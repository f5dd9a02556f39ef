"""Spec §15's "done when", through the CLI and the database, on both backends where it
differs: PostgreSQL's native types through information_schema, a frozen schema refusing a
new field and storing nothing, a table always equal to live_records (sweeps, a failure
mid-pagination), and a database from the previous release gaining its tables."""

from __future__ import annotations

import json
import sqlite3

from syncctl.store import schema_steps
from tests.helpers import query, run_syncctl
from tests.httpsources import json_body, send


def pg_rows(url: str, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


RECORDS = [
    {"id": 1, "city": "Oslo", "temp_c": 10, "ratio": 0.5, "ok": True, "at": "2026-01-01T10:00:00Z",
     "station": {"name": "north", "geo": {"lat": 59.9}}, "tags": ["a"]},
    {"id": 2, "city": "Rome", "temp_c": 21, "ratio": 1.5, "ok": False, "at": "2026-01-02T10:00:00+01:00",
     "station": {"name": "south", "geo": {"lat": 41.9}}, "tags": []},
]  # fmt: skip


def test_postgresql_gives_each_field_its_native_type(pg_url, source):
    url = source.add("/w", json_body(RECORDS))
    assert run_syncctl(pg_url, "add", "weather-eu", "--url", url).returncode == 0
    assert run_syncctl(pg_url, "sync", "weather-eu").returncode == 0

    types = dict(pg_rows(pg_url, "SELECT column_name, data_type FROM information_schema.columns"
                                 " WHERE table_name = 'weather_eu'"))  # fmt: skip
    assert types == {
        "_key": "text", "_synced_at": "timestamp with time zone", "id": "bigint", "city": "text",
        "temp_c": "bigint", "ratio": "double precision", "ok": "boolean", "at": "timestamp with time zone",
        "station__name": "text", "station__geo__lat": "double precision", "tags": "jsonb",
    }, "spec §15: bigint, double precision, boolean, timestamptz, jsonb on PostgreSQL"
    rows = pg_rows(pg_url, "SELECT _key, ok, tags::text, station__geo__lat FROM weather_eu ORDER BY _key")
    assert rows == [("1", True, '["a"]', 59.9), ("2", False, "[]", 41.9)]


def test_a_frozen_schema_refuses_a_new_field_and_stores_nothing_of_that_sync(db_path, source):
    url = source.add("/w", json_body(RECORDS))
    target = str(db_path)
    assert run_syncctl(target, "add", "w", "--url", url, "--schema", "freeze").returncode == 0
    assert run_syncctl(target, "sync", "w").returncode == 0, "the first sync creates the table whatever the setting"
    before = sqlite3.connect(db_path).execute("SELECT * FROM w ORDER BY _key").fetchall()

    changed = [{**r, "humidity": 80, "city": r["city"] + "!"} for r in RECORDS]
    source.add("/w", json_body(changed))
    refused = run_syncctl(target, "sync", "w")

    assert refused.returncode == 1
    assert "humidity" in refused.stderr and "syncctl edit w --schema evolve" in refused.stderr, refused.stderr
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT * FROM w ORDER BY _key").fetchall() == before, "the table is as it was"
    stored = [json.loads(d) for (d,) in conn.execute("SELECT data FROM records ORDER BY key")]
    assert [r["city"] for r in stored] == ["Oslo", "Rome"], "nothing of the refused page reached records"
    (failures,) = conn.execute("SELECT consecutive_failures FROM integrations").fetchone()
    assert failures == 0, "a manual sync's failure is not counted (spec §6)"
    assert run_syncctl(target, "edit", "w", "--schema", "evolve").returncode == 0
    assert run_syncctl(target, "sync", "w").returncode == 0
    assert [r[0] for r in sqlite3.connect(db_path).execute("SELECT humidity FROM w")] == [80, 80]


def table_equals_live_records(db_path, table: str) -> None:  # noqa: ANN001
    conn = sqlite3.connect(db_path)
    live = {k: json.loads(d) for k, d in conn.execute("SELECT key, data FROM live_records")}
    rows = {k: v for k, v in conn.execute(f'SELECT _key, "v" FROM "{table}"')}
    assert set(rows) == set(live), f"the table holds exactly the keys of live_records: {sorted(rows)} vs {sorted(live)}"
    assert all(rows[k] == live[k].get("v") for k in live), "each row holds its record's values"


def test_deletion_sweeps_keep_the_table_equal_to_live_records(db_path, source):
    target = str(db_path)
    for mode in ("mark", "remove"):
        url = source.add(f"/{mode}", json_body([{"id": n, "v": f"x{n}"} for n in range(1, 5)]))
        assert run_syncctl(target, "add", mode, "--url", url, "--deletes", mode).returncode == 0
        assert run_syncctl(target, "sync", mode).returncode == 0
        source.add(f"/{mode}", json_body([{"id": n, "v": f"y{n}"} for n in (1, 2, 3)]))
        assert run_syncctl(target, "sync", mode).returncode == 0
    for mode in ("mark", "remove"):
        conn = sqlite3.connect(db_path)
        keys = [k for (k,) in conn.execute(f'SELECT _key FROM "{mode}" ORDER BY _key')]
        assert keys == ["1", "2", "3"], f"--deletes {mode}: the record the source dropped left the table"
    marked = sqlite3.connect(db_path).execute("SELECT count(*) FROM records WHERE deleted_at IS NOT NULL").fetchone()
    assert marked == (1,), "--deletes mark keeps it in records, marked"


def test_a_failure_mid_pagination_leaves_the_table_equal_to_live_records(db_path, source):
    target = str(db_path)
    pages = {1: [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}], 2: [{"id": 3, "v": "c"}]}

    def paged(handler) -> None:  # noqa: ANN001
        page = int(handler.path.rsplit("page=", 1)[-1]) if "page=" in handler.path else 1
        if page in pages:
            send(handler, 200, json.dumps(pages[page]).encode())
        elif page == 3 and failing["now"]:
            send(handler, 500, b'{"error": "boom"}')
        else:
            send(handler, 200, b"[]")

    failing = {"now": False}
    url = source.add("/p", paged)
    assert run_syncctl(target, "add", "p", "--url", url, "--paginate", "page:page").returncode == 0
    assert run_syncctl(target, "sync", "p").returncode == 0
    table_equals_live_records(db_path, "p")

    pages[1] = [{"id": 1, "v": "a2"}, {"id": 2, "v": "b2"}]
    pages[2] = [{"id": 3, "v": "c2"}, {"id": 4, "v": "d2"}]
    failing["now"] = True
    assert run_syncctl(target, "sync", "p").returncode == 1
    table_equals_live_records(db_path, "p")
    assert sqlite3.connect(db_path).execute("SELECT v FROM p WHERE _key = '4'").fetchone() == ("d2",), (
        "pages committed before the failure are in both tables"
    )


def test_a_database_of_the_previous_release_gains_its_tables_built_from_its_records(db_path, cli):
    conn = sqlite3.connect(db_path.parent.mkdir(parents=True, exist_ok=True) or db_path)
    for number, sql in schema_steps():
        if number <= 6:
            conn.executescript(sql)
    conn.executescript("""
        PRAGMA application_id = 1398361667; PRAGMA user_version = 6;
        CREATE TABLE IF NOT EXISTS schema_steps (step INTEGER PRIMARY KEY);
        INSERT INTO schema_steps VALUES (1), (2), (3), (4), (5), (6);
        INSERT INTO integrations (id, name, url, config, sync_interval, created_at, updated_at)
            VALUES (1, 'weather', 'http://127.0.0.1:9/', '{}', 3600, '2026-01-01T00:00:00.000Z',
                    '2026-01-01T00:00:00.000Z'),
                   (2, 'records', 'http://127.0.0.1:9/', '{}', 3600, '2026-01-01T00:00:00.000Z',
                    '2026-01-01T00:00:00.000Z'),
                   (3, 'sqlite-logs', 'http://127.0.0.1:9/', '{}', 3600, '2026-01-01T00:00:00.000Z',
                    '2026-01-01T00:00:00.000Z');
        INSERT INTO records (integration_id, key, data, synced_at) VALUES
            (1, '1', '{"id": 1, "temp_c": 3, "station": {"name": "n"}}', '2026-01-01T00:00:00.000Z'),
            (1, '2', '{"id": 2, "temp_c": 4.5}', '2026-01-01T00:00:00.000Z'),
            (2, 'x', '42', '2026-01-01T00:00:00.000Z');
    """)
    conn.close()

    listed = cli("list", "--json")

    assert listed.returncode == 0, listed.stderr
    assert listed.stderr.count("records_2") == 1, f"the clash with syncctl's own table is said once: {listed.stderr}"
    assert "sqlite-logs are now also in table logs" in listed.stderr, "a reserved prefix is dropped, said once"
    assert cli("list", "--json").stderr == "", "and only once"
    assert [r["data_table"] for r in query(db_path, "SELECT data_table FROM integrations ORDER BY id")] == [
        "weather", "records_2", "logs"]
    conn = sqlite3.connect(db_path)
    rows = conn.execute("SELECT _key, id, temp_c, station__name FROM weather ORDER BY _key").fetchall()
    assert rows == [("1", 1, 3.0, "n"), ("2", 2, 4.5, None)], "built from the stored records, temp_c widened to REAL"
    assert conn.execute("SELECT _key, value FROM records_2").fetchall() == [("x", 42)], "a bare number goes into value"
    schema = cli("schema", "weather", "--json").json()
    assert [(c["name"], c["type"]) for c in schema["columns"]] == [
        ("_key", "TEXT"), ("_synced_at", "TEXT"), ("id", "INTEGER"), ("temp_c", "REAL"), ("station__name", "TEXT")]
