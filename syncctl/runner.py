"""Running many syncs: the run-due lock, the worker pool that both ``run-due`` and
``sync`` use, and what happens on SIGTERM / SIGINT."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncctl import errors, liveness, runlock
from syncctl.engine import Engine, SyncSettings, interrupted_by, recover_orphans, signal_plan
from syncctl.errors import DatabaseError
from syncctl.models import Integration, Status, SyncResult
from syncctl.schedule import after_clock_set_back
from syncctl.store import Store

if TYPE_CHECKING:
    from syncctl.fetch import Cancel

GRACE_SECONDS = 5.0  # how long running syncs may finish after SIGTERM
CANCEL_SECONDS = 3.0  # then how long they get to record that they were interrupted


@dataclass
class RunReport:
    """What a run came to."""

    results: list[SyncResult] = field(default_factory=list)
    recovered: int = 0
    locked_by: str | None = None  # run-due: another process holds the lock ("pid 12, for 3m")
    signal: int | None = None
    disabled: list[Integration] = field(default_factory=list)  # newly auto-disabled
    faulted: bool = False  # the environment refused a write (disk full, locked, …)
    holder: runlock.Holder | None = None  # run-due: who holds the lock, since when (if known)

    @property
    def failed(self) -> list[SyncResult]:
        return [r for r in self.results if r.status == Status.FAILED]

    @property
    def busy(self) -> list[SyncResult]:
        return [r for r in self.results if r.status == "BUSY"]


@dataclass
class TickVerdict:
    """What a finished tick tells cron (spec §6, §9): the lines for stderr (cron mails
    them; the /fail ping carries them), the notes only ``-v`` shows, and the exit code."""

    complaints: list[tuple[str, str | None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    exit_code: int = 0


def verdict(report: RunReport, *, now: datetime, sync_timeout: float, lock_file: Path | None) -> TickVerdict:
    """The tick's policy, in one place: a busy lock is normal and silent, unless it has
    been held past any possible sync (loud on every tick, exit 1); each integration
    disabled by this tick is one line with how to resume it; any failure is exit 1. The
    failed syncs themselves were told as they finished."""
    result = TickVerdict()
    if report.locked_by is not None:
        holder = report.holder
        if holder is not None and holder.stuck(now, sync_timeout):
            error = holder.stuck_error(runlock.lock_path(lock_file) if lock_file else None, now, sync_timeout)
            result.complaints.append((error.message, error.hint))
            result.exit_code = 1
        else:
            result.notes.append(f"another run-due is running ({report.locked_by}); nothing to do")
        return result
    for integration in report.disabled:
        attempts = f"{integration.consecutive_failures} failed attempt" + ("" if integration.consecutive_failures == 1 else "s")
        result.complaints.append((
            f"{integration.name} is now disabled after {attempts}; last error: {integration.last_error}",
            integration.hint or f"fix the cause, then run: syncctl resume {integration.name}",
        ))  # fmt: skip
    if report.failed or report.disabled:
        result.exit_code = 1
    return result


class Stopped(Exception):
    """Raised when a signal ended the run; carries the report so far."""

    def __init__(self, report: RunReport) -> None:
        super().__init__(f"stopped by signal {report.signal}")
        self.report = report


class _LeaseRenewal:
    """Renews the leases of this process's running syncs every quarter of a lease, on its
    own connection (opened at the first beat: most runs end before it). Quiet: a beat the
    database refuses is tried again at the next one, and a sync whose leases lapse is
    reaped as its host would be (``liveness.is_orphan``)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.stop = threading.Event()
        self.failures = 0  # beats the database refused (for tests and -v)
        self.thread = threading.Thread(target=self._run, name="lease-renewal", daemon=True)

    def __enter__(self) -> _LeaseRenewal:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=1.0)  # it never waits long: its waits give up at stop

    def _run(self) -> None:
        interval = liveness.lease_seconds() / 4
        owner = liveness.owner_token()
        store: Store | None = None
        try:
            while not self.stop.wait(interval):
                try:
                    if store is None:
                        store = self.store.reopen()
                        store.give_up = self.stop.is_set
                    store.renew_leases(owner)
                except DatabaseError:
                    self.failures += 1
                    if store is not None:
                        with contextlib.suppress(Exception):
                            store.close()
                        store = None  # a lost connection: the next beat opens another
        finally:
            if store is not None:
                with contextlib.suppress(Exception):
                    store.close()


HEARTBEAT_WAIT = 2.0  # seconds the heartbeat waits for another writer before it lets go


