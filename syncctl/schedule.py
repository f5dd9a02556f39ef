"""Scheduling rules as pure functions: intervals, the anchored schedule, retry delays and
what happens to an integration after a sync. No I/O and no clock of their own: callers
pass ``now`` (and a random source for jitter)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from syncctl.errors import UsageError

MIN_INTERVAL = 60
MAX_INTERVAL = 365 * 86400
RETRY_BASE_SECONDS = 60
RETRY_JITTER = 0.10
INTERVAL_EXAMPLES = "5m, 15m, 1h, 6h, 1d, '15 minutes', '2 hours', hourly, daily, weekly or manual"

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
_WORDS = {"hourly": 3600, "daily": 86400, "weekly": 604800}
_MANUAL = {"manual", "off", "none"}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([a-z]+)")
MAX_AGE_SECONDS = 100 * 365 * 86400


def parse_duration(text: str) -> float | None:
    """Seconds in ``90s``, ``15m``, ``2 hours``, ``1.5h``, ``hourly``; None if unreadable."""
    cleaned = text.strip().lower()
    if cleaned in _WORDS:
        return float(_WORDS[cleaned])
    match = _DURATION.fullmatch(cleaned)
    if not match or match.group(2) not in _UNITS:
        return None
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_age(text: str, option: str) -> float:
    """Seconds in a look-back such as ``--since 24h`` or ``--older-than 90d`` (at most a century)."""
    seconds = parse_duration(text)
    if seconds is None or seconds > MAX_AGE_SECONDS:
        raise UsageError(f"invalid {option} {text!r}", "use a duration such as 30m, 24h, 7d or 90d")
    return seconds


def parse_interval(text: str) -> int | None:
    """Seconds between scheduled syncs, or None for manual only.

    Raises UsageError (exit 2) with examples for anything else, including values under
    one minute (cron's tick) or over 365 days.
    """
    cleaned = text.strip().lower()
    if cleaned in _MANUAL:
        return None
    seconds = parse_duration(cleaned)
    hint = f"use e.g. {INTERVAL_EXAMPLES}"
    if seconds is None:
        raise UsageError(f"invalid interval {text!r}", hint)
    if seconds < MIN_INTERVAL:
        raise UsageError(f"invalid interval {text!r}: the smallest is 1 minute (cron's tick)", hint)
    if seconds > MAX_INTERVAL:  # before int(): a huge number of digits parses as infinity
        raise UsageError(f"invalid interval {text!r}: the largest is 365 days", hint)
    if seconds != int(seconds):
        raise UsageError(f"invalid interval {text!r}: not a whole number of seconds", hint)
    return int(seconds)


def format_interval(seconds: int | None) -> str:
    """The shortest way to write an interval back: 15m, 1h, 1d, 90s, manual."""
    if seconds is None:
        return "manual"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def first_slot(now: datetime) -> datetime:
    """The slot a new schedule starts from: ``now`` down to the whole minute, so it is
    due at once and every later slot falls on one of cron's minute ticks. Anchored on
    the exact second instead, a schedule added just after a minute would run at 14 or 16
    minutes whenever run-due takes a little more or less time to start."""
    return now.replace(second=0, microsecond=0)


def next_due(anchor: datetime, interval: int, after: datetime) -> datetime:
    """The first ``anchor + k·interval`` (k >= 1) later than ``after``.

    This is what keeps the schedule from drifting: a 15-minute integration synced at
    10:15:40 by a 1-minute cron is next due at 10:30, not at 10:30:40; after hours of
    downtime it is due once, at the next slot, not once per missed slot.
    """
    step = timedelta(seconds=interval)
    if after < anchor:
        return anchor + step
    k = (after - anchor) // step + 1
    return anchor + k * step


def retry_delay(failures: int, rng: random.Random) -> float:
    """Seconds before retry number ``failures``: 60·2^(n-1) with ±10 % jitter."""
    base = RETRY_BASE_SECONDS * 2 ** (max(failures, 1) - 1)
    return base * (1 + rng.uniform(-RETRY_JITTER, RETRY_JITTER))


@dataclass(frozen=True)
class Plan:
    """The integration's schedule after one sync attempt."""

    next_sync_at: datetime | None
    slot_at: datetime | None
    consecutive_failures: int
    disable: bool = False


def plan_after_sync(
    *,
    trigger: str,
    succeeded: bool,
    interval: int | None,
    slot_at: datetime | None,
    next_sync_at: datetime | None,
    failures: int,
    max_retries: int,
    started: datetime,
    now: datetime,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> Plan:
    """Where the schedule goes after a sync that started at ``started`` ends at ``now``.

    - manual: the schedule does not move; success clears the failure streak, failure
      does not count towards auto-disable.
    - scheduled success: next slot after the start, anchored on the slot it belonged to.
    - scheduled failure: retry after 60·2^(n-1) s (±10 %), never later than the normal
      next slot, but never earlier than the server's Retry-After; after ``max_retries``
      failed retries, disable.
    """
    if trigger == "manual":
        return Plan(next_sync_at, slot_at, 0 if succeeded else failures)
    if interval is None or slot_at is None:  # made manual-only while it ran
        return Plan(None, None, 0 if succeeded else failures + 1)
    normal = next_due(slot_at, interval, started)
    if succeeded:
        return Plan(normal, normal, 0)
    streak = failures + 1
    if streak > max_retries:
        return Plan(normal, slot_at, streak, disable=True)
    retry_at = min(now + timedelta(seconds=retry_delay(streak, rng or random.Random())), normal)
    if retry_after is not None and retry_after > 0:
        retry_at = max(retry_at, now + timedelta(seconds=retry_after))
    return Plan(retry_at, slot_at, streak)


def after_clock_set_back(
    *, next_sync_at: datetime | None, slot_at: datetime | None, interval: int | None, now: datetime
) -> datetime | None:
    """The slot to pull a schedule back to after the clock was set back, or None to keep it.

    A schedule written while the clock ran ahead (an NTP mis-step, a VM restored from a
    snapshot) can lie up to a year ahead once the clock is corrected. No integration
    waits more than one interval: a ``next_sync_at`` more than one interval ahead of now
    moves to the first slot of its grid after now (due now if that is now). Callers apply
    it only where the clock demonstrably went back (a write stamped in the future), so a
    server's long Retry-After is kept.
    """
    if interval is None or next_sync_at is None:
        return None
    step = timedelta(seconds=interval)
    if next_sync_at - now <= step:
        return None
    anchor = slot_at if slot_at is not None and slot_at > now else next_sync_at
    return anchor - ((anchor - now) // step) * step


def plan_on_resume(slot_at: datetime | None, interval: int | None, now: datetime) -> datetime | None:
    """Resume: the next scheduled slot, or now if that slot has passed."""
    if interval is None:
        return None
    if slot_at is None or slot_at <= now:
        return now
    return slot_at


def plan_on_new_interval(
    interval: int | None, last_sync_at: datetime | None, now: datetime
) -> datetime | None:
    """set-interval: one interval after the last sync, or now if that has passed (to the
    whole minute, like :func:`first_slot`)."""
    if interval is None:
        return None
    if last_sync_at is None:
        return first_slot(now)
    return first_slot(max(last_sync_at + timedelta(seconds=interval), now))


# -- how long one sync may take ---------------------------------------------------------------

SYNC_TIMEOUT = 300.0  # seconds: run-due's, sync's and health's --sync-timeout default
MAX_SYNC_TIMEOUT = 86400.0


def checked_sync_timeout(seconds: float) -> float:
    """``--sync-timeout`` as given, if it is one (UsageError, exit 2, if not)."""
    from syncctl.errors import UsageError

    if not 0 < seconds <= MAX_SYNC_TIMEOUT:
        raise UsageError(f"invalid --sync-timeout {seconds:g}", f"use a number of seconds up to {MAX_SYNC_TIMEOUT:g}")
    return seconds
