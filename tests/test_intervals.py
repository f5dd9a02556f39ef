"""Intervals (spec §4): what `add --interval` and `set-interval` accept, what they refuse,
and that a refusal is one line on stderr with exit 2 and leaves the database unchanged."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from syncctl.errors import UsageError
from syncctl.schedule import MAX_INTERVAL, MIN_INTERVAL, format_interval, parse_interval
from tests.helpers import Result, dump, parse_z, query, run_main, utc_ms

DAY = 86400
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": DAY}

# Every form spec §4 names, with the seconds it means (None: manual only).
ACCEPTED = {
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "6h": 6 * 3600,
    "12h": 12 * 3600,
    "1d": DAY,
    "60s": 60,
    "90s": 90,
    "1m": 60,
    "45m": 2700,
    "48h": 48 * 3600,
    "365d": 365 * DAY,
    "15 minutes": 900,
    "2 hours": 7200,
    "1 day": DAY,
    "hourly": 3600,
    "daily": DAY,
    "weekly": 7 * DAY,
    "manual": None,
    "off": None,
    "none": None,
}

REFUSED = [
    "0",
    "0m",
    "0s",
    "-5m",
    "-1h",
    "1s",
    "30s",
    "59s",
    "0.5m",
    "366d",
    "8761h",
    "525601m",
    "31536001s",
    "",
    " ",
    "5",
    "m",
    "h1",
    "5x",
    "5 m m",
    "1h30m",
    "every hour",
    "manually",
    "hourlyy",
    "soon",
    "nan",
    "infm",
    "1e3s",
    "0x10m",
    "1,5h",
    "1" * 400 + "s",  # parses as float infinity: once a traceback
    "9" * 30 + "d",
]

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")






def assert_refused(result: Result, value: str) -> None:
    """Exit 2, nothing on stdout, one line on stderr naming valid examples, no traceback."""
    assert result.returncode == 2, (value, result)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "interval" in lines[0] or "option" in lines[0].lower()
    if "interval" in lines[0]:
        for example_value in ("5m", "1h", "daily", "manual"):
            assert example_value in lines[0], lines[0]


def next_sync(db_path: Path, name: str) -> str | None:
    return query(db_path, "SELECT next_sync_at FROM integrations WHERE name = ?", (name,))[0]["next_sync_at"]




def assert_due_now(stamp: str, before: datetime) -> None:
    """Due at once: not later than now, and not before the command ran (the schedule may
    start from the whole minute, cron's tick)."""
    assert before - timedelta(minutes=1) < parse_z(stamp) <= utc_ms()


def assert_about(stamp: str, expected: datetime) -> None:
    """At ``expected``, or up to a minute earlier (slots may fall on whole minutes)."""
    assert expected - timedelta(minutes=1) < parse_z(stamp) <= expected




# -- the pure functions ------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), ACCEPTED.items())
def test_parse_interval_accepts_every_documented_form(text, seconds):
    assert parse_interval(text) == seconds
    assert parse_interval(f"  {text.upper()}  ") == seconds  # as typed in a hurry


@pytest.mark.parametrize("text", REFUSED)
def test_parse_interval_refuses_with_examples(text):
    with pytest.raises(UsageError) as info:
        parse_interval(text)
    assert "interval" in info.value.message
    assert "5m" in info.value.hint and "manual" in info.value.hint


@given(st.integers(min_value=1, max_value=10**7), st.sampled_from(sorted(UNIT_SECONDS)))
@example(1, "m")
@example(365, "d")
@example(8760, "h")
@example(59, "s")
@example(366, "d")
def test_any_number_with_a_unit_means_that_many_seconds_within_range(number, unit):
    seconds = number * UNIT_SECONDS[unit]
    if MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        assert parse_interval(f"{number}{unit}") == seconds
    else:
        with pytest.raises(UsageError):
            parse_interval(f"{number}{unit}")


@given(st.integers(min_value=-(10**9), max_value=0), st.sampled_from(["s", "m", "h", "d", ""]))
def test_zero_and_negative_numbers_are_refused(number, unit):
    with pytest.raises(UsageError):
        parse_interval(f"{number}{unit}")


@given(st.integers(min_value=MIN_INTERVAL, max_value=MAX_INTERVAL))
def test_format_interval_round_trips(seconds):
    text = format_interval(seconds)
    assert parse_interval(text) == seconds
    assert re.fullmatch(r"\d+[smhd]", text)


def test_format_interval_picks_the_largest_whole_unit():
    assert [format_interval(s) for s in (None, 60, 90, 900, 3600, 5400, DAY, 7 * DAY)] == [
        "manual", "1m", "90s", "15m", "1h", "90m", "1d", "7d",
    ]  # fmt: skip


@given(st.text(max_size=40))
@example("1" * 500 + "m")
@example("1\x00h")
@example("٣h")
def test_random_text_is_refused_or_means_an_interval_in_range(text):
    try:
        seconds = parse_interval(text)
    except UsageError as exc:
        assert "\n" not in exc.message
        assert "5m" in exc.hint
        return
    if seconds is None:
        assert text.strip().lower() in {"manual", "off", "none"}
    else:
        assert isinstance(seconds, int) and MIN_INTERVAL <= seconds <= MAX_INTERVAL
        assert any(c.isdigit() for c in text) or text.strip().lower() in {"hourly", "daily", "weekly"}


# -- through the CLI ---------------------------------------------------------------------


@pytest.fixture
def one(cli, db_path) -> Path:
    """A database holding integration `one` (hourly)."""
    result = cli("add", "one", "--url", "https://api.example.com/one", "--interval", "1h")
    assert result.returncode == 0, result.stderr
    return db_path


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300), ("15 minutes", 900), ("2 hours", 7200), ("weekly", 7 * DAY), ("365d", 365 * DAY),
     ("60s", 60), ("manual", None)],
)  # fmt: skip
def test_add_stores_the_interval_in_seconds(cli, db_path, text, seconds):
    before = utc_ms()
    result = cli("add", "feed", "--url", "https://api.example.com/feed", "--interval", text)
    assert result.returncode == 0, result.stderr
    row = query(db_path, "SELECT sync_interval, next_sync_at FROM integrations WHERE name = 'feed'")[0]
    assert row["sync_interval"] == seconds
    if seconds is None:
        assert row["next_sync_at"] is None
    else:  # the first sync is due at once
        assert TIMESTAMP.match(row["next_sync_at"])
        assert_due_now(row["next_sync_at"], before)