def record_heartbeat(store: Store, now: datetime) -> None:
    """Every tick says it ran (spec §10), whether it got the lock or found it busy: a
    lock-busy tick still shows cron is alive. One small write per tick, one row per host.

    It never holds the tick up: when another program keeps the database's write lock, the
    heartbeat lets go after a moment (ticks would otherwise pile up behind it every
    minute), and the tick goes on to meet, name and log that lock where a sync needs it."""
    from syncctl.errors import EnvironmentFault

    previous, deadline = store.give_up, time.monotonic() + HEARTBEAT_WAIT
    store.give_up = lambda: previous() or time.monotonic() > deadline
    try:
        store.record_tick(liveness.hostname(), os.getpid(), now)
    except EnvironmentFault as exc:
        if exc.kind != "locked":
            raise
    finally:
        store.give_up = previous


class _Workers:
    """Per-thread database connections and HTTP sessions, closed at the end."""

    def __init__(self, store: Store, settings: SyncSettings, give_up: Callable[[], bool]) -> None:
        self.store = store
        self.settings = settings
        self.give_up = give_up
        self.local = threading.local()
        self.opened: list[Any] = []
        self.lock = threading.Lock()

    def engine(self) -> Engine:
        engine = getattr(self.local, "engine", None)
        if engine is None:
            from syncctl.fetch import new_session

            store, session = self.store.reopen(), new_session()
            store.give_up = self.give_up
            with self.lock:
                self.opened += [store, session]
            engine = self.local.engine = Engine(store, self.settings, session)
        return engine

    def close(self) -> None:
        for thing in self.opened:
            with contextlib.suppress(Exception):
                thing.close()


@dataclass
class _Job:
    """One sync of the pool: of a given integration, or of the next one due (named once
    its claim succeeds)."""

    cancel: Cancel
    integration: Integration | None = None


def run_syncs(
    store: Store,
    integrations: list[Integration],
    *,
    manual: bool,
    concurrency: int,
    settings: SyncSettings,
    on_result: Callable[[SyncResult], None] | None = None,
    report: RunReport | None = None,
) -> RunReport:
    """Sync ``integrations`` (``sync``), ``concurrency`` at a time; see ``_pool``."""
    pending = deque(integrations)

    def next_job() -> _Job | None:
        return _Job(_new_cancel(), pending.popleft()) if pending else None

    def run_job(engine: Engine, job: _Job, _stopping: Callable[[], bool]) -> SyncResult:
        return engine.sync(job.integration.id, manual=manual, cancel=job.cancel)

    return _pool(store, next_job, run_job, manual=manual, concurrency=concurrency, settings=settings,
                 on_result=on_result, report=report)


def run_due_syncs(
    store: Store,
    *,
    due_by: datetime,
    concurrency: int,
    settings: SyncSettings,
    on_result: Callable[[SyncResult], None] | None = None,
    report: RunReport | None = None,
) -> RunReport:
    """Sync what was due by ``due_by`` (the tick's start), ``concurrency`` at a time: each
    free worker claims the oldest due integration nobody holds (``claim_next_due``), until
    none is left. So several processes share the work without stepping on each other, and
    what this run claimed once is never claimed again by it (a retry due meanwhile waits
    for the next tick). See ``_pool``.

    This process's workers claim one at a time (SQLite would serialise them anyway), so a
    claim the database refuses is the last one: the workers waiting behind it start nothing."""
    from syncctl.timeutil import utcnow

    claimed: set[int] = set()
    claiming = threading.Lock()
    over = threading.Event()  # nothing left, or the database refused a claim

    def run_job(engine: Engine, job: _Job, stopping: Callable[[], bool]) -> SyncResult | None:
        with claiming:
            if over.is_set() or stopping():
                return None
            started = time.monotonic()
            try:
                claim = engine.store.claim_next_due(
                    (settings.clock or utcnow)(), pid=os.getpid(), owner=liveness.owner_token(),
                    due_by=due_by, skip=claimed,
                )
            except DatabaseError:
                over.set()
                job.integration = _next_due(engine.store, due_by, claimed)  # to name it
                raise
            if claim is None:
                over.set()
                return None
            job.integration = claim[1]
            claimed.add(claim[1].id)
        return engine.run_claimed(*claim, cancel=job.cancel, started_clock=started)

    return _pool(store, lambda: _Job(_new_cancel()), run_job, manual=False, concurrency=concurrency,
                 settings=settings, on_result=on_result, report=report)


def _new_cancel() -> Cancel:
    from syncctl.fetch import Cancel

    return Cancel()


def _next_due(store: Store, due_by: datetime, skip: set[int]) -> Integration | None:
    """The integration a refused claim was after, to name it and log the attempt (a read:
    SQLite's WAL lets it past another program's write lock)."""
    with contextlib.suppress(DatabaseError):
        for integration in store.due_integrations(due_by):
            if integration.id not in skip and integration.running_since is None:
                return integration
    return None


