"""Tables for dashboards (spec §15), black box: real syncctl processes against a real HTTP
source on 127.0.0.1, and the data tables read back as a dashboard would, with sqlite3 or
psycopg (column types from PRAGMA table_info / information_schema.columns).

The contract-level tests run on both backends (``target``/``tcli``, parametrized over
SQLite and a real PostgreSQL cluster, as in tests/test_backends.py): naming, types,
evolution and freezing, ``schema --json``, ``--table`` on/off/rename, refusals, deletion
sweeps, failures mid-pagination, ``remove``, and records that are not objects. The
migration of a step-6 database and the ``schema`` notification run on SQLite."""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

import pytest

from syncctl.store import APPLICATION_ID, schema_steps, split_sql
from tests.helpers import Result
from tests.httpsources import dynamic, json_body

BACKENDS = ["sqlite", "postgres"]
PAST = "2000-01-01T00:00:00.000Z"
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")

# What each backend declares for each kind of column (spec §15).
TYPES = {
    "sqlite": {"integer": "INTEGER", "real": "REAL", "boolean": "INTEGER", "text": "TEXT",
               "timestamp": "TEXT", "json": "TEXT"},
    "postgres": {"integer": "bigint", "real": "double precision", "boolean": "boolean", "text": "text",
                 "timestamp": "timestamptz", "json": "jsonb"},
}  # fmt: skip


# -- fixtures: the two backends (as tests/test_backends.py has them; test files do not
# import from each other) ------------------------------------------------------------------------


# -- reading the database as a user does --------------------------------------------------------


def backend(target: str) -> str:
    return "postgres" if target.startswith(("postgresql://", "postgres://")) else "sqlite"


def sql(target: str, statement: str, params: tuple = ()) -> list[dict[str, Any]]:
    """Run one statement (``?`` placeholders on both backends); rows as dicts."""
    if backend(target) == "postgres":
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(target, autocommit=True, row_factory=dict_row) as conn:
            cursor = conn.execute(statement.replace("?", "%s"), params)
            return list(cursor.fetchall()) if cursor.description else []
    conn = sqlite3.connect(target)
    conn.row_factory = sqlite3.Row
    try:
        cursor = conn.execute(statement, params)
        rows = [dict(r) for r in cursor] if cursor.description else []
        conn.commit()
        return rows
    finally:
        conn.close()


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_exists(target: str, table: str) -> bool:
    if backend(target) == "postgres":
        found = sql(target, "SELECT 1 AS x FROM information_schema.tables WHERE table_schema = current_schema()"
                            " AND table_name = ?", (table,))  # fmt: skip
    else:
        found = sql(target, "SELECT 1 AS x FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?", (table,))
    return bool(found)


def columns(target: str, table: str) -> dict[str, str]:
    """The table's columns in order, with the types it declares (PostgreSQL's
    ``timestamp with time zone`` written as ``timestamptz``)."""
    if backend(target) == "postgres":
        rows = sql(target, "SELECT column_name, data_type FROM information_schema.columns"
                           " WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
                   (table,))  # fmt: skip
        short = {"timestamp with time zone": "timestamptz"}
        return {r["column_name"]: short.get(r["data_type"], r["data_type"]) for r in rows}
    return {r["name"]: r["type"] for r in sql(target, f"PRAGMA table_info({q(table)})")}


def primary_key(target: str, table: str) -> list[str]:
    if backend(target) == "postgres":
        found = sql(target, "SELECT k.column_name FROM information_schema.table_constraints c"
                            " JOIN information_schema.key_column_usage k ON k.constraint_name = c.constraint_name"
                            " AND k.table_schema = c.table_schema WHERE c.constraint_type = 'PRIMARY KEY'"
                            " AND c.table_schema = current_schema() AND c.table_name = ?", (table,))  # fmt: skip
        return [r["column_name"] for r in found]
    return [r["name"] for r in sql(target, f"PRAGMA table_info({q(table)})") if r["pk"]]


def rows(target: str, table: str) -> dict[str, dict[str, Any]]:
    """The table's rows by ``_key`` (without ``_synced_at``)."""
    found = sql(target, f"SELECT * FROM {q(table)}")
    return {r["_key"]: {k: v for k, v in r.items() if k not in ("_key", "_synced_at")} for r in found}


def live(target: str, name: str) -> dict[str, Any]:
    """The live records of one integration, by key, as parsed JSON."""
    found = sql(target, "SELECT r.key, r.data FROM live_records r JOIN integrations i ON i.id = r.integration_id"
                        " WHERE i.name = ?", (name,))  # fmt: skip
    return {r["key"]: json.loads(r["data"]) if isinstance(r["data"], str) else r["data"] for r in found}


def all_records(target: str, name: str) -> list[tuple]:
    found = sql(target, "SELECT r.key, r.data, r.deleted_at FROM records r JOIN integrations i"
                        " ON i.id = r.integration_id WHERE i.name = ? ORDER BY r.key", (name,))  # fmt: skip
    return [(r["key"], r["data"], r["deleted_at"]) for r in found]


def data_table(target: str, name: str) -> str | None:
    return sql(target, "SELECT data_table FROM integrations WHERE name = ?", (name,))[0]["data_table"]


def make_due(target: str, name: str) -> None:
    sql(target, f"UPDATE integrations SET next_sync_at = '{PAST}' WHERE name = ?", (name,))


def history(tcli, name: str) -> list[dict]:  # noqa: ANN001
    result = tcli("history", name, "--json")
    assert result.returncode == 0, result.stderr
    return result.json()


def synced(tcli, name: str) -> Result:  # noqa: ANN001
    result = tcli("sync", name)
    assert result.returncode == 0, f"sync {name} failed: {result.stderr}"
    return result


def one_line_error(result: Result) -> bool:
    return result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


# -- name and columns ---------------------------------------------------------------------------


