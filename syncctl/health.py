"""Freshness rules (spec section 10) as pure functions of the stored state and the clock:
what counts as no tick, a stuck run-due, a stale, disabled, failing or long-paused
integration. ``syncctl health``, the notifications and the metrics all read them; no I/O
and no clock of their own (callers pass ``now``).

Staleness itself is defined once, in the store (``STALE_AT_SQL``, read here through
``Integration.is_stale``), because ``list --json`` computes it in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from syncctl import errors, runlock
from syncctl.models import Integration
from syncctl.runlock import Holder
from syncctl.schedule import SYNC_TIMEOUT
from syncctl.timeutil import human_duration, human_relative

NO_TICK_AFTER = timedelta(minutes=3)
PAUSED_WARN_AFTER = timedelta(days=7)


class Kind(str, Enum):
    """A problem's kind, as ``health --json`` writes it."""

    NO_TICK = "no_tick"
    STUCK_RUN = "stuck_run"
    STALE = "stale"
    DISABLED = "disabled"
    FAILING = "failing"
    PAUSED = "paused"


class CheckStatus(str, Enum):
    """The check's outcome; its exit code is the Nagios plugin convention."""

    OK = "OK"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
    UNKNOWN = "UNKNOWN"

    @property
    def exit_code(self) -> int:
        return {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}[self.value]


_CRITICAL = {Kind.NO_TICK, Kind.STUCK_RUN, Kind.STALE, Kind.DISABLED}


@dataclass(frozen=True)
class Problem:
    kind: Kind
    integration: str | None  # None for no_tick and stuck_run
    message: str
    hint: str
    since: datetime | None

    @property
    def status(self) -> CheckStatus:
        return CheckStatus.CRITICAL if self.kind in _CRITICAL else CheckStatus.WARNING


@dataclass
class Report:
    status: CheckStatus
    checked_at: datetime
    last_tick_at: datetime | None
    problems: list[Problem] = field(default_factory=list)
    integrations: int = 0

    def count(self, kind: Kind) -> int:
        return sum(p.kind is kind for p in self.problems)


def no_tick_problem(
    now: datetime, last_tick_at: datetime | None, integrations: list[Integration]
) -> Problem | None:
    """No run-due tick for 3 minutes while any integration is scheduled (with no tick
    ever, counted from the oldest scheduled integration's creation)."""
    scheduled = [i for i in integrations if i.state == "active"]
    if not scheduled:
        return None
    basis = last_tick_at or min(i.created_at for i in scheduled)
    if now - basis <= NO_TICK_AFTER:
        return None
    hint = (
        "check that cron runs `syncctl run-due` every minute with this database "
        "(crontab -l: the --db or SYNCCTL_DB path; grep CRON /var/log/syslog)"
    )
    if last_tick_at is None:
        message = (
            f"run-due has never run on this database ({len(scheduled)} scheduled, "
            f"the oldest added {human_relative(basis, now)})"
        )
    else:
        message = f"no run-due tick for {human_duration((now - basis).total_seconds())}"
    return Problem(Kind.NO_TICK, None, message, hint, basis)


def stuck_problem(now: datetime, holder: Holder | None, sync_timeout: float) -> Problem | None:
    """A run-due that holds the lock far past any possible sync (the rule is
    ``runlock.too_long``; the holder's own --sync-timeout wins when its lock file says)."""
    if holder is None or not holder.stuck(now, sync_timeout):
        return None
    held = human_duration(holder.held_for(now) or 0.0)
    limit = human_duration(runlock.limit(holder.sync_timeout or sync_timeout))
    who = f"pid {holder.pid}" if holder.pid else "another process"
    return Problem(
        Kind.STUCK_RUN,
        None,
        f"run-due ({who}) has held the lock for {held}, longer than any sync can take "
        f"(2 × --sync-timeout + 5m = {limit})",
        runlock.stuck_hint(holder.pid),
        holder.started_at,
    )