def _pool(
    store: Store,
    next_job: Callable[[], _Job | None],
    run_job: Callable[[Engine, _Job, Callable[[], bool]], SyncResult | None],
    *,
    manual: bool,
    concurrency: int,
    settings: SyncSettings,
    on_result: Callable[[SyncResult], None] | None,
    report: RunReport | None,
) -> RunReport:
    """Run jobs, ``concurrency`` at a time, until ``next_job`` has none or a job finds
    nothing to do (returns None). On SIGTERM/SIGINT: start nothing new, give running syncs
    a grace period, then interrupt them, make sure none of their logs stays RUNNING, and
    raise Stopped.

    When the environment refuses a write (disk full, read-only, permissions, another
    program's lock) the syncs after it would meet the same fault: nothing new starts, the
    result is reported at once, and the attempt is logged afterwards if the database lets
    us (``_log_fault``); the untried integrations stay due for the next run.
    """
    report = report or RunReport()
    running: dict[Future[SyncResult | None], _Job] = {}
    stop: list[int] = []
    drained = False  # no job left to start
    abandon = threading.Event()  # set after the grace period: lock waits give up at once
    workers = _Workers(store, settings, abandon.is_set)
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="sync")
    faults: list[tuple[Integration | None, DatabaseError]] = []
    lost: list[DatabaseError] = []  # the database went away: one line and exit 3, at the end

    def collect(futures: set[Future[SyncResult | None]]) -> None:
        nonlocal drained
        for future in futures:
            job = running.pop(future)
            name = job.integration.name if job.integration is not None else "run-due"
            try:
                result = future.result()
            except DatabaseError as exc:  # the environment refused a write the engine needed
                if getattr(exc, "kind", None) == "unreachable":
                    lost.append(exc)  # its log stays RUNNING until its lease or pid says so
                    continue
                result = SyncResult(name, Status.FAILED.value, error_message=exc.message, error_hint=exc.hint)
                faults.append((job.integration, exc))
                report.faulted = True
            except Exception as exc:  # a bug in the engine: keep going with the others
                result = SyncResult(
                    name, Status.FAILED.value,
                    error_message=f"internal error: {type(exc).__name__}: {exc}",
                    error_hint="please report this as a syncctl bug",
                )
            if result is None:  # nothing left to claim
                drained = True
                continue
            report.results.append(result)
            if on_result:
                on_result(result)

    def task(job: _Job) -> SyncResult | None:
        if stop:  # a signal came while this job waited for a thread: start nothing new
            return None
        return run_job(workers.engine(), job, lambda: bool(stop))

    previous_give_up = store.give_up
    store.give_up = lambda: bool(stop)  # this thread's own waits end at a signal
    renewal = _LeaseRenewal(store)
    try:
        with _signals(stop), renewal:
            while not stop:
                while not drained and len(running) < concurrency and not stop and not faults and not lost:
                    job = next_job()
                    if job is None:
                        drained = True
                        break
                    running[pool.submit(task, job)] = job
                if not running:
                    break
                done, _ = wait(running, timeout=0.25, return_when=FIRST_COMPLETED)
                collect(done)
            for integration, fault in faults:
                if stop or lost:
                    break
                if integration is None:
                    continue  # a claim refused before it could name one: nothing to log
                with contextlib.suppress(DatabaseError):  # still refused: the line was printed
                    _log_fault(store, integration, fault, manual=manual, settings=settings)
        if not stop:
            pool.shutdown(wait=True)
            workers.close()
            if lost:
                raise lost[0]
            return report
        report.signal = stop[0]
        done, _ = wait(running, timeout=GRACE_SECONDS)
        collect(done)
        signal_name = signal.Signals(stop[0]).name
        abandon.set()  # a sync still waiting for another program's lock stops waiting
        for job in running.values():
            job.cancel.cancel(signal_name)
        done, _ = wait(running, timeout=CANCEL_SECONDS)
        collect(done)
        _interrupt_own_logs(store, signal_name, settings)
    finally:
        store.give_up = previous_give_up
    pool.shutdown(wait=False, cancel_futures=True)
    raise Stopped(report)


def _log_fault(
    store: Store, integration: Integration, fault: DatabaseError, *, manual: bool, settings: SyncSettings
) -> None:
    """Log an attempt the environment cut short: finish this process's unfinished log of
    it, or log the attempt whole if it never got one. Like an interrupted sync it is not
    the source's fault: no failure is counted, and a scheduled sync is due at the next run."""
    from syncctl.timeutil import utcnow

    now = (settings.clock or utcnow)()
    owner = liveness.owner_token()
    with store.transaction():
        mine = [log.id for log in store.unfinished_logs(integration.id) if log.owner == owner]
        if mine:
            log_id = mine[0]
        else:
            claimed = store.claim(integration.id, manual=manual, now=now, pid=os.getpid(), owner=owner)
            if not isinstance(claimed, tuple):
                return  # removed meanwhile, or someone else is syncing it now
            log_id = claimed[0]
        store.finish_sync(
            log_id,
            integration_id=integration.id,
            status=Status.FAILED,
            now=now,
            records_count=None,
            error_message=fault.message,
            error_hint=fault.hint,
            plan=signal_plan(now),
        )