def test_the_default_table_name_and_the_column_naming_rule(target, tcli, source):
    record = {
        "id": 1,
        "createdAt": "2024-05-01",
        "Temp (C)": 21,
        "station": {"name": "Uccle", "geo": {"lat": 50.8, "deep": {"x": 1}}},
        "tags": ["a", "b"],
        "2fa": "yes",
        "user_id": 3,
        "userId": 4,
        "_key": "mine",
        "_synced_at": "theirs",
        "xmin": 5,  # one of PostgreSQL's system columns
    }
    url = source.add("/obs", json_body([record]))
    assert tcli("add", "weather-eu", "--url", url).returncode == 0
    assert tcli("add", "a.b-c", "--url", url).returncode == 0

    synced(tcli, "weather-eu")

    assert data_table(target, "weather-eu") == "weather_eu", "default: - and . become _"
    assert data_table(target, "a.b-c") == "a_b_c", "default: - and . become _"
    assert list(columns(target, "weather_eu")) == [
        "_key", "_synced_at", "id", "created_at", "temp_c", "station__name", "station__geo__lat",
        "station__geo__deep", "tags", "_2fa", "user_id", "user_id_2", "_key_2", "_synced_at_2", "xmin_2",
    ], "snake_case, a__b__c up to three levels, clashes (PostgreSQL's system columns too) get _2 in the order first seen"
    [row] = sql(target, f"SELECT * FROM {q('weather_eu')}")
    assert row["_key"] == "1", "_key is the record key"
    assert (row["user_id"], row["user_id_2"]) == (3, 4), "the first field seen keeps the plain name"
    assert (row["_key_2"], row["_synced_at_2"], row["xmin_2"]) == ("mine", "theirs", 5), "fields named _key/_synced_at get _2"
    assert row["station__name"] == "Uccle", "a nested field's value"
    deep, tags = row["station__geo__deep"], row["tags"]
    if backend(target) == "sqlite":
        assert (json.loads(deep), json.loads(tags)) == ({"x": 1}, ["a", "b"]), "deeper objects and arrays as JSON text"
    else:
        assert (deep, tags) == ({"x": 1}, ["a", "b"]), "deeper objects and arrays as jsonb"
    assert STAMP.fullmatch(str(row["_synced_at"])) or backend(target) == "postgres", "_synced_at is ISO 8601 Z text"


def test_each_kind_of_value_gets_its_backends_type(target, tcli, source):
    records = [
        {"id": 1, "n": 5, "x": 1.5, "ok": True, "at": "2024-01-01T10:00:00Z", "local": "2024-01-01T10:00:00",
         "s": "hello", "obj": {"a": {"b": {"c": 1}}}, "arr": [1, 2], "nothing": None},
        {"id": 2, "n": -7, "x": 2, "ok": False, "at": "2024-01-02T10:00:00+02:00", "local": "2024-01-02T10:00:00",
         "s": "world", "obj": {"a": {"b": {"c": 2}}}, "arr": [], "nothing": None},
    ]  # fmt: skip
    url = source.add("/kinds", json_body(records))
    assert tcli("add", "kinds", "--url", url).returncode == 0

    synced(tcli, "kinds")

    t = TYPES[backend(target)]
    declared = columns(target, "kinds")
    expected = {
        "_key": t["text"], "_synced_at": "TEXT" if backend(target) == "sqlite" else "timestamptz",
        "id": t["integer"], "n": t["integer"], "x": t["real"], "ok": t["boolean"], "at": t["timestamp"],
        "local": t["text"], "s": t["text"], "obj__a__b": t["json"], "arr": t["json"], "nothing": t["text"],
    }  # fmt: skip
    for name, kind in expected.items():
        assert declared.get(name) == kind, f"column {name}: {declared.get(name)!r}, expected {kind!r}"
    table = rows(target, "kinds")
    if backend(target) == "sqlite":
        assert (table["1"]["ok"], table["2"]["ok"]) == (1, 0), "booleans are 1/0 on SQLite"
    else:
        assert (table["1"]["ok"], table["2"]["ok"]) == (True, False), "booleans are booleans on PostgreSQL"
        assert table["2"]["at"].isoformat() == "2024-01-02T08:00:00+00:00", "timestamptz holds the instant"
    assert (table["1"]["x"], table["2"]["x"]) == (1.5, 2.0), "a REAL column holds both numbers"


def test_an_integer_beyond_64_bits_keeps_every_digit_in_a_text_column(target, tcli, source):
    url = source.add("/big", json_body([{"id": 1, "big": 2**70}, {"id": 2, "big": 5}, {"id": 3}]))
    assert tcli("add", "big", "--url", url).returncode == 0

    synced(tcli, "big")

    assert columns(target, "big")["big"] == TYPES[backend(target)]["text"], "no INTEGER column holds it: TEXT"
    assert rows(target, "big")["1"]["big"] == str(2**70), "every digit kept"


def test_columns_are_added_and_widened_never_narrowed_and_each_change_is_said(target, tcli, source):
    t = TYPES[backend(target)]
    body = {"value": [{"id": 1, "temp": 20, "flag": True, "at": "2024-01-01T00:00:00Z", "gone": "x", "arr": [1]}]}
    url = source.add("/w", dynamic(lambda handler: (200, body["value"])))
    assert tcli("add", "weather-eu", "--url", url).returncode == 0

    synced(tcli, "weather-eu")
    created = history(tcli, "weather-eu")[0]
    assert created["error_hint"] is None, "creating the table is no warning"
    assert [(c["column"], c["change"]) for c in created["schema_changes"]] == [
        ("id", "added"), ("temp", "added"), ("flag", "added"), ("at", "added"), ("gone", "added"), ("arr", "added")
    ], "the creating sync lists its columns as added"
    assert {c["column"]: c["type"] for c in created["schema_changes"]}["temp"] == t["integer"], "type of an added column"

    body["value"] = [{"id": 1, "temp": 20.5, "flag": True, "at": "2024-01-01T00:00:00Z", "humidity": 80, "arr": [2]},
                     {"id": 2, "temp": 19, "flag": False, "at": "2024-01-02T00:00:00Z"}]  # fmt: skip
    synced(tcli, "weather-eu")
    widened = history(tcli, "weather-eu")[0]
    assert widened["error_hint"] == (
        f"warning: the columns of table weather_eu changed: new columns: humidity {t['integer']}; "
        f"temp widened {t['integer']} → {t['real']} (see them with: syncctl schema weather-eu)"
    ), "the warning names the new column and the widening"
    assert sorted(widened["schema_changes"], key=lambda c: c["column"]) == [
        {"column": "humidity", "change": "added", "type": t["integer"], "from": None},
        {"column": "temp", "change": "widened", "type": t["real"], "from": t["integer"]},
    ], "schema_changes lists what changed"
    assert columns(target, "weather_eu")["temp"] == t["real"], "INTEGER → REAL"
    assert "gone" in columns(target, "weather_eu"), "a field no longer sent keeps its column"
    assert rows(target, "weather_eu")["2"]["gone"] is None, "a field no longer sent is NULL in new rows"
    assert rows(target, "weather_eu")["1"]["temp"] == 20.5, "the widened column holds the new value"

    body["value"] = [{"id": 1, "temp": 20, "flag": True, "at": "2024-01-01T00:00:00Z", "arr": []}]
    synced(tcli, "weather-eu")
    narrower = history(tcli, "weather-eu")[0]
    assert columns(target, "weather_eu")["temp"] == t["real"], "an integer again never narrows REAL"
    assert narrower["schema_changes"] == [], "no change: an empty list"
    assert narrower["error_hint"] is None, "no change: no warning"

    body["value"] = [{"id": 1, "temp": "n/a", "flag": "maybe", "at": "tomorrow", "arr": 5}]
    synced(tcli, "weather-eu")
    texts = columns(target, "weather_eu")
    assert texts["temp"] == t["text"], "REAL → TEXT"
    assert texts["flag"] == t["text"], "boolean → TEXT"
    assert texts["at"] == t["text"], "timestamp → TEXT"
    assert texts["arr"] == t["text"], "JSON and a number → TEXT"
    assert rows(target, "weather_eu")["1"]["temp"] == "n/a", "the TEXT column holds the string"
    assert primary_key(target, "weather_eu") == ["_key"], "a widened table keeps _key as its primary key"

    body["value"] = [{"id": 1, "temp": 3, "flag": True, "at": "2024-01-01T00:00:00Z"}]
    synced(tcli, "weather-eu")
    assert columns(target, "weather_eu")["temp"] == t["text"], "TEXT never narrows"
    assert history(tcli, "weather-eu")[0]["schema_changes"] == [], "values that fit change nothing"


