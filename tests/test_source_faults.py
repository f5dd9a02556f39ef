"""A source's faults (spec §9, §6 Retry-After): JSON nested too deep, an absurd
Retry-After, oversized or too many headers, a redirect without Location, a body whose
Content-Encoding lies. Each ends in one FAILED log that names it with a fitting hint, is
not retried when a retry would get the same, leaves no RUNNING row, and does not stop the
healthy integration synced in the same run-due."""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from email.utils import formatdate

import pytest

from syncctl import fetch
from syncctl.fetch import parse_retry_after
from syncctl.schedule import MAX_INTERVAL
from syncctl.timeutil import parse_ts, utcnow
from tests.helpers import query
from tests.httpsources import (
    HTTPSource,
    json_body,
    long_header,
    lying_encoding,
    many_headers,
    nested_json,
    redirect_without_location,
)

DEEP = 100_000
YEAR_2099 = "Thu, 01 Jan 2099 00:00:00 GMT"
NOT_RETRIED = r"retry gets the same"


@pytest.fixture
def source():
    with HTTPSource() as running:
        yield running


def case(name, behaviour, message, hint, *, parked=False):
    return pytest.param(behaviour, message, hint, parked, id=name)


FAULTS = [
    # behaviour, what the message must say, what the hint must say, parked for the capped wait
    case("deep-array", nested_json(DEEP), r"^JSON from http://127\.0\.0\.1:\d+/bad is nested too deep "
         r"\(100,000 levels\)$", NOT_RETRIED),
    case("deep-object", nested_json(DEEP, b'{"a":', b"}", b"1"), r"nested too deep \(100,000 levels\)", NOT_RETRIED),
    case("retry-after-seconds", json_body({"error": "slow down"}, 429, {"Retry-After": "999999999999"}),
         r"^HTTP 429 .*rate limited, asked to wait 365 days or more", r"--rate-limit", parked=True),
    case("retry-after-2099", json_body({"error": "down"}, 503, {"Retry-After": YEAR_2099}),
         r"^HTTP 503 .*the source failed, asked to wait 365 days or more", r"remote fault", parked=True),
    case("long-header", long_header(), r"^the source at http://127\.0\.0\.1:\d+/bad sent a header line longer "
         r"than 64 KiB$", NOT_RETRIED + r".*fix the source"),
    case("many-headers", many_headers(), r"^the source at http://127\.0\.0\.1:\d+/bad sent more than 100 headers$",
         NOT_RETRIED + r".*fix the source"),
    *(
        case(f"redirect-{status}", redirect_without_location(status),
             rf"^HTTP {status} redirect without a Location header from http://127\.0\.0\.1:\d+/bad$",
             r"check the URL.*syncctl edit bad --url URL")
        for status in (301, 302, 303, 307, 308)
    ),
    *(
        case(f"{encoding}-lie", lying_encoding(encoding),
             rf"^the body from http://127\.0\.0\.1:\d+/bad is labelled Content-Encoding: {encoding} "
             rf"but is not valid {encoding}$", NOT_RETRIED + r".*Content-Encoding")
        for encoding in ("gzip", "deflate")
    ),
    # Raw deflate, which a deflate decoder falls back to, turns these bytes into garbage.
    case("deflate-garbage", lying_encoding("deflate", b'[{"id": 1}]'),
         r"^expected JSON from http://127\.0\.0\.1:\d+/bad, got application/json with Content-Encoding: deflate: ",
         r"really is deflate"),
]


@pytest.mark.parametrize(("behaviour", "message", "hint", "parked"), FAULTS)
def test_a_source_fault_is_named_once_not_retried_and_the_others_still_sync(
    cli, db_path, source, behaviour, message, hint, parked
):
    assert cli("add", "bad", "--url", source.add("/bad", behaviour)).returncode == 0
    assert cli("add", "good", "--url", source.add("/good", json_body([{"id": 1}, {"id": 2}]))).returncode == 0
    before = utcnow()

    run = cli("run-due")

    after = utcnow()
    assert run.returncode == 1
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, run.stderr
    assert len(run.stderr.splitlines()) == 1 and run.stderr.startswith("syncctl: bad: "), run.stderr
    assert "(hint: " in run.stderr
    logs = query(db_path, "SELECT i.name, l.status, l.error_message, l.error_hint FROM sync_logs l"
                          " JOIN integrations i ON i.id = l.integration_id ORDER BY i.name")
    assert [(log["name"], log["status"]) for log in logs] == [("bad", "FAILED"), ("good", "SUCCESS")]
    failed = logs[0]
    assert re.search(message, failed["error_message"]), failed["error_message"]
    assert re.search(hint, failed["error_hint"]), failed["error_hint"]
    assert source.hits["/bad"] == 1  # retrying gets the same response (or the source asked to wait)
    assert query(db_path, "SELECT COUNT(*) AS n FROM records")[0]["n"] == 2
    bad = query(db_path, "SELECT next_sync_at, consecutive_failures FROM integrations WHERE name = 'bad'")[0]
    assert bad["consecutive_failures"] == 1
    next_sync = parse_ts(bad["next_sync_at"])
    assert next_sync <= after + timedelta(seconds=MAX_INTERVAL)  # never parked past the cap (2099)
    if parked:
        assert next_sync >= before + timedelta(seconds=MAX_INTERVAL)


