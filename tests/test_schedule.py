"""The scheduling rules of spec §6 as pure functions: an injected clock, a seeded random
source, simulated cron ticks. No database, no processes."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncctl.schedule import first_slot, next_due, plan_after_sync, plan_on_resume, retry_delay

BASE = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
SECOND = timedelta(seconds=1)


def at(minutes: float = 0, seconds: float = 0) -> datetime:
    return BASE + timedelta(minutes=minutes, seconds=seconds)


@dataclass
class Sim:
    """One integration as run-due sees it, driven by simulated one-minute cron ticks."""

    interval: int | None
    added_at: datetime = BASE
    max_retries: int = 3
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    next_sync_at: datetime | None = None
    slot_at: datetime | None = None
    failures: int = 0
    enabled: bool = True
    syncs: list[tuple[datetime, str, int]] = field(default_factory=list)  # (start, trigger, attempt)

    def __post_init__(self) -> None:
        # What `add` stores: the first slot, due at once.
        if self.interval is not None:
            self.next_sync_at = self.slot_at = first_slot(self.added_at)

    def due(self, now: datetime) -> bool:
        return (
            self.enabled
            and self.interval is not None
            and self.next_sync_at is not None
            and self.next_sync_at <= now
        )

    def sync(
        self,
        started: datetime,
        *,
        ok: bool = True,
        manual: bool = False,
        duration: float = 1.0,
        retry_after: float | None = None,
    ) -> None:
        trigger = "manual" if manual else "retry" if self.failures else "schedule"
        self.syncs.append((started, trigger, self.failures + 1))
        plan = plan_after_sync(
            trigger=trigger,
            succeeded=ok,
            interval=self.interval,
            slot_at=self.slot_at,
            next_sync_at=self.next_sync_at,
            failures=self.failures,
            max_retries=self.max_retries,
            started=started,
            now=started + timedelta(seconds=duration),
            retry_after=retry_after,
            rng=self.rng,
        )
        self.next_sync_at, self.slot_at, self.failures = (
            plan.next_sync_at,
            plan.slot_at,
            plan.consecutive_failures,
        )
        if plan.disable:
            self.enabled = False

    def tick(self, now: datetime, **kwargs) -> bool:  # noqa: ANN003
        if now >= self.added_at and self.due(now):
            self.sync(now, **kwargs)
            return True
        return False


def run_ticks(
    sim: Sim,
    minutes: range,
    offset: Callable[[int], float] = lambda m: 0.3,
    duration: Callable[[int], float] = lambda m: 1.0,
    ok: Callable[[int], bool] = lambda m: True,
) -> list[int]:
    """Run cron's ticks; return the minutes at which a sync started. ``offset`` is how long
    after the minute run-due reads the clock (cron's wake-up plus Python's start-up)."""
    started = []
    for m in minutes:
        if sim.tick(at(m, offset(m)), ok=ok(m), duration=duration(m)):
            started.append(m)
    return started


def gaps(minutes: list[int]) -> set[int]:
    return {b - a for a, b in zip(minutes, minutes[1:], strict=False)}


# -- the anchored schedule -----------------------------------------------------------------------


def test_next_due_is_the_first_slot_after_the_start():
    anchor = at(0)
    assert next_due(anchor, 900, at(0, 40)) == at(15)
    assert next_due(anchor, 900, at(15)) == at(30)  # strictly later than the start
    assert next_due(anchor, 900, at(15, 40)) == at(30)
    assert next_due(anchor, 900, at(-5)) == at(15)


def test_first_slot_is_due_at_once_and_on_a_whole_minute():
    added = at(7, 37.123)
    slot = first_slot(added)
    assert slot <= added
    assert slot == at(7)


@settings(max_examples=60, deadline=None)
@given(
    added=st.floats(min_value=0, max_value=3600, allow_nan=False),
    interval_minutes=st.sampled_from([5, 15, 30, 60]),
    jitter_seed=st.integers(0, 2**32),
    max_start_up=st.floats(min_value=0.05, max_value=5.0),
)
def test_a_scheduled_integration_under_a_one_minute_cron_never_drifts(
    added, interval_minutes, jitter_seed, max_start_up
):
    """Every interval exactly, not interval + 1 minute, whatever second it was added at
    and however long each run-due takes to start (the jitter differs every tick)."""
    jitter = random.Random(jitter_seed)
    sim = Sim(interval=interval_minutes * 60, added_at=at(seconds=added))
    first = int(added // 60)
    started = run_ticks(
        sim,
        range(first, first + 1 + 12 * interval_minutes),
        offset=lambda m: jitter.uniform(0, max_start_up),
        duration=lambda m: jitter.uniform(0.1, 50),
    )
    assert len(started) >= 12
    # The first sync comes at the first tick after `add`; from then on, the slots.
    assert started[1] - started[0] <= interval_minutes
    assert gaps(started[1:]) == {interval_minutes}


def test_fifteen_minutes_means_fifteen_not_sixteen_when_added_just_after_the_minute():
    # Added at 10:00:00.5; run-due reads the clock 0.2-0.9 s after each minute.
    jitter = random.Random(1)
    sim = Sim(interval=900, added_at=at(seconds=0.5))
    started = run_ticks(sim, range(1, 240), offset=lambda m: jitter.uniform(0.2, 0.9))
    assert started[:4] == [1, 15, 30, 45]
    assert gaps(started[1:]) == {15}


def test_after_downtime_it_syncs_once_then_returns_to_its_slots():
    sim = Sim(interval=900)
    before = run_ticks(sim, range(0, 31))
    assert before == [0, 15, 30]
    # The machine is off from 10:31 to 13:06: no ticks. Then cron ticks again.
    after = run_ticks(sim, range(187, 240))
    assert after[0] == 187  # once, at the first tick back…
    assert after[1:] == [195, 210, 225]  # …then on the original 15-minute grid
    assert sum(1 for m in after if m < 195) == 1


@given(idle_hours=st.integers(1, 24 * 400))
def test_a_long_downtime_is_one_sync_whatever_its_length(idle_hours):
    sim = Sim(interval=3600)
    sim.tick(at(0, 1))
    back = at(idle_hours * 60 + 7, 2)
    assert sim.tick(back)
    assert not sim.tick(back + timedelta(minutes=1))
    assert sim.next_sync_at == at((idle_hours + 1) * 60)


# -- retries -------------------------------------------------------------------------------------


@given(n=st.integers(1, 12), seed=st.integers(0, 2**32))
def test_retry_delay_doubles_from_sixty_seconds_with_ten_percent_jitter(n, seed):
    delay = retry_delay(n, random.Random(seed))
    base = 60 * 2 ** (n - 1)
    assert 0.9 * base <= delay <= 1.1 * base


def test_retry_delay_jitter_actually_varies():
    rng = random.Random(3)
    assert len({round(retry_delay(1, rng), 6) for _ in range(20)}) > 10


def test_failures_retry_after_60_120_240_seconds_then_disable():
    sim = Sim(interval=86400)
    sim.tick(at(0, 0.5), ok=False)
    delays = []
    while sim.enabled:
        failed_at = sim.syncs[-1][0] + timedelta(seconds=1)
        delays.append((sim.next_sync_at - failed_at).total_seconds())
        assert not sim.due(sim.next_sync_at - SECOND)
        sim.tick(sim.next_sync_at, ok=False)
    assert [(trigger, attempt) for _, trigger, attempt in sim.syncs] == [
        ("schedule", 1), ("retry", 2), ("retry", 3), ("retry", 4)
    ]  # fmt: skip
    assert len(delays) == 3
    for delay, base in zip(delays, (60, 120, 240), strict=True):
        assert 0.9 * base <= delay <= 1.1 * base
    assert sim.failures == 4 and not sim.enabled


@pytest.mark.parametrize("max_retries", [0, 1, 3, 5])
def test_auto_disable_comes_after_max_retries_failed_retries(max_retries):
    sim = Sim(interval=86400, max_retries=max_retries)
    sim.tick(at(0), ok=False)
    while sim.enabled:
        sim.tick(sim.next_sync_at, ok=False)
    retries = [s for s in sim.syncs if s[1] == "retry"]
    assert len(retries) == max_retries
    assert len(sim.syncs) == max_retries + 1


@given(
    failures=st.integers(0, 2),
    interval=st.integers(60, 7 * 86400),
    offset=st.floats(min_value=0, max_value=1),
    duration=st.floats(min_value=0, max_value=300),
    retry_after=st.one_of(st.none(), st.floats(min_value=-10, max_value=100_000)),
    seed=st.integers(0, 2**32),
)
def test_a_retry_is_never_after_the_next_slot_nor_before_retry_after(
    failures, interval, offset, duration, retry_after, seed
):
    slot = at(0)
    started = slot + timedelta(seconds=offset * interval)
    now = started + timedelta(seconds=duration)
    plan = plan_after_sync(
        trigger="retry" if failures else "schedule",
        succeeded=False,
        interval=interval,
        slot_at=slot,
        next_sync_at=slot,
        failures=failures,
        max_retries=3,
        started=started,
        now=now,
        retry_after=retry_after,
        rng=random.Random(seed),
    )
    normal = next_due(slot, interval, started)
    base = 60 * 2**failures
    backoff_at = min(now + timedelta(seconds=base * 0.9), normal)
    assert not plan.disable
    assert plan.consecutive_failures == failures + 1
    assert plan.slot_at == slot  # a failure does not move the schedule's anchor
    earliest, latest = backoff_at, min(now + timedelta(seconds=base * 1.1), normal)
    if retry_after is not None and retry_after > 0:
        server = now + timedelta(seconds=retry_after)
        earliest, latest = max(earliest, server), max(latest, server)
    assert earliest <= plan.next_sync_at <= latest


def test_retry_is_capped_at_the_next_slot():
    # 5-minute interval, fourth failure in a row would wait 240 s ±10 %, but 10:05 comes first.
    plan = plan_after_sync(
        trigger="retry", succeeded=False, interval=300, slot_at=at(0), next_sync_at=at(3),
        failures=2, max_retries=5, started=at(3, 1), now=at(3, 2), rng=random.Random(1),
    )  # fmt: skip
    assert plan.next_sync_at == at(5)


def test_retry_after_wins_when_it_is_later_even_past_the_next_slot():
    plan = plan_after_sync(
        trigger="schedule", succeeded=False, interval=300, slot_at=at(0), next_sync_at=at(0),
        failures=0, max_retries=3, started=at(0, 1), now=at(0, 2), retry_after=3600,
        rng=random.Random(1),
    )  # fmt: skip
    assert plan.next_sync_at == at(0, 2) + timedelta(seconds=3600)


@pytest.mark.parametrize("retry_after", [0, -5, None])
def test_zero_negative_or_missing_retry_after_falls_back_to_the_backoff(retry_after):
    plan = plan_after_sync(
        trigger="schedule", succeeded=False, interval=86400, slot_at=at(0), next_sync_at=at(0),
        failures=0, max_retries=3, started=at(0, 1), now=at(0, 2), retry_after=retry_after,
        rng=random.Random(1),
    )  # fmt: skip
    assert at(0, 2 + 54) <= plan.next_sync_at <= at(0, 2 + 66)


def test_a_successful_retry_returns_to_the_original_slots():
    sim = Sim(interval=900)
    outcomes = iter([True, False, False, True, True, True, True])  # 10:15 and its first retry fail
    started = run_ticks(sim, range(0, 61), ok=lambda m: not sim.due(at(m, 0.3)) or next(outcomes))
    assert started[:2] == [0, 15] and started[-3:] == [30, 45, 60]
    retries = started[2:-3]
    assert len(retries) == 2 and 15 < retries[0] < retries[1] < 30
    assert [trigger for _, trigger, _ in sim.syncs] == ["schedule"] * 2 + ["retry"] * 2 + ["schedule"] * 3
    assert sim.failures == 0 and sim.enabled


# -- manual syncs --------------------------------------------------------------------------------


@pytest.mark.parametrize("ok", [True, False])
def test_a_manual_sync_does_not_move_the_schedule(ok):
    sim = Sim(interval=900)
    sim.tick(at(0))
    before = (sim.next_sync_at, sim.slot_at)
    sim.sync(at(7, 12), manual=True, ok=ok)
    assert (sim.next_sync_at, sim.slot_at) == before
    assert run_ticks(sim, range(1, 31)) == [15, 30]


def test_a_failed_manual_sync_does_not_count_towards_auto_disable():
    sim = Sim(interval=900, max_retries=1)
    for minute in range(1, 10):
        sim.sync(at(minute), manual=True, ok=False)
    assert sim.failures == 0 and sim.enabled


def test_a_successful_manual_sync_clears_a_failure_streak_but_keeps_the_retry_time():
    sim = Sim(interval=3600)
    sim.tick(at(0), ok=False)
    retry_at = sim.next_sync_at
    sim.sync(at(0, 30), manual=True, ok=True)
    assert sim.failures == 0
    assert sim.next_sync_at == retry_at


def test_a_manual_sync_does_not_resume_a_disabled_integration():
    sim = Sim(interval=3600, max_retries=0)
    sim.tick(at(0), ok=False)
    assert not sim.enabled
    sim.sync(at(1), manual=True, ok=True)
    assert not sim.enabled and not sim.due(at(600))


# -- resume --------------------------------------------------------------------------------------


def test_resume_is_due_now_when_the_slot_has_passed_else_at_the_slot():
    assert plan_on_resume(at(0), 900, at(20)) == at(20)
    assert plan_on_resume(at(30), 900, at(20)) == at(30)
    assert plan_on_resume(None, 900, at(20)) == at(20)
    assert plan_on_resume(at(0), None, at(20)) is None