def test_a_field_only_ever_null_is_text_until_its_first_value_decides(target, tcli, source):
    t = TYPES[backend(target)]
    body = {"value": [{"id": 1, "note": None}, {"id": 2, "note": None}]}
    url = source.add("/n", dynamic(lambda handler: (200, body["value"])))
    assert tcli("add", "nulls", "--url", url).returncode == 0

    synced(tcli, "nulls")
    assert columns(target, "nulls")["note"] == t["text"], "null only: TEXT"

    body["value"] = [{"id": 1, "note": None}, {"id": 2, "note": 7}]
    synced(tcli, "nulls")

    assert columns(target, "nulls")["note"] == t["integer"], "its first value decides: INTEGER"
    [change] = history(tcli, "nulls")[0]["schema_changes"]
    assert (change["column"], change["change"], change["type"]) == ("note", "typed", t["integer"]), "said as typed"
    assert rows(target, "nulls")["2"]["note"] == 7, "the value is in the column"


def test_freeze_fails_a_sync_that_would_change_the_columns_and_stores_nothing(target, tcli, source):
    body = {"value": [{"id": 1, "temp": 20}, {"id": 2, "temp": 21}]}
    url = source.add("/f", dynamic(lambda handler: (200, body["value"])))
    assert tcli("add", "frozen", "--url", url, "--schema", "freeze", "--max-retries", "5").returncode == 0
    assert tcli("run-due").returncode == 0  # the first sync creates the table whatever the setting
    records_before = all_records(target, "frozen")
    table_before = rows(target, "frozen")
    columns_before = columns(target, "frozen")

    body["value"] = [{"id": 1, "temp": 25, "humidity": 80}, {"id": 2, "temp": 26}, {"id": 3, "temp": 1}]
    make_due(target, "frozen")
    refused = tcli("run-due")

    assert refused.returncode == 1, "a sync that would add a column fails"
    [log, _] = history(tcli, "frozen")
    assert log["status"] == "FAILED", "logged FAILED"
    assert "humidity" in log["error_message"], "the message names the new field"
    assert "syncctl edit frozen --schema evolve" in (log["error_hint"] or ""), "the hint names the fix"
    assert all_records(target, "frozen") == records_before, "records: nothing of the page stored"
    assert rows(target, "frozen") == table_before, "data table: no row changed"
    assert columns(target, "frozen") == columns_before, "data table: no column added"
    [listed] = tcli("list", "--json").json()
    assert listed["consecutive_failures"] == 1, "it counts towards retries and auto-disable"

    body["value"] = [{"id": 1, "temp": 25.5}]  # a widening is refused alike
    make_due(target, "frozen")
    assert tcli("run-due").returncode == 1, "a sync that would widen a column fails"
    assert columns(target, "frozen") == columns_before, "no column widened"
    assert all_records(target, "frozen") == records_before, "records: still nothing stored"

    assert tcli("edit", "frozen", "--schema", "evolve").returncode == 0
    synced(tcli, "frozen")
    assert columns(target, "frozen")["temp"] == TYPES[backend(target)]["real"], "evolve: widened"
    assert rows(target, "frozen")["1"]["temp"] == 25.5, "evolve: the row is written"


@pytest.mark.parametrize("schema", ["freeze", "evolve"])
def test_a_logical_type_change_that_keeps_the_declared_type_is_no_schema_change(target, tcli, source, schema):
    """A field null so far that gets text, an array that gets a string: on SQLite the
    column stays TEXT, so nothing is refused, reported or rebuilt; on PostgreSQL the array
    column is jsonb and becoming text is a real change."""
    body = {"value": [{"id": 1, "note": None, "tags": ["a"]}]}
    url = source.add("/n", dynamic(lambda handler: (200, body["value"])))
    assert tcli("add", "nt", "--url", url, "--schema", schema).returncode == 0
    synced(tcli, "nt")
    columns_before = columns(target, "nt")

    body["value"] = [{"id": 1, "note": "hello", "tags": ["a"]}]  # null → text: TEXT on both backends
    second = synced(tcli, "nt")
    assert columns(target, "nt") == columns_before
    assert history(tcli, "nt")[0]["schema_changes"] == [] and "warning" not in second.stdout + second.stderr
    assert rows(target, "nt")["1"]["note"] == "hello"

    body["value"] = [{"id": 1, "note": "hi", "tags": "b"}]  # json → text: TEXT stays TEXT, jsonb does not
    third = tcli("sync", "nt")
    if backend(target) == "sqlite":
        assert third.returncode == 0, third.stderr
        assert columns(target, "nt") == columns_before
        assert history(tcli, "nt")[0]["schema_changes"] == []
        assert rows(target, "nt")["1"]["tags"] == "b"
    elif schema == "freeze":
        assert third.returncode == 1 and "tags" in third.stderr, third.stderr
    else:
        assert third.returncode == 0 and columns(target, "nt")["tags"] == "text"
        assert [c["column"] for c in history(tcli, "nt")[0]["schema_changes"]] == ["tags"]
    assert set(rows(target, "nt")) == set(live(target, "nt"))


def test_freeze_keeps_the_earlier_pages_of_a_sync_it_fails(target, tcli, source):
    pages = {1: [{"id": 1, "v": 1}], 2: [{"id": 2, "v": 2}], 3: []}
    url = source.add("/p", dynamic(lambda h: (200, pages[int(h.query.get("p", "1"))])))
    assert tcli("add", "paged", "--url", url, "--paginate", "page:p", "--schema", "freeze").returncode == 0
    synced(tcli, "paged")

    pages[1] = [{"id": 1, "v": 10}, {"id": 3, "v": 30}]
    pages[2] = [{"id": 2, "v": 20, "extra": "new"}]
    assert tcli("sync", "paged").returncode == 1, "page 2 would add a column"

    assert sorted(live(target, "paged")) == ["1", "2", "3"], "page 1 stayed, page 2 stored nothing"
    assert live(target, "paged")["2"] == {"id": 2, "v": 2}, "page 2's record is unchanged"
    assert {k: r["v"] for k, r in rows(target, "paged").items()} == {"1": 10, "2": 2, "3": 30}, (
        "the table follows the records: page 1 written, page 2 not")