def test_add_defaults_to_hourly(cli, db_path):
    assert cli("add", "feed", "--url", "https://api.example.com/feed").returncode == 0
    assert query(db_path, "SELECT sync_interval FROM integrations")[0]["sync_interval"] == 3600


def test_set_interval_accepts_every_documented_form(one):
    # In-process for speed: the same main() the console script runs.
    for text, seconds in ACCEPTED.items():
        result = run_main(one, "set-interval", "one", text)
        assert result.returncode == 0, (text, result)
        assert result.stderr == ""
        row = query(one, "SELECT sync_interval, next_sync_at FROM integrations WHERE name = 'one'")[0]
        assert row["sync_interval"] == seconds, text
        assert (row["next_sync_at"] is None) == (seconds is None), text


@pytest.mark.parametrize("text", ["2 hours", "manual", "off", "daily"])
def test_set_interval_as_a_process(cli, one, text):
    result = cli("set-interval", "one", text)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert query(one, "SELECT sync_interval FROM integrations")[0]["sync_interval"] == ACCEPTED[text]
    if ACCEPTED[text] is None:
        assert next_sync(one, "one") is None
        assert "manual" in result.stdout


def test_set_interval_recomputes_next_sync_from_the_last_sync(cli, one):
    last = utc_ms() - timedelta(minutes=10)
    conn = sqlite3.connect(one)
    with conn:
        conn.execute(
            "UPDATE integrations SET last_sync_at = ?, last_status = 'SUCCESS'",
            (last.strftime("%Y-%m-%dT%H:%M:%S.") + f"{last.microsecond // 1000:03d}Z",),
        )
    conn.close()

    assert cli("set-interval", "one", "1h").returncode == 0
    assert_about(next_sync(one, "one"), last + timedelta(hours=1))

    before = utc_ms()
    assert cli("set-interval", "one", "5m").returncode == 0  # last + 5m has passed: due now
    assert_due_now(next_sync(one, "one"), before)

    assert cli("set-interval", "one", "manual").returncode == 0
    assert next_sync(one, "one") is None
    assert query(one, "SELECT sync_interval FROM integrations")[0]["sync_interval"] is None

    assert cli("set-interval", "one", "daily").returncode == 0  # back from manual
    assert_about(next_sync(one, "one"), last + timedelta(days=1))


@pytest.mark.parametrize(
    "text", ["0", "-5m", "59s", "366d", "soon", "", pytest.param("1" * 400 + "s", id="400-digits")]
)
def test_cli_refuses_bad_intervals_and_changes_nothing(cli, one, text):
    before = dump(one)

    for args in (
        ["set-interval", "one", "--", text],
        ["add", "two", "--url", "https://api.example.com/two", f"--interval={text}"],
    ):
        result = cli(*args)
        assert_refused(result, text)
        assert dump(one) == before, args


def test_cli_refuses_every_bad_interval_in_process(one):
    before = dump(one)
    for text in REFUSED:
        assert_refused(run_main(one, "set-interval", "one", "--", text), text)
        assert_refused(
            run_main(one, "add", "two", "--url", "https://api.example.com/two", f"--interval={text}"), text
        )
    assert dump(one) == before


def test_a_negative_interval_typed_without_double_dash_is_a_usage_error(cli, one):
    before = dump(one)
    result = cli("set-interval", "one", "-5m")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert dump(one) == before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=30))
def test_random_text_through_set_interval(one, text):
    """Whatever is typed: exit 0 with a valid stored interval, or exit 2 with one line and
    the database unchanged. Never a traceback."""
    before = dump(one)
    result = run_main(one, "set-interval", "one", "--", text)
    if result.returncode == 0:
        stored = query(one, "SELECT sync_interval FROM integrations")[0]["sync_interval"]
        assert stored == parse_interval(text)
        assert stored is None or MIN_INTERVAL <= stored <= MAX_INTERVAL
        run_main(one, "set-interval", "one", "1h")  # back to the start for the next example
    else:
        assert_refused(result, text)
        assert dump(one) == before
