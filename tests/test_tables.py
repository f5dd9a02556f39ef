"""Data tables as pure functions (spec §15, syncctl/tables.py), without a database: how
tables and columns are named, how records are flattened into columns, which type a column
takes from the values seen and how it widens (never narrows), what a page changes and
how that change is described, and how values are stored in a column of each type."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncctl.errors import UsageError
from syncctl.tables import (
    KEY_COLUMN,
    SYNCED_COLUMN,
    TYPES,
    Change,
    Column,
    Layout,
    as_objects,
    column_name,
    column_value,
    convert_column,
    default_table_name,
    describe,
    flatten_columns,
    observed_type,
    parse_table,
    snake_case,
    unique_name,
    widen,
)

SQLITE_NAMES = {
    "integer": "INTEGER", "real": "REAL", "boolean": "INTEGER", "text": "TEXT",
    "timestamp": "TEXT", "json": "TEXT", "null": "TEXT",
}  # fmt: skip
PG_NAMES = {
    "integer": "bigint", "real": "double precision", "boolean": "boolean", "text": "text",
    "timestamp": "timestamptz", "json": "jsonb", "null": "text",
}  # fmt: skip
SQL_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
INT64 = range(-(2**63), 2**63)


def plan_pages(pages: list[list[Any]], *, timestamps: bool = False) -> tuple[Layout, list[list[Change]]]:
    """Plan and apply pages of records one after the other, as syncs do."""
    layout = Layout()
    changes = []
    for n, page in enumerate(pages):
        found = layout.plan(flatten_columns(as_objects(page)), timestamps=timestamps)
        layout.apply(found, f"2026-01-0{n + 1}T00:00:00.000Z")
        changes.append(found)
    return layout, changes


def by_name(layout: Layout) -> dict[str, str]:
    return {c.name: c.type for c in layout.columns.values()}


# -- naming -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "column"),
    [
        ("createdAt", "created_at"),
        ("Temp (C)", "temp_c"),
        ("température", "temperature"),
        ("2fa", "_2fa"),
        ("9", "_9"),
        ("_id", "_id"),
        ("id", "id"),
        ("userID", "user_id"),
        ("HTTPServer", "http_server"),
        ("already_snake", "already_snake"),
        ("Data-Source.Name", "data_source_name"),
        ("a__b", "a_b"),  # `__` only ever joins nested names
        ("spaced  out ", "spaced_out"),
    ],
)
def test_a_field_name_becomes_a_snake_case_column_name(field, column):
    assert snake_case(field) == column
    assert column_name(field) == column
    assert SQL_NAME.fullmatch(column)


def test_a_field_name_with_nothing_usable_still_gets_a_column_name():
    for field in ("", "!!!", "温度", "_"):
        assert SQL_NAME.fullmatch(snake_case(field)), field


def test_nested_names_are_joined_with_a_double_underscore():
    assert column_name(("station", "name")) == "station__name"
    assert column_name(("Station", "geoLocation", "Lat (deg)")) == "station__geo_location__lat_deg"
    # A top-level field spelt with `__` and a nested one do not collide.
    assert column_name("station__name") != column_name(("station", "name"))


def test_column_names_respect_postgresqls_63_byte_limit():
    long = "measurement_" * 10
    assert len(column_name(long)) == 63
    assert len(column_name(("a" * 40, "b" * 40, "c" * 40)).encode()) == 63
    assert len(column_name("é" * 100).encode()) <= 63
    # Two long names that agree on their first 63 bytes still get different columns.
    layout, _ = plan_pages([[{long + "x": 1, long + "y": 2}]])
    names = layout.names
    assert len(set(names)) == 2 and all(len(n.encode()) <= 63 and SQL_NAME.fullmatch(n) for n in names)
    assert names[1] == names[0][:61] + "_2"


def test_unique_name_appends_2_3_and_fits_63_bytes():
    assert unique_name("temp", []) == "temp"
    assert unique_name("temp", ["temp"]) == "temp_2"
    assert unique_name("temp", ["temp", "temp_2"]) == "temp_3"
    wanted = "x" * 63
    assert unique_name(wanted, [wanted]) == "x" * 61 + "_2"
    assert unique_name(wanted, [wanted, "x" * 61 + "_2"]) == "x" * 61 + "_3"


def test_clashing_fields_get_2_and_3_in_the_order_they_were_first_seen():
    layout, (changes,) = plan_pages([[{"Temp (C)": 1}, {"temp_c": 2, "TempC": 3}]])
    assert [(c.column, c.path) for c in changes] == [("temp_c", "Temp (C)"), ("temp_c_2", "temp_c"),
                                                      ("temp_c_3", "TempC")]
    # The other way round, the other field keeps the plain name.
    layout, (changes,) = plan_pages([[{"temp_c": 2}, {"Temp (C)": 1}]])
    assert [(c.column, c.path) for c in changes] == [("temp_c", "temp_c"), ("temp_c_2", "Temp (C)")]


def test_a_later_page_never_renames_a_column_and_its_new_field_takes_the_next_suffix():
    layout, (_, second) = plan_pages([[{"temp_c": 1}], [{"Temp (C)": 2, "temp_c": 3}]])
    assert [(c.column, c.change, c.path) for c in second] == [("temp_c_2", "added", "Temp (C)")]
    assert layout.columns["temp_c"].name == "temp_c"


def test_key_and_synced_at_are_reserved():
    layout, (changes,) = plan_pages([[{"_key": "k", "_synced_at": "then", "key": 1, "synced_at": 2}]])
    assert [c.column for c in changes] == ["_key_2", "_synced_at_2", "key", "synced_at"]
    assert KEY_COLUMN not in layout.names and SYNCED_COLUMN not in layout.names


def test_a_default_table_name_is_the_integration_name_with_dashes_and_dots_as_underscores():
    assert default_table_name("weather") == "weather"
    assert default_table_name("weather-eu") == "weather_eu"
    assert default_table_name("billing.v2") == "billing_v2"
    assert default_table_name("9lives") == "_9lives"
    for name in ("weather-eu", "billing.v2", "9lives", "a.b-c_d"):
        assert parse_table(default_table_name(name)) == default_table_name(name)


@pytest.mark.parametrize("integration", ["a" * 64, "9" + "a" * 63])
def test_a_default_table_name_of_the_longest_integration_name_is_a_valid_table_name(integration):
    # Integration names may be 64 characters (config.validate_name); a table name may not
    # (spec §15: [a-z_][a-z0-9_]{0,62}, PostgreSQL's 63-byte limit).
    name = default_table_name(integration)
    assert SQL_NAME.fullmatch(name), f"{name!r} ({len(name)} characters)"


@pytest.mark.parametrize("text", ["Weather", "weather-eu", "1st", "a b", "", "x" * 64, "tëst"])
def test_parse_table_refuses_what_is_not_a_lowercase_sql_name(text):
    with pytest.raises(UsageError):
        parse_table(text)


@pytest.mark.parametrize("text", ["records", "integrations", "sync_logs", "live_records", "data_columns",
                                  "sqlite_stat", "pg_temp"])
def test_parse_table_refuses_syncctls_own_and_reserved_names(text):
    with pytest.raises(UsageError):
        parse_table(text)


def test_parse_table_accepts_a_name_or_off():
    assert parse_table("weather_eu") == "weather_eu"
    assert parse_table("_" + "x" * 62) == "_" + "x" * 62
    assert parse_table("off") == "off"


# -- flattening -------------------------------------------------------------------------------


def test_nested_objects_are_flattened_up_to_three_levels():
    records = [{"id": 1, "station": {"name": "Oslo", "geo": {"lat": 59.9, "pos": {"x": 1}}}}]
    columns = flatten_columns(records)
    assert columns == {
        "id": [1],
        ("station", "name"): ["Oslo"],
        ("station", "geo", "lat"): [59.9],
        ("station", "geo", "pos"): [{"x": 1}],  # deeper: kept whole
    }
    layout, _ = plan_pages([records])
    assert by_name(layout) == {"id": "integer", "station__name": "text", "station__geo__lat": "real",
                               "station__geo__pos": "json"}


def test_arrays_are_kept_whole_at_any_level():
    records = [{"tags": ["a", "b"], "s": {"readings": [1, 2], "t": {"objs": [{"k": 1}]}}}]
    assert flatten_columns(records) == {
        "tags": [["a", "b"]], ("s", "readings"): [[1, 2]], ("s", "t", "objs"): [[{"k": 1}]],
    }
    layout, _ = plan_pages([records])
    assert set(by_name(layout).values()) == {"json"}


def test_a_record_lacking_a_field_gets_null_there_and_fields_keep_the_order_first_seen():
    records = [{"b": 1}, {"a": 2, "s": {"x": 1}, "b": 3}, {"s": {"y": 2}}]
    assert flatten_columns(records) == {
        "b": [1, 3, None], "a": [None, 2, None], ("s", "x"): [None, 1, None], ("s", "y"): [None, None, 2],
    }


def test_a_field_that_is_sometimes_an_object_and_sometimes_a_scalar_keeps_both():
    columns = flatten_columns([{"a": {"b": 1}}, {"a": 5}, {"a": None}])
    assert columns == {"a": [None, 5, None], ("a", "b"): [1, None, None]}
    # Only objects: no column for the object itself.
    assert flatten_columns([{"a": {"b": 1}}, {"a": None}]) == {("a", "b"): [1, None]}
    # At the third level the object cannot be flattened: one column of mixed values, as text.
    deep = flatten_columns([{"a": {"b": {"c": {"d": 1}}}}, {"a": {"b": {"c": 7}}}])
    assert deep == {("a", "b", "c"): [{"d": 1}, 7]}
    assert observed_type(deep[("a", "b", "c")], timestamps=False) == "text"
    assert convert_column(deep[("a", "b", "c")], "text", native_booleans=False) == ['{"d":1}', "7"]


def test_records_that_are_not_objects_go_into_a_value_column():
    assert as_objects([1, "x", [1, 2], None]) == [{"value": 1}, {"value": "x"}, {"value": [1, 2]}, {"value": None}]
    objects = [{"id": 1}]
    assert as_objects(objects) is objects
    assert flatten_columns(as_objects([3, 4.5])) == {"value": [3, 4.5]}
    layout, _ = plan_pages([[3, 4.5]])
    assert by_name(layout) == {"value": "real"}
    layout, _ = plan_pages([["x"], [[1]]])
    assert by_name(layout) == {"value": "text"}


# -- types ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([None, None], None),
        ([], None),
        ([1, None, 2], "integer"),
        ([1, 2.5], "real"),
        ([2.0], "real"),
        ([True, None, False], "boolean"),
        (["a", None], "text"),
        ([{"a": 1}, [1]], "json"),
        ([True, 1], "text"),  # booleans and numbers: TEXT (spec: boolean → TEXT)
        (["1", 1], "text"),
        ([[1], "x"], "text"),
    ],
)
def test_the_type_a_batch_asks_for(values, expected):
    assert observed_type(values, timestamps=False) == expected
    assert observed_type(values, timestamps=True) == expected


@pytest.mark.parametrize("stamp", [
    "2026-11-22T10:15:00.000Z", "2026-11-22T10:15:00Z", "2026-11-22T10:15:00+01:00", "2026-11-22T10:15Z",
    "2026-11-22 10:15:00-0530", "2026-11-22T10:15:00.123456789+00:00",
])  # fmt: skip
def test_date_times_with_an_offset_are_timestamps_where_the_backend_has_them(stamp):
    assert observed_type([stamp, None, stamp], timestamps=True) == "timestamp"
    assert observed_type([stamp], timestamps=False) == "text"


@pytest.mark.parametrize("text", [
    "2026-11-22T10:15:00", "2026-11-22T10:15:00.000", "2026-11-22", "10:15:00Z", "yesterday",
    "2026-11-22T10:15:00Z trailing",
])  # fmt: skip
def test_date_times_without_an_offset_and_other_strings_are_text(text):
    assert observed_type([text], timestamps=True) == "text"
    # One string that is not a date-time with an offset makes the whole batch text.
    assert observed_type(["2026-11-22T10:15:00Z", text], timestamps=True) == "text"


@pytest.mark.parametrize("impossible", ["2026-02-30T10:00:00Z", "2026-13-01T10:00:00Z", "2026-11-22T25:61:00Z"])
def test_a_string_that_only_looks_like_a_date_time_is_not_a_timestamp(impossible):
    # PostgreSQL refuses such a value in a timestamptz column ("date/time field value out
    # of range"): the column must be text, or the sync fails with an internal error.
    assert observed_type([impossible], timestamps=True) == "text"


def test_an_integer_too_big_for_a_64_bit_column_does_not_make_an_integer_column():
    # SQLite raises OverflowError for such a Python int, PostgreSQL refuses it for bigint.
    for big in (2**63, -(2**63) - 1, 18446744073709551615):
        found = observed_type([1, big], timestamps=False)
        assert found != "integer", big
        stored = column_value(big, found)
        assert not isinstance(stored, int) or stored in INT64


def test_widening_order_integer_real_text():
    assert widen("null", "integer") == "integer"
    assert widen("integer", "real") == "real"
    assert widen("real", "integer") == "real"
    assert widen("real", "text") == "text"
    assert widen("integer", None) == "integer"
    assert widen("integer", "null") == "integer"
    for other in ("boolean", "timestamp", "json"):
        assert widen("integer", other) == "text"
        assert widen(other, "text") == "text"
        assert widen(other, other) == other
    assert widen("boolean", "timestamp") == "text"
    assert widen("json", "real") == "text"
    assert widen("text", "integer") == "text"


def at_least(wider: str, narrower: str) -> bool:
    """Whether a column of type ``wider`` holds every value one of type ``narrower`` holds."""
    return wider == narrower or narrower == "null" or wider == "text" or (wider, narrower) == ("real", "integer")


def test_widen_is_commutative_associative_and_never_narrows():
    for a in TYPES:
        assert widen(a, None) == a
        for b in TYPES:
            assert widen(a, b) == widen(b, a), (a, b)
            assert at_least(widen(a, b), a) and at_least(widen(a, b), b), (a, b)
            for c in TYPES:
                assert widen(widen(a, b), c) == widen(a, widen(b, c)), (a, b, c)


STAMPS = st.sampled_from(["2026-11-22T10:15:00Z", "2026-11-22T10:15:00.5+02:00", "2026-11-22T10:15:00"])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5), STAMPS,
)  # fmt: skip
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|z|[+-]\d{2}(:?\d{2})?)")


def accepts(logical: str, value: Any) -> bool:
    """Whether a column of type ``logical`` holds ``value`` as what it is."""
    if value is None:
        return True
    kind = type(value)
    return {
        "null": False,
        "integer": kind is int,
        "real": kind in (int, float),
        "boolean": kind is bool,
        "timestamp": kind is str and bool(TIMESTAMP.fullmatch(value)),
        "json": kind in (dict, list),
        "text": True,
    }[logical]


def storable(stored: Any, logical: str, value: Any, native: bool) -> bool:
    """Whether ``stored`` (column_value's answer) is what a column of this type holds."""
    if value is None:
        return stored is None
    if logical in ("text", "json", "timestamp"):
        if not isinstance(stored, str):
            return False
        return stored == value if (logical != "json" and type(value) is str) else json.loads(stored) == value
    if logical == "boolean":
        return stored is value if native else (type(stored) is int and stored == int(value))
    if logical == "integer":
        return type(stored) is int and stored in INT64
    return type(stored) in (int, float) and stored == value  # real


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(pages=st.lists(st.lists(VALUES, max_size=6), min_size=1, max_size=5), timestamps=st.booleans(),
       native=st.booleans())
def test_the_final_type_of_a_column_holds_every_value_it_was_ever_shown(pages, timestamps, native):
    current = "null"
    for page in pages:
        wider = widen(current, observed_type(page, timestamps=timestamps))
        assert at_least(wider, current)  # never narrower than before
        current = wider
    seen = [v for page in pages for v in page]
    assert all(accepts(current, v) for v in seen), (current, seen)
    # However the values were split into pages, the column ends with the same type.
    whole = observed_type(seen, timestamps=timestamps) or "null"
    assert current == whole
    for value in seen:
        assert storable(column_value(value, current, native_booleans=native), current, value, native), value
    converted = convert_column(seen, current, native_booleans=native)
    assert converted == [column_value(v, current, native_booleans=native) for v in seen]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(pages=st.lists(st.lists(VALUES, max_size=5), min_size=1, max_size=4), timestamps=st.booleans())
def test_a_table_planned_page_by_page_holds_every_record(pages, timestamps):
    layout = Layout()
    names_so_far: dict[Any, str] = {}
    for n, page in enumerate(pages):
        batch = flatten_columns(as_objects(page))
        before = dict(layout.columns)
        changes = layout.plan(batch, timestamps=timestamps)
        layout.apply(changes, f"t{n}")
        for change in changes:
            old = before.get(change.path)
            if change.change == "added":
                assert old is None
            else:
                assert old is not None and change.before == old.type and at_least(change.type, old.type)
                assert change.change == ("typed" if old.type == "null" else "widened")
        for path, column in layout.columns.items():
            assert names_so_far.setdefault(path, column.name) == column.name  # never renamed
        for path, values in batch.items():
            assert all(accepts(layout.columns[path].type, v) for v in values), (path, values)
    names = layout.names
    assert len(set(names)) == len(names)
    assert KEY_COLUMN not in names and SYNCED_COLUMN not in names
    assert all(SQL_NAME.fullmatch(name) for name in names), names


# -- what a page changes, and how that is said -----------------------------------------------


def test_plan_reports_added_widened_and_typed_columns():
    layout, (created, later) = plan_pages([
        [{"city": "Oslo", "temp_c": 11, "note": None}],
        [{"city": "Lima", "temp_c": 18.5, "humidity": 80, "note": "windy"}],
    ])  # fmt: skip
    assert created == [
        Change("city", "added", "text", None, "city"),
        Change("temp_c", "added", "integer", None, "temp_c"),
        Change("note", "added", "null", None, "note"),
    ]
    assert later == [
        Change("temp_c", "widened", "real", "integer", "temp_c"),
        Change("humidity", "added", "integer", None, "humidity"),
        Change("note", "typed", "text", "null", "note"),
    ]
    assert by_name(layout) == {"city": "text", "temp_c": "real", "note": "text", "humidity": "integer"}
    # Widening keeps when a column was added; a new column gets the page's time.
    assert layout.columns["temp_c"].added_at == "2026-01-01T00:00:00.000Z"
    assert layout.columns["humidity"].added_at == "2026-01-02T00:00:00.000Z"


def test_plan_reports_nothing_for_values_that_fit_nulls_or_missing_fields():
    layout, _ = plan_pages([[{"temp_c": 1.5, "city": "Oslo", "ok": True}]])
    assert layout.plan(flatten_columns([{"temp_c": 2}, {"temp_c": None, "ok": None}]), timestamps=False) == []
    assert layout.plan({}, timestamps=False) == []


def test_plan_never_narrows_a_column():
    layout, (_, second, third) = plan_pages([[{"v": "text"}], [{"v": 1}], [{"v": True}]])
    assert second == [] and third == []
    assert by_name(layout) == {"v": "text"}
    layout, (_, second) = plan_pages([[{"at": "2026-11-22T10:15:00"}], [{"at": "2026-11-22T10:15:00Z"}]],
                                     timestamps=True)
    assert second == [] and by_name(layout) == {"at": "text"}
    layout, (_, second) = plan_pages([[{"at": "2026-11-22T10:15:00Z"}], [{"at": "soon"}]], timestamps=True)
    assert second == [Change("at", "widened", "text", "timestamp", "at")]


def test_plan_on_a_layout_read_back_from_the_database():
    layout = Layout({
        "temp_c": Column("temp_c", "integer", "temp_c", "2026-01-01T00:00:00.000Z"),
        ("station", "name"): Column("station__name", "text", ("station", "name"), "2026-01-01T00:00:00.000Z"),
    })  # fmt: skip
    changes = layout.plan(flatten_columns([{"temp_c": 2.5, "station": {"name": "X", "id": 7}}]), timestamps=False)
    assert changes == [
        Change("temp_c", "widened", "real", "integer", "temp_c"),
        Change("station__id", "added", "integer", None, ("station", "id")),
    ]
    assert Column("station__id", "integer", ("station", "id")).dotted == "station.id"


def test_describe_says_what_changed_in_the_backends_type_names():
    changes = [
        Change("humidity", "added", "integer", None, "humidity"),
        Change("temp_c", "widened", "real", "integer", "temp_c"),
    ]
    assert describe(changes, SQLITE_NAMES.__getitem__) == "new columns: humidity INTEGER; temp_c widened INTEGER → REAL"
    assert describe(changes, PG_NAMES.__getitem__) == (
        "new columns: humidity bigint; temp_c widened bigint → double precision"
    )
    more = [
        Change("humidity", "added", "integer", None, "humidity"),
        Change("wind", "added", "real", None, "wind"),
        Change("ok", "widened", "text", "boolean", "ok"),
        Change("note", "typed", "text", "null", "note"),
    ]
    assert describe(more, SQLITE_NAMES.__getitem__) == (
        "new columns: humidity INTEGER, wind REAL; ok widened INTEGER → TEXT; note typed TEXT"
    )
    assert describe([], SQLITE_NAMES.__getitem__) == ""
    assert describe(changes[1:], PG_NAMES.__getitem__) == "temp_c widened bigint → double precision"


def test_a_change_as_history_json_lists_it():
    widened = Change("temp_c", "widened", "real", "integer", "temp_c")
    assert widened.to_json(PG_NAMES.__getitem__) == {
        "column": "temp_c", "change": "widened", "type": "double precision", "from": "bigint",
    }  # fmt: skip
    added = Change("humidity", "added", "integer", None, "humidity")
    assert added.to_json(SQLITE_NAMES.__getitem__) == {
        "column": "humidity", "change": "added", "type": "INTEGER", "from": None,
    }  # fmt: skip


# -- values as columns hold them --------------------------------------------------------------


def test_booleans_are_1_and_0_unless_the_backend_has_booleans():
    assert column_value(True, "boolean") == 1 and type(column_value(True, "boolean")) is int
    assert column_value(False, "boolean") == 0
    assert column_value(True, "boolean", native_booleans=True) is True
    assert convert_column([True, None, False], "boolean", native_booleans=False) == [1, None, 0]
    values = [True, None, False]
    assert convert_column(values, "boolean", native_booleans=True) is values


def test_arrays_and_objects_are_stored_as_json_text():
    assert column_value([1, "é", {"a": None}], "json") == '[1,"é",{"a":null}]'
    assert column_value({"x": 1.5}, "json") == '{"x":1.5}'
    assert column_value(None, "json") is None
    assert convert_column([[1], None, {"a": 1}], "json", native_booleans=False) == ["[1]", None, '{"a":1}']


def test_a_value_of_another_type_in_a_text_column_is_its_json_text():
    assert convert_column(["x", 5, 2.5, True, None, [1], {"a": "b"}], "text", native_booleans=False) == [
        "x", "5", "2.5", "true", None, "[1]", '{"a":"b"}',
    ]  # fmt: skip
    assert column_value("plain", "text") == "plain"  # a string stays itself, not "\"plain\""
    assert column_value(False, "text", native_booleans=True) == "false"


def test_a_column_that_needs_no_change_is_passed_on_as_it_is():
    for values, logical in (([1, None, 2], "integer"), ([1, 2.5], "real"), (["a", None], "text"),
                            (["2026-11-22T10:15:00Z"], "timestamp")):
        assert convert_column(values, logical, native_booleans=False) is values