def test_a_failed_sync_that_changed_columns_says_so_after_its_fix(target, tcli, source):
    pages = {1: [{"id": 1, "v": 1}], 2: []}
    broken = {"page 2": False}

    def answer(h):  # noqa: ANN001, ANN202
        page = int(h.query.get("p", "1"))
        return (404, {"error": "gone"}) if page == 2 and broken["page 2"] else (200, pages[page])

    url = source.add("/p", dynamic(answer))
    assert tcli("add", "paged", "--url", url, "--paginate", "page:p").returncode == 0
    synced(tcli, "paged")
    pages[1] = [{"id": 1, "v": 1, "humidity": 80}]  # page 1 adds a column and is committed
    broken["page 2"] = True

    failed = tcli("sync", "paged")

    assert failed.returncode == 1
    [log, _] = history(tcli, "paged")
    assert log["status"] == "FAILED" and "404" in log["error_message"]
    assert log["error_hint"].startswith("check the URL path"), f"the fix comes first: {log['error_hint']}"
    assert "humidity" in log["error_hint"], f"the column page 1 added is said (spec §15): {log['error_hint']}"
    assert [c["column"] for c in log["schema_changes"]] == ["humidity"]
    assert rows(target, "paged")["1"]["humidity"] == 80, "page 1's row, with its new column"


def test_a_killed_sync_that_changed_columns_says_so_once_recovered(target, tcli, source):
    import signal

    from tests.helpers import spawn_syncctl
    from tests.httpsources import send, stall

    pages = {1: [{"id": 1, "v": 1}], 2: []}
    hang_on_page_2 = {"on": False}

    def answer(handler):  # noqa: ANN001, ANN202
        page = int(handler.query.get("p", "1"))
        if page == 2 and hang_on_page_2["on"]:
            stall(handler, 3600)
            return
        send(handler, 200, json.dumps(pages[page]).encode())

    url = source.add("/p", answer)
    assert tcli("add", "paged", "--url", url, "--paginate", "page:p").returncode == 0
    synced(tcli, "paged")
    pages[1] = [{"id": 1, "v": 1, "humidity": 80}]  # page 1 adds a column and is committed
    hang_on_page_2["on"] = True
    before = source.count("/p")
    proc = spawn_syncctl(target, "sync", "paged")
    source.wait_hits("/p", before + 2)  # page 2 asked: page 1 is stored
    proc.send_signal(signal.SIGKILL)
    proc.communicate()

    [log, _] = history(tcli, "paged")  # history ends the dead sync's log first

    assert log["status"] == "FAILED" and "interrupted" in log["error_message"], log
    assert "humidity" in (log["error_hint"] or ""), f"the column the killed sync added is said: {log['error_hint']}"
    assert rows(target, "paged")["1"]["humidity"] == 80


def test_freeze_lets_the_first_sync_make_the_table_from_all_its_pages(target, tcli, source):
    pages = {1: [{"id": 1, "v": 1}], 2: [{"id": 2, "v": 2.5, "extra": "x"}], 3: []}
    url = source.add("/p", dynamic(lambda h: (200, pages[int(h.query.get("p", "1"))])))
    assert tcli("add", "paged", "--url", url, "--paginate", "page:p", "--schema", "freeze").returncode == 0

    synced(tcli, "paged")  # spec §15: the first sync creates its table whatever the setting

    assert {k: (r["v"], r["extra"]) for k, r in rows(target, "paged").items()} == {"1": (1, None), "2": (2.5, "x")}
    [first] = history(tcli, "paged")
    listed = {c["column"]: (c["change"], c["type"]) for c in first["schema_changes"]}
    assert len(first["schema_changes"]) == len(listed), f"one entry per column: {first['schema_changes']}"
    assert listed["v"] == ("added", TYPES[backend(target)]["real"]), "added, with its type at the end of the sync"
    assert {"id", "v", "extra"} <= set(listed)
    pages[2] = [{"id": 2, "v": 2.5, "extra": "x", "later": True}]
    assert tcli("sync", "paged").returncode == 1, "a later sync is frozen"


def test_freeze_lets_columns_come_to_a_table_made_by_an_empty_first_sync(target, tcli, source):
    body = {"value": []}
    url = source.add("/e", dynamic(lambda handler: (200, body["value"])))
    assert tcli("add", "empty", "--url", url, "--schema", "freeze").returncode == 0
    synced(tcli, "empty")  # no records yet: a table of _key and _synced_at only

    body["value"] = [{"id": 1, "v": "a"}]
    first_records = tcli("sync", "empty")

    assert first_records.returncode == 0, f"the first records give the table its columns: {first_records.stderr}"
    assert rows(target, "empty")["1"]["v"] == "a"
    assert {c["column"] for c in history(tcli, "empty")[0]["schema_changes"]} == {"id", "v"}, "said, not silent"
    body["value"] = [{"id": 1, "v": "a", "later": 1}]
    assert tcli("sync", "empty").returncode == 1, "from then on the schema is frozen"


def test_freeze_lets_a_column_of_nulls_take_its_first_type(target, tcli, source):
    t = TYPES[backend(target)]
    body = {"value": [{"id": 1, "score": None}]}
    url = source.add("/n", dynamic(lambda handler: (200, body["value"])))
    assert tcli("add", "nulls", "--url", url, "--schema", "freeze").returncode == 0
    synced(tcli, "nulls")

    body["value"] = [{"id": 1, "score": 7}]
    typed = tcli("sync", "nulls")

    assert typed.returncode == 0, f"null never decided a type: nothing to narrow or widen: {typed.stderr}"
    assert columns(target, "nulls")["score"] == t["integer"] and rows(target, "nulls")["1"]["score"] == 7
    [change] = history(tcli, "nulls")[0]["schema_changes"]
    assert change["change"] == "typed", "reported as typed"
    body["value"] = [{"id": 1, "score": 7.5}]
    assert tcli("sync", "nulls").returncode == 1, "a widening after that is refused"


