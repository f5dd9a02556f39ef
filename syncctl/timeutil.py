"""Timestamps: UTC ISO 8601 with milliseconds and a Z, everywhere."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def utcnow() -> datetime:
    """The wall clock, in UTC, to the millisecond. Only the CLI edge calls this."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def format_ts(moment: datetime | None) -> str | None:
    """``2026-11-22T10:15:00.000Z``; None stays None."""
    if moment is None:
        return None
    if moment.tzinfo is not timezone.utc:
        moment = moment.astimezone(timezone.utc)
    # isoformat is several times faster than strftime (history and the tables format many).
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_ts(text: str | datetime | None) -> datetime | None:
    """The inverse of :func:`format_ts` (also accepts any ISO 8601 with an offset, and an
    aware datetime, as PostgreSQL's ``timestamptz`` arrives)."""
    if text is None:
        return None
    if isinstance(text, datetime):
        return text.astimezone(timezone.utc)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def human_duration(seconds: float) -> str:
    """Compact duration for people: 45s, 15m, 2h, 1d 6h."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes}m" if not rest else f"{minutes}m {rest}s"
    if seconds < 86400:
        hours, rest = divmod(seconds, 3600)
        return f"{hours}h" if not rest // 60 else f"{hours}h {rest // 60}m"
    days, rest = divmod(seconds, 86400)
    return f"{days}d" if not rest // 3600 else f"{days}d {rest // 3600}h"


def human_relative(moment: datetime | None, now: datetime) -> str:
    """ "3m ago", "in 12m", "now" or "-"."""
    if moment is None:
        return "-"
    delta = (moment - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    if delta > 0:
        return f"in {human_duration(delta)}"
    return f"{human_duration(-delta)} ago"


__all__ = ["format_ts", "human_duration", "human_relative", "parse_ts", "timedelta", "utcnow"]