def _interrupt_own_logs(store: Store, signal_name: str, settings: SyncSettings) -> None:
    """Finish this process's logs still RUNNING (syncs stuck past the grace period). When
    the database refuses (another program's lock), they are left to crash recovery."""
    from syncctl.timeutil import utcnow

    owner = liveness.owner_token()
    now = (settings.clock or utcnow)()
    message, hint = interrupted_by(signal_name)
    with contextlib.suppress(DatabaseError):
        for log in store.unfinished_logs():
            if log.owner == owner:
                store.finish_sync(
                    log.id,
                    integration_id=log.integration_id,
                    status=Status.FAILED,
                    now=now,
                    records_count=None,
                    error_message=message,
                    error_hint=hint,
                    plan=signal_plan(now),
                )


@contextlib.contextmanager
def _signals(stop: list[int]) -> Iterator[None]:
    """Turn SIGTERM and SIGINT into a flag the pool loop checks."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        if not stop:
            stop.append(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def run_due(
    store: Store,
    *,
    now: Callable[[], datetime],
    concurrency: int,
    settings: SyncSettings,
    on_result: Callable[[SyncResult], None] | None = None,
    on_start: Callable[[], None] | None = None,
) -> RunReport:
    """The cron entry point: heartbeat, lock, recover orphans, sync what is due
    (``on_start`` is called before the first sync starts). A tick that finds the lock
    busy returns at once with its holder (``report.holder``): the caller decides whether
    it has held the lock for too long (``runlock.Holder.stuck``)."""
    report = RunReport()
    # The lock file means something on one host only: with PostgreSQL, hosts coordinate
    # through the database alone (claims skip what another host holds).
    held = (runlock.hold(store.path, now(), settings.sync_timeout) if store.dialect.has_lock_file
            else contextlib.nullcontext())
    with held as holder:
        previous_tick = store.last_tick_at()
        record_heartbeat(store, now())  # lock-busy ticks too
        if holder is not None:
            report.locked_by = holder.describe(now())
            report.holder = holder
            return report
        report.recovered = len(recover_orphans(store, now(), settings.rng))
        if previous_tick is not None and previous_tick > now():  # the clock was set back since
            store.reschedule_after_clock_set_back(
                now(),
                lambda i, at: after_clock_set_back(
                    next_sync_at=i.next_sync_at, slot_at=i.slot_at, interval=i.sync_interval, now=at
                ),
            )
        tick = now()
        if store.has_due(tick):  # an idle tick starts no pool and opens no connection
            if on_start is not None:
                on_start()
            run_due_syncs(store, due_by=tick, concurrency=concurrency, settings=settings,
                          on_result=on_result, report=report)
        if report.faulted:
            return report  # the environment refused a write: it would refuse this one too
        # Every auto-disable is announced once, here, whoever decided it: a sync of this
        # run, or crash recovery run by any command since the last run.
        report.disabled = store.take_disable_notices()
        return report


def flush_and_exit(code: int) -> None:
    """Exit now, even if a worker thread is stuck in a read: its log is already final."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def after_tick(
    store: Store,
    report: RunReport,
    *,
    now: datetime,
    sync_timeout: float,
    metrics_file: Path | None,
    env: dict[str, str],
    status_dir: Path | None = None,
) -> list[str]:
    """What every tick does last, lock-busy ones too (spec §10): send the notifications
    that are due, rewrite the metrics file and the status page (spec §19). Returns the problems met, as error lines for
    stderr: a notification that cannot be delivered is not one (it is retried, and
    ``notify list`` shows its error)."""
    from syncctl.errors import SyncctlError

    problems = []
    try:
        if store.has_notify_targets():  # the module and its imports only for those who use it
            from syncctl.notify import notify_tick

            notify_tick(store, now, holder=report.holder, sync_timeout=sync_timeout, env=env)
    except SyncctlError as exc:  # the database's own faults: named, but the syncs stand
        problems.append((f"notifications: {exc.message}", exc.hint))
    if metrics_file is not None:
        from syncctl import metrics

        try:
            metrics.write_file(store, metrics_file, now)
        except OSError as exc:
            fault = errors.from_os_error(exc, metrics_file, "point --metrics-file elsewhere")
            problems.append((f"metrics file: {fault.message}", fault.hint))
    if status_dir is not None:  # spec §19: beside the metrics file, lock-busy ticks too
        from syncctl import status_page

        try:
            status_page.write(store, status_dir, now, details=False)
        except OSError as exc:
            fault = errors.from_os_error(exc, status_dir, "point --status-dir elsewhere")
            problems.append((f"status page: {fault.message}", fault.hint))
    return problems