def test_schema_json_lists_each_column_with_its_type_field_and_when_it_was_added(target, tcli, source):
    body = {"value": [{"id": 1, "station": {"name": "Uccle"}, "temp": 20}]}
    url = source.add("/s", dynamic(lambda handler: (200, body["value"])))
    assert tcli("add", "weather-eu", "--url", url).returncode == 0
    synced(tcli, "weather-eu")
    body["value"] = [{"id": 1, "station": {"name": "Uccle"}, "temp": 20, "humidity": 80}]
    synced(tcli, "weather-eu")

    result = tcli("schema", "weather-eu", "--json")

    assert result.returncode == 0, result.stderr
    document = result.json()
    assert (document["integration"], document["table"]) == ("weather-eu", "weather_eu"), "names"
    listed = document["columns"]
    assert [c["name"] for c in listed] == ["_key", "_synced_at", "id", "station__name", "temp", "humidity"], "order"
    assert [c["path"] for c in listed] == [None, None, "id", "station.name", "temp", "humidity"], "field paths"
    assert {c["name"]: c["type"] for c in listed} == columns(target, "weather_eu"), "types as the table declares"
    assert all(STAMP.fullmatch(c["added_at"]) for c in listed[2:]), "added_at is UTC ISO 8601 with a Z"
    assert listed[5]["added_at"] > listed[4]["added_at"], "a column added later has a later added_at"
    assert set(listed[0]) == {"name", "type", "path", "added_at"}, "the keys of a column"
    text = tcli("schema", "weather-eu")
    assert text.returncode == 0, text.stderr
    assert "weather_eu" in text.stdout and "station__name" in text.stdout, f"the table and its columns: {text.stdout}"
    assert "station.name" in text.stdout, "the field a column comes from"


def test_schema_json_gives_a_field_with_an_empty_name_its_path(target, tcli, source):
    assert tcli("add", "odd", "--url", source.add("/o", json_body([{"id": 1, "": "blank"}]))).returncode == 0
    synced(tcli, "odd")

    listed = tcli("schema", "odd", "--json").json()["columns"]

    [blank] = [c for c in listed if c["name"] not in ("_key", "_synced_at", "id")]
    assert blank["path"] == "", f"the field's path is its (empty) name, not null as for _key: {blank}"
    assert rows(target, "odd")["1"][blank["name"]] == "blank"


def test_schema_paths_tell_a_dotted_name_from_a_nested_field(target, tcli, source):
    page = [{"id": 1, "a.b": 1, "a": {"b": 2}}]
    assert tcli("add", "dots", "--url", source.add("/d", json_body(page))).returncode == 0
    synced(tcli, "dots")

    listed = {c["name"]: c["path"] for c in tcli("schema", "dots", "--json").json()["columns"]}

    assert listed["a_b"] == "a\\.b", f"the field named 'a.b', its dot escaped: {listed}"
    assert listed["a__b"] == "a.b", f"the field b of a: {listed}"


def test_long_field_names_fit_63_bytes_and_stay_distinct(target, tcli, source):
    long_a, long_b = "a" * 70, "a" * 70 + "b"
    nested = {"p" * 40: {"q" * 40: 1}}
    url = source.add("/long", json_body([{"id": 1, long_a: 1, long_b: 2, **nested}]))
    assert tcli("add", "long", "--url", url).returncode == 0

    synced(tcli, "long")

    names = list(columns(target, "long"))
    assert all(len(n.encode()) <= 63 for n in names), f"every name fits 63 bytes: {names}"
    assert names[3:] == ["a" * 63, "a" * 61 + "_2", ("p" * 40 + "__" + "q" * 40)[:63]], "cut, then _2"
    row = rows(target, "long")["1"]
    assert (row["a" * 63], row["a" * 61 + "_2"]) == (1, 2), "each field in its own column"


def test_records_without_their_key_field_are_welcome_keyed_as_in_records(target, tcli, source):
    url = source.add("/nokey", json_body([{"name": "a", "n": 1}, {"name": "b", "n": 2}]))
    assert tcli("add", "hashed", "--url", url).returncode == 0

    synced(tcli, "hashed")

    table, records = rows(target, "hashed"), live(target, "hashed")
    assert sorted(table) == sorted(records), "the rows have the records' (hash) keys"
    assert {k: r["name"] for k, r in table.items()} == {k: r["name"] for k, r in records.items()}, "their values"


# -- --table off, rename, drop, re-enable ------------------------------------------------------------


def test_table_off_rename_drop_and_turn_on_again_from_the_stored_records(target, tcli, source):
    body = {"value": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]}
    url = source.add("/t", dynamic(lambda handler: (200, body["value"])))
    assert tcli("add", "crm", "--url", url, "--table", "off").returncode == 0
    synced(tcli, "crm")

    assert data_table(target, "crm") is None, "--table off: no table name"
    assert not table_exists(target, "crm"), "--table off: no table"
    assert len(live(target, "crm")) == 2, "--table off: the records are stored"
    off = tcli("schema", "crm", "--json").json()
    assert (off["table"], off["columns"]) == (None, []), "schema --json of no table"

    assert tcli("edit", "crm", "--table", "dash").returncode == 0
    assert table_exists(target, "dash"), "turned on: the table is built at once"
    assert {k: r["v"] for k, r in rows(target, "dash").items()} == {"1": "a", "2": "b"}, "built from the records"

    body["value"] = [{"id": 1, "v": "a2"}, {"id": 2, "v": "b"}, {"id": 3, "v": "c"}]
    synced(tcli, "crm")
    assert tcli("edit", "crm", "--table", "crm_rows").returncode == 0
    assert not table_exists(target, "dash"), "renamed: the old name is gone"
    assert data_table(target, "crm") == "crm_rows", "renamed: the integration names it"
    assert {k: r["v"] for k, r in rows(target, "crm_rows").items()} == {"1": "a2", "2": "b", "3": "c"}, (
        "renamed: the rows came along")

    assert tcli("edit", "crm", "--table", "off").returncode == 0
    assert not table_exists(target, "crm_rows"), "off: the table is dropped"
    assert data_table(target, "crm") is None, "off: no table name"
    assert len(live(target, "crm")) == 3, "off: the records stay"
    synced(tcli, "crm")
    assert not table_exists(target, "crm_rows"), "off: a sync makes no table"

    assert tcli("edit", "crm", "--table", "crm_rows").returncode == 0
    assert {k: r["v"] for k, r in rows(target, "crm_rows").items()} == {"1": "a2", "2": "b", "3": "c"}, (
        "on again: built from the records")
    assert {c["name"] for c in tcli("schema", "crm", "--json").json()["columns"]} == {"_key", "_synced_at", "id", "v"}, (
        "on again: the columns of the records")


def test_a_table_built_again_names_clashing_fields_as_the_first_sync_did(target, tcli, source):
    url = source.add("/u", json_body([{"id": 1, "user_id": 3, "userId": 4}]))
    assert tcli("add", "users", "--url", url).returncode == 0
    synced(tcli, "users")
    assert rows(target, "users")["1"] == {"id": 1, "user_id": 3, "user_id_2": 4}, "first seen keeps the plain name"

    assert tcli("edit", "users", "--table", "off").returncode == 0
    assert tcli("edit", "users", "--table", "users").returncode == 0

    assert rows(target, "users")["1"] == {"id": 1, "user_id": 3, "user_id_2": 4}, (
        "built from the stored records: user_id is still the field user_id")