def resume_hint(name: str, sync_hint: str | None) -> str:
    """What to do about an integration its failures disabled: what its last sync's hint
    says to fix (without the retry it promised: none will happen now), then how to turn
    it back on. Stored when it is disabled (store.HINT_SQL shows it for that state)."""
    then = f"then run: syncctl resume {name}"
    fix = errors.without_retry_promise(sync_hint) if sync_hint else None
    return f"{fix}; {then}" if fix else f"fix the cause, {then}"


def staleness(integration: Integration, now: datetime) -> tuple[str, str]:
    """How freshness is worded everywhere (list, show, health, notifications): since when
    (``last success 3h ago``) and the limit (``45m``). Only for an integration that can go
    stale (``stale_at`` set)."""
    basis = integration.last_success_at or integration.created_at
    limit = human_duration((integration.stale_at - basis).total_seconds())  # type: ignore[operator]
    since = (
        f"last success {human_relative(integration.last_success_at, now)}"
        if integration.last_success_at
        else f"no successful sync since it was added {human_relative(integration.created_at, now)}"
    )
    return since, limit


def integration_problem(integration: Integration, now: datetime) -> Problem | None:
    """The one problem an integration has now, most urgent first: disabled, paused for
    more than 7 days, stale, failing. A pause is the admin's decision: a paused
    integration is never reported stale here (``list`` still shows it stale)."""
    i = integration
    if i.state == "disabled":
        hint = i.hint or resume_hint(i.name, i.last_hint)
        attempts = f"{i.consecutive_failures} failed attempt" + ("" if i.consecutive_failures == 1 else "s")
        return Problem(
            Kind.DISABLED, i.name, f"disabled after {attempts}: {i.last_error or 'no error recorded'}",
            hint, i.disabled_at,
        )
    if i.state == "paused":
        if i.disabled_at is None or now - i.disabled_at <= PAUSED_WARN_AFTER:
            return None
        return Problem(
            Kind.PAUSED, i.name,
            f"paused for {human_duration((now - i.disabled_at).total_seconds())}: its data is not kept fresh",
            f"resume it (syncctl resume {i.name}) or remove it (syncctl remove {i.name})",
            i.disabled_at,
        )
    if i.is_stale(now):
        since, limit = staleness(i, now)
        if i.consecutive_failures and i.last_error:
            hint = f"it is failing: {i.last_error}" + (f" ({i.last_hint})" if i.last_hint else "")
        elif i.state == "manual":
            hint = f"sync it: syncctl sync {i.name}, or raise --max-staleness: syncctl edit {i.name} --max-staleness 2d"
        else:
            hint = (
                f"see its syncs: syncctl history {i.name}; if it syncs less often on purpose, "
                f"raise --max-staleness: syncctl edit {i.name} --max-staleness 1d"
            )
        return Problem(Kind.STALE, i.name, f"stale: {since} (max staleness {limit})", hint, i.stale_at)
    if i.state == "active" and i.consecutive_failures > 0:
        attempts = f"{i.consecutive_failures} failed attempt" + ("" if i.consecutive_failures == 1 else "s")
        return Problem(
            Kind.FAILING, i.name, f"failing ({attempts}): {i.last_error or 'no error recorded'}",
            i.last_hint or f"see: syncctl history {i.name}", i.failing_since,
        )
    return None


def check(
    now: datetime,
    integrations: list[Integration],
    last_tick_at: datetime | None,
    holder: Holder | None,
    sync_timeout: float = SYNC_TIMEOUT,
) -> Report:
    """The health check: every problem, run-due's first, then integrations by name."""
    problems = [
        p
        for p in (no_tick_problem(now, last_tick_at, integrations), stuck_problem(now, holder, sync_timeout))
        if p is not None
    ]
    problems += [p for p in (integration_problem(i, now) for i in integrations) if p is not None]
    status = CheckStatus.OK
    if problems:
        status = CheckStatus.CRITICAL if any(p.status is CheckStatus.CRITICAL for p in problems) else CheckStatus.WARNING
    return Report(status, now, last_tick_at, problems, len(integrations))
