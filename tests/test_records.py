"""records.py's pure rules: extraction, keying, cursor comparison and the sweep valve."""

from __future__ import annotations

import pytest

from syncctl.errors import SyncError
from syncctl.records import (
    arrays_of_objects,
    cursor_param,
    decide_sweep,
    hashed_count,
    keyed,
    later,
    max_cursor,
    page_cursor,
    record_key,
    records_at,
)


def test_records_are_found_where_the_spec_says():
    assert records_at([{"id": 1}], None) == ([{"id": 1}], "")
    assert records_at({"data": {"items": [1]}}, "data.items") == ([1], "data.items")
    assert records_at({"results": [2], "data": [1]}, None) == ([1], "data")
    assert records_at({"rows": [{"a": 1}]}, None) == ([{"rows": [{"a": 1}]}], None)
    with pytest.raises(SyncError, match="at 'data' the keys are: x"):
        records_at({"data": {"x": 1}}, "data.items")


def test_arrays_of_objects_are_found_shallowest_first():
    body = {"rows": [{"pk": 1}], "columns": ["pk"], "meta": {"hits": [{"a": 1}, {"a": 2}]}, "empty": []}
    assert arrays_of_objects(body) == [("rows", 1), ("meta.hits", 2)]


def test_keys_and_hashed_records():
    assert record_key({"id": 7}, "id") == "7"
    assert record_key({"a": {"b": True}}, "a.b") == "true"
    assert record_key({"x": 1}, "id").startswith("sha256:")
    records = [{"id": 1}, {"x": 1}, {"id": "sha256:looks-like-a-hash"}]
    assert hashed_count(records, keyed(records, "id"), "id") == 1


@pytest.mark.parametrize(("current", "candidate", "expected"), [
    (None, "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
    ("2024-01-02T00:00:00Z", "2024-01-01T23:00:00-02:00", "2024-01-01T23:00:00-02:00"),  # 01:00Z next day
    ("2024-01-02T00:00:00.500Z", "2024-01-02T00:00:00Z", "2024-01-02T00:00:00.500Z"),
    (9, 10, 10),
    ("9", "10", "10"),  # numbers as numbers, not as text
    (2.5, 2, 2.5),
    ("2024-01-01T00:00:00Z", 5, "2024-01-01T00:00:00Z"),  # not comparable: kept
    (5, None, 5),
    (5, True, 5),
])  # fmt: skip
def test_cursors_compare_timestamps_and_numbers_as_such(current, candidate, expected):
    assert later(current, candidate) == expected


def test_page_and_stored_maxima():
    assert page_cursor([{"u": 3}, {"u": 10}, {"u": None}, "x"], "u") == 10
    assert page_cursor([{"m": {"u": "2"}}, {"m": {"u": "11"}}], "m.u") == "11"
    assert page_cursor([], "u") is None
    assert max_cursor(["2024-01-01", "2023-12-31T23:59:59Z"]) == "2024-01-01"


def test_the_param_sent_takes_the_lookback_off_timestamps_only():
    assert cursor_param("2024-01-01T00:10:00Z", 300) == "2024-01-01T00:05:00Z"
    assert cursor_param("2024-01-01T00:10:00+02:00", 60) == "2024-01-01T00:09:00+02:00"
    assert cursor_param(42, 300) == 42 and cursor_param(7.0) == 7  # a number stays one (a JSON body keeps its type)
    assert cursor_param(None, 300) is None


def test_the_sweep_valve():
    assert decide_sweep(5, 10, 50).allowed
    refused = decide_sweep(6, 10, 50)
    assert not refused.allowed and refused.share == 60
    assert decide_sweep(6, 10, 50, allow_mass_delete=True).allowed
    assert not decide_sweep(1, 1, 50).allowed  # an empty answer is the classic truncated list
    assert decide_sweep(0, 0, 0).allowed