def test_clashing_table_names_are_refused_and_change_nothing(target, tcli, source):
    url = source.add("/c", json_body([{"id": 1}]))
    assert tcli("add", "weather", "--url", url).returncode == 0
    assert tcli("add", "weather-eu", "--url", url).returncode == 0
    synced(tcli, "weather")
    sql(target, "CREATE TABLE mine (x INTEGER)")
    sql(target, "CREATE INDEX myidx ON mine (x)")
    before = sql(target, "SELECT name, data_table, config FROM integrations ORDER BY name")

    refusals = {
        "own table": ("add", "x", "--url", url, "--table", "records"),
        "own view": ("add", "x", "--url", url, "--table", "live_records"),
        "another integration's table": ("add", "x", "--url", url, "--table", "weather"),
        "another integration's default name": ("add", "weather.eu", "--url", url),
        "a table of someone else's": ("add", "x", "--url", url, "--table", "mine"),
        "edit to another's table": ("edit", "weather", "--table", "weather_eu", "--timeout", "5"),
        "edit to an own table": ("edit", "weather", "--table", "integrations"),
        "not an SQL name": ("add", "x", "--url", url, "--table", "Bad-Name"),
        "an index of someone else's": ("add", "x", "--url", url, "--table", "myidx"),
        "syncctl's own index, by default": ("add", "integrations-due", "--url", url),
        "edit to an index": ("edit", "weather", "--table", "myidx"),
    }
    clash = {"own table": "records", "own view": "live_records", "another integration's table": "weather",
             "another integration's default name": "weather_eu", "a table of someone else's": "mine",
             "edit to another's table": "weather_eu", "edit to an own table": "integrations",
             "not an SQL name": "Bad-Name", "an index of someone else's": "myidx",
             "syncctl's own index, by default": "integrations_due", "edit to an index": "myidx"}  # fmt: skip
    for what, args in refusals.items():
        result = tcli(*args)
        assert result.returncode == 2, f"{what}: exit 2, got {result.returncode}: {result.stderr}"
        assert one_line_error(result), f"{what}: one line: {result.stderr!r}"
        assert clash[what] in result.stderr, f"{what}: names the clash: {result.stderr!r}"
        assert "--table" in result.stderr, f"{what}: names --table: {result.stderr!r}"

    assert sql(target, "SELECT name, data_table, config FROM integrations ORDER BY name") == before, "nothing changed"
    assert table_exists(target, "weather"), "weather's table is still there"
    assert columns(target, "mine") == {"x": "INTEGER" if backend(target) == "sqlite" else "integer"}, "mine untouched"


@pytest.mark.parametrize("name", ["integrations-due", "sqlite-foo", "c" * 63 + "d"])
def test_the_table_name_a_refusal_suggests_is_one_that_works(target, tcli, source, name):
    url = source.add("/s", json_body([{"id": 1}]))
    assert tcli("add", "c" * 64, "--url", url).returncode == 0  # takes the 63-byte cut of "c" * 63 + "d"
    refused = tcli("add", name, "--url", url)
    assert refused.returncode == 2, refused.stderr
    suggested = re.search(r"--table (\S+)\)$", refused.stderr.strip())
    assert suggested, refused.stderr
    taken = tcli("add", name, "--url", url, "--table", suggested.group(1))
    assert taken.returncode == 0, f"the suggested {suggested.group(1)} must work: {taken.stderr}"
    synced(tcli, name)
    assert table_exists(target, suggested.group(1))


@pytest.mark.parametrize("wanted", ["mine", "records", "oauth_tokens", "sqlite_q"])
def test_every_table_name_refusal_suggests_a_name_that_works(target, tcli, wanted):
    assert tcli("add", "a", "--url", "http://127.0.0.1:9/a", "--table", "mine").returncode == 0
    assert tcli("add", "b", "--url", "http://127.0.0.1:9/b").returncode == 0
    for command in (("edit", "b"), ("add", "c", "--url", "http://127.0.0.1:9/c")):
        refused = tcli(*command, "--table", wanted)
        assert refused.returncode == 2 and one_line_error(refused), refused.stderr
        suggested = re.search(r"--table (\w+)\)\s*$", refused.stderr)
        assert suggested, refused.stderr
        taken = tcli(*command, "--table", suggested.group(1))
        assert taken.returncode == 0, f"{command[0]}: the suggested {suggested.group(1)} must work: {taken.stderr}"
        assert tcli("edit", command[1], "--table", command[1]).returncode == 0  # free it again


def test_records_too_wide_for_a_table_fail_with_the_fix_and_sync_without_one(target, tcli, source):
    wide = [{"id": 1, **{f"f{n}": n for n in range(2100)}}]  # more than SQLite's 2000 columns, PostgreSQL's 1600
    url = source.add("/wide", json_body(wide))
    assert tcli("add", "wide", "--url", url).returncode == 0

    failed = tcli("sync", "wide")

    assert failed.returncode == 1 and one_line_error(failed), failed.stderr
    assert "2101 fields" in failed.stderr and "--table off" in failed.stderr, failed.stderr
    assert "internal error" not in failed.stderr
    assert all_records(target, "wide") == [], "the page failed as a whole"
    assert tcli("edit", "wide", "--table", "off").returncode == 0
    synced(tcli, "wide")
    assert [key for key, *_ in all_records(target, "wide")] == ["1"]
    turned_on = tcli("edit", "wide", "--table", "wide")
    assert turned_on.returncode != 0 and one_line_error(turned_on) and "--table off" in turned_on.stderr
    assert data_table(target, "wide") is None, "nothing changed"


def test_the_widest_table_allowed_can_still_widen_a_column(target, tcli, source):
    from syncctl.dialect import POSTGRES, SQLITE

    fields = (POSTGRES if backend(target) == "postgres" else SQLITE).max_columns - 2  # _key, _synced_at
    page = {"now": [{"id": 1, **{f"f{n}": n for n in range(fields - 1)}}]}
    url = source.add("/widest", dynamic(lambda handler: (200, page["now"])))
    assert tcli("add", "widest", "--url", url).returncode == 0
    if backend(target) == "postgres":  # 1,598 bigints make a row past PostgreSQL's 8 kB page
        refused = tcli("sync", "widest")
        assert refused.returncode == 1 and one_line_error(refused), refused.stderr
        assert "the records do not fit data table widest: row is too big" in refused.stderr and "--table off" in refused.stderr
        assert all_records(target, "widest") == []
        return
    synced(tcli, "widest")
    page["now"] = [{**page["now"][0], "f0": 0.5}]  # INTEGER -> REAL: a rebuild on SQLite

    widened = tcli("sync", "widest")

    assert widened.returncode == 0, widened.stderr
    assert "f0 widened" in history(tcli, "widest")[0]["error_hint"]
    assert tcli("sync", "widest").returncode == 0
    too_wide = [{**page["now"][0], "one_more": 1}]
    page["now"] = too_wide
    refused = tcli("sync", "widest")
    assert refused.returncode == 1 and one_line_error(refused) and f"{fields + 1} fields" in refused.stderr, refused.stderr