def test_no_running_row_is_left_and_the_next_tick_is_quiet(cli, db_path, source):
    """The Retry-After that overflowed the schedule used to leave its log RUNNING."""
    url = source.add("/bad", json_body({"error": "slow down"}, 429, {"Retry-After": "999999999999"}))
    assert cli("add", "bad", "--url", url).returncode == 0

    assert cli("run-due").returncode == 1

    assert query(db_path, "SELECT status FROM sync_logs") == [{"status": "FAILED"}]
    again = cli("run-due")  # parked for 365 days: nothing due, nothing printed
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


# -- the Retry-After cap ---------------------------------------------------------------------


NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


@pytest.mark.parametrize(
    "value", ["999999999999", "1e300", str(MAX_INTERVAL + 1), YEAR_2099, formatdate(NOW + MAX_INTERVAL + 60, usegmt=True)]
)
def test_retry_after_is_capped_at_the_largest_interval(value):
    assert parse_retry_after(value, now=NOW) == MAX_INTERVAL


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), (str(MAX_INTERVAL), MAX_INTERVAL), (formatdate(NOW + 7200, usegmt=True), 7200.0)],
)
def test_retry_after_under_the_cap_is_kept(value, seconds):
    assert parse_retry_after(value, now=NOW) == pytest.approx(seconds)


# -- safety nets inside the engine -----------------------------------------------------------


def _sync_in_process(db_path, name: str):
    """Run one sync through the engine in this process (for faults that need a patch)."""
    from syncctl.engine import Engine, SyncSettings
    from syncctl.fetch import Cancel, new_session
    from syncctl.store import Store

    store = Store.open(db_path)
    session = new_session()
    try:
        integration_id = query(db_path, "SELECT id FROM integrations WHERE name = ?", (name,))[0]["id"]
        return Engine(store, SyncSettings(), session).sync(integration_id, manual=False, cancel=Cancel())
    finally:
        session.close()
        store.close()


def test_a_record_too_deep_to_encode_again_fails_cleanly(cli, db_path, source, monkeypatch):
    """CPython's parser and encoder stop at the same depth, so a body that parses can be
    encoded from the same place; here the records are encoded with less stack left (as
    another interpreter, or a deeper caller, would), and must still fail by name."""
    limit = sys.getrecursionlimit()
    depth, less = limit * 2 // 5, limit * 7 // 10  # parses with room to spare; cannot be encoded
    assert cli("add", "deep", "--url", source.add("/deep", nested_json(depth))).returncode == 0
    real = fetch.keyed

    def with_less_stack(*args, frames=less, **kwargs):
        return real(*args, **kwargs) if frames == 0 else with_less_stack(*args, frames=frames - 1, **kwargs)

    monkeypatch.setattr(fetch, "keyed", with_less_stack)

    result = _sync_in_process(db_path, "deep")

    assert result.status == "FAILED"
    assert re.fullmatch(r"JSON from http://127\.0\.0\.1:\d+/deep is nested too deep", result.error_message)
    assert query(db_path, "SELECT status FROM sync_logs") == [{"status": "FAILED"}]


def test_a_plan_that_raises_still_finishes_the_log(cli, db_path, source, monkeypatch):
    """Whatever raises while the outcome is recorded, the log the engine claimed ends
    FAILED (never RUNNING) and the schedule moves on by the first retry delay."""
    import syncctl.engine

    def broken(**kwargs):
        raise OverflowError("date value out of range")

    assert cli("add", "fine", "--url", source.add("/fine", json_body([{"id": 1}]))).returncode == 0
    monkeypatch.setattr(syncctl.engine, "plan_after_sync", broken)
    before = utcnow()

    result = _sync_in_process(db_path, "fine")

    assert result.status == "FAILED"
    assert result.error_message.startswith("internal error while finishing the sync: OverflowError")
    row = query(db_path, "SELECT status, error_hint FROM sync_logs")[0]
    assert row["status"] == "FAILED" and "report" in row["error_hint"]
    fine = query(db_path, "SELECT next_sync_at, consecutive_failures FROM integrations")[0]
    assert fine["consecutive_failures"] == 1
    assert parse_ts(fine["next_sync_at"]) >= before + timedelta(seconds=59)