def test_a_table_changed_outside_syncctl_fails_with_the_fix_and_dropping_it_rebuilds_it(target, tcli, source):
    page = [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]
    url = source.add("/t", dynamic(lambda handler: (200, page)))
    assert tcli("add", "crm", "--url", url).returncode == 0
    synced(tcli, "crm")
    sql(target, "ALTER TABLE crm DROP COLUMN v")  # a dashboard author tidying up
    page.append({"id": 3, "v": "c"})

    broken = tcli("sync", "crm")

    assert broken.returncode == 1 and one_line_error(broken), broken.stderr
    assert "cannot write data table crm" in broken.stderr and "changed outside syncctl" in broken.stderr
    assert "drop crm (the next sync builds it again from the stored records)" in broken.stderr
    assert "internal error" not in broken.stderr
    assert sorted(live(target, "crm")) == ["1", "2"], "the page failed whole"
    sql(target, "DROP TABLE crm")
    synced(tcli, "crm")
    assert_table_is_live_records(target, "crm", "crm", "v")
    assert sorted(rows(target, "crm")) == ["1", "2", "3"]


def test_a_view_made_with_the_table_name_before_the_first_sync_fails_with_the_fix(target, tcli, source):
    assert tcli("add", "crm", "--url", source.add("/t", json_body([{"id": 1}]))).returncode == 0
    sql(target, "CREATE VIEW crm AS SELECT 1 AS x")

    broken = tcli("sync", "crm")

    assert broken.returncode == 1 and one_line_error(broken), broken.stderr
    assert "data table crm" in broken.stderr and "internal error" not in broken.stderr, broken.stderr
    assert all_records(target, "crm") == []


@pytest.mark.parametrize("theirs", ["CREATE VIEW crm AS SELECT 1 AS x",
                                    "CREATE TABLE crm (_key TEXT, note TEXT)"])  # fmt: skip
def test_a_view_or_table_put_in_the_tables_place_is_never_renamed_or_dropped(target, tcli, source, theirs):
    assert tcli("add", "crm", "--url", source.add("/t", json_body([{"id": 1, "v": "a"}]))).returncode == 0
    synced(tcli, "crm")
    sql(target, "DROP TABLE crm")
    sql(target, theirs)  # a dashboard author's own object under the data table's name

    moved = tcli("edit", "crm", "--table", "crm_data")  # the fix the sync's refusal suggests

    assert moved.returncode == 0, moved.stderr
    assert table_exists(target, "crm"), "theirs is left alone"
    assert sorted(rows(target, "crm_data")) == ["1"], "the records are in the new table"
    removed = tcli("remove", "crm", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert not table_exists(target, "crm_data"), "syncctl's own table is dropped"
    assert table_exists(target, "crm"), "theirs is still there"


# -- in step with live_records -------------------------------------------------------------------


def assert_table_is_live_records(target: str, name: str, table: str, scalar: str) -> None:
    table_rows, records = rows(target, table), live(target, name)
    assert sorted(table_rows) == sorted(records), f"{table}: exactly the keys of live_records"
    for key, record in records.items():
        assert table_rows[key][scalar] == record[scalar], f"{table}[{key}].{scalar} is the record's"


@pytest.mark.parametrize("mode", ["mark", "remove"])
def test_a_deletion_sweep_keeps_the_table_equal_to_live_records(target, tcli, source, mode):
    current = {i: {"id": i, "v": f"r{i}"} for i in range(1, 6)}
    url = source.add("/d", dynamic(lambda handler: (200, list(current.values()))))
    assert tcli("add", "crm", "--url", url, "--deletes", mode).returncode == 0
    synced(tcli, "crm")

    del current[2]
    swept = synced(tcli, "crm")

    assert "1 deleted" in swept.stdout, "the sweep deleted one"
    assert "2" not in rows(target, "crm"), f"--deletes {mode}: the row left the table"
    assert_table_is_live_records(target, "crm", "crm", "v")
    if mode == "mark":
        assert [r[0] for r in all_records(target, "crm") if r[2] is not None] == ["2"], "marked in records"

    current[2] = {"id": 2, "v": "back"}
    synced(tcli, "crm")
    assert rows(target, "crm")["2"]["v"] == "back", "seen again: back in the table"
    assert_table_is_live_records(target, "crm", "crm", "v")


def test_a_sync_failing_on_page_2_leaves_the_table_equal_to_live_records(target, tcli, source):
    state = {"gen": 1, "fail": False}

    def page(handler):  # noqa: ANN001, ANN202
        p = int(handler.query.get("p", "1"))
        if p == 2 and state["fail"]:
            return 500, {"error": "boom"}
        if p > 3:
            return 200, []
        records = [{"id": f"{p}-{k}", "gen": state["gen"], "page": p} for k in range(3)]
        if state["gen"] > 1:
            records.append({"id": f"{p}-new", "gen": state["gen"], "page": p, "added": True})
        return 200, records

    url = source.add("/p", dynamic(page))
    assert tcli("add", "paged", "--url", url, "--paginate", "page:p", "--deletes", "remove").returncode == 0
    synced(tcli, "paged")
    state.update(gen=2, fail=True)

    failed = tcli("sync", "paged")

    assert failed.returncode == 1, "page 2 fails the sync"
    assert_table_is_live_records(target, "paged", "paged", "gen")
    assert rows(target, "paged")["1-new"]["gen"] == 2, "page 1 of the failed sync reached the table"
    assert rows(target, "paged")["2-0"]["gen"] == 1, "page 2 did not"
    assert "added" in columns(target, "paged"), "page 1's new column is there, with its rows"
    state["fail"] = False
    synced(tcli, "paged")
    assert_table_is_live_records(target, "paged", "paged", "gen")


def test_remove_drops_the_table(target, tcli, source):
    url = source.add("/r", json_body([{"id": 1}]))
    assert tcli("add", "gone", "--url", url).returncode == 0
    assert tcli("add", "kept", "--url", url).returncode == 0
    synced(tcli, "gone")
    synced(tcli, "kept")

    assert tcli("remove", "gone", "--yes").returncode == 0

    assert not table_exists(target, "gone"), "its table is dropped"
    assert table_exists(target, "kept"), "another's table stays"
    assert sql(target, "SELECT count(*) AS n FROM data_columns WHERE integration_id NOT IN"
                       " (SELECT id FROM integrations)")[0]["n"] == 0, "no column of it is remembered"  # fmt: skip
    assert tcli("add", "gone", "--url", url).returncode == 0, "the name is free again"


def test_a_nul_character_is_stored_as_each_backend_can(target, tcli, source):
    page = [{"id": "k\u00001", "note": "a\u0000b", "odd\u0000key": 1, "literal": "\\u0000 stays"}]
    assert tcli("add", "nul", "--url", source.add("/n", json_body(page))).returncode == 0

    result = tcli("sync", "nul")

    assert result.returncode == 0 and "internal error" not in result.stderr, result.stderr
    nul = "\u0000" if backend(target) == "sqlite" else "\ufffd"  # PostgreSQL's text cannot hold U+0000
    records = live(target, "nul")
    assert records == {f"k{nul}1": {"id": f"k{nul}1", "note": f"a{nul}b", f"odd{nul}key": 1, "literal": "\\u0000 stays"}}
    [row] = rows(target, "nul").values()
    assert row["note"] == f"a{nul}b" and row["literal"] == "\\u0000 stays", row
    assert sorted(rows(target, "nul")) == sorted(records), "the table is live_records"


def test_records_that_are_not_objects_go_into_a_value_column(target, tcli, source):
    url = source.add("/bare", json_body([10, 20, 30]))
    assert tcli("add", "numbers", "--url", url).returncode == 0

    synced(tcli, "numbers")

    assert columns(target, "numbers") == {
        "_key": TYPES[backend(target)]["text"], "_synced_at": "TEXT" if backend(target) == "sqlite" else "timestamptz",
        "value": TYPES[backend(target)]["integer"],
    }, "one column value"  # fmt: skip
    assert sorted(r["value"] for r in rows(target, "numbers").values()) == [10, 20, 30], "the values"
    assert sorted(rows(target, "numbers")) == sorted(live(target, "numbers")), "keyed as the records are"


# -- migration (SQLite) -------------------------------------------------------------------------------


def test_a_step_6_database_gains_tables_built_from_its_records(cli, db_path, source):
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    for number, script in schema_steps():
        if number <= 6:
            for statement in filter(None, split_sql(script)):
                conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 6")
    url = source.add("/w", json_body([{"id": 1, "temp": 7, "station": {"name": "A"}},
                                      {"id": 2, "temp": 8, "station": {"name": "B"}}]))  # fmt: skip
    then = "2024-01-01T00:00:00.000Z"
    for name in ("weather-eu", "records", "a-b", "a.b"):
        conn.execute("INSERT INTO integrations (name, url, sync_interval, created_at, updated_at)"
                     " VALUES (?, ?, NULL, ?, ?)", (name, url, then, then))  # fmt: skip
    ids = {name: i for i, name in conn.execute("SELECT id, name FROM integrations")}
    insert = "INSERT INTO records (integration_id, key, data, synced_at, deleted_at) VALUES (?, ?, ?, ?, ?)"
    conn.executemany(insert, [
        (ids["weather-eu"], "1", '{"id":1,"temp":5,"station":{"name":"A"}}', then, None),
        (ids["weather-eu"], "2", '{"id":2,"temp":6.5,"station":{"name":"B"}}', then, None),
        (ids["weather-eu"], "3", '{"id":3,"temp":1,"station":{"name":"C"}}', then, then),  # marked deleted
        (ids["records"], "h1", "42", then, None),
        (ids["records"], "h2", "7", then, None),
        (ids["a.b"], "1", '{"id":1}', then, None),
    ])  # fmt: skip
    conn.commit()
    conn.close()

    first = cli("list")

    assert first.returncode == 0, first.stderr
    notes = [line for line in first.stderr.splitlines() if "note:" in line]
    assert len(notes) == 2, f"a note for each renamed table: {first.stderr!r}"
    assert all(line.startswith("syncctl: note: the records of ") for line in notes), notes  # one prefix
    assert "records_2" in first.stderr and "a_b_2" in first.stderr, "the notes name the tables"
    assert "note:" not in cli("list").stderr, "said once"
    tables = {r["name"]: r["data_table"] for r in sql(str(db_path), "SELECT name, data_table FROM integrations")}
    assert tables == {"weather-eu": "weather_eu", "records": "records_2", "a-b": "a_b", "a.b": "a_b_2"}, "names"
    db = str(db_path)
    assert columns(db, "weather_eu") == {"_key": "TEXT", "_synced_at": "TEXT", "id": "INTEGER", "temp": "REAL",
                                         "station__name": "TEXT"}, "typed from every stored record"  # fmt: skip
    assert rows(db, "weather_eu") == {"1": {"id": 1, "temp": 5.0, "station__name": "A"},
                                      "2": {"id": 2, "temp": 6.5, "station__name": "B"}}, "the live records"  # fmt: skip
    assert sql(db, "SELECT _synced_at FROM weather_eu WHERE _key = '1'")[0]["_synced_at"] == then, "when synced"
    assert rows(db, "records_2") == {"h1": {"value": 42}, "h2": {"value": 7}}, "bare values in value"
    assert rows(db, "a_b_2") == {"1": {"id": 1}}, "a.b's rows"
    assert sql(db, "SELECT count(*) AS n FROM records WHERE integration_id = ?", (ids["records"],))[0]["n"] == 2

    assert cli("sync", "weather-eu").returncode == 0
    assert rows(db, "weather_eu")["1"]["temp"] == 7.0, "the next sync writes to the built table"
    assert columns(db, "weather_eu")["temp"] == "REAL", "and keeps its type"


# -- the schema notification (SQLite) -------------------------------------------------------------------


def test_a_schema_change_is_notified_once_and_the_tables_creation_is_not(cli, db_path, source):
    body = {"value": [{"id": 1, "temp": 20}]}
    url = source.add("/w", dynamic(lambda handler: (200, body["value"])))
    hook = source.add("/hook", json_body({}))
    other = source.add("/other", json_body({}))
    assert cli("add", "weather-eu", "--url", url).returncode == 0
    assert cli("notify", "add", hook.replace("http://", "json://"), "--events", "schema").returncode == 0
    assert cli("notify", "add", other.replace("http://", "json://")).returncode == 0  # default events

    def received(path: str = "/hook") -> list[dict]:
        with source.lock:
            return [json.loads(b) for seen, _, b in source.bodies if seen == path]

    assert cli("run-due").returncode == 0  # creates the table
    assert received() == [], "the table's creation is not notified"

    body["value"] = [{"id": 1, "temp": 20.5, "humidity": 80}]
    make_due(str(db_path), "weather-eu")
    assert cli("run-due").returncode == 0
    make_due(str(db_path), "weather-eu")
    assert cli("run-due").returncode == 0  # no change this time
    assert cli("run-due").returncode == 0

    [message] = received()
    assert "weather_eu" in message["title"], f"the title names the table: {message['title']!r}"
    assert "humidity" in message["message"], f"the message names the new column: {message['message']!r}"
    assert "temp widened INTEGER → REAL" in message["message"], "and the widening"
    assert "syncctl schema weather-eu" in message["message"], "and how to see the columns"
    assert received("/other") == [], "a target not subscribed to schema gets nothing"
