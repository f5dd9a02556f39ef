"""Running many syncs: the run-due lock, the worker pool that both ``run-due`` and
``sync`` use, and what happens on SIGTERM / SIGINT."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from syncctl import liveness
from syncctl.engine import Engine, SyncSettings, interrupted_by, recover_orphans, signal_plan
from syncctl.health import LockHolder
from syncctl.models import Integration, Status, SyncResult
from syncctl.schedule import after_clock_set_back
from syncctl.store import Store

GRACE_SECONDS = 5.0  # how long running syncs may finish after SIGTERM
CANCEL_SECONDS = 3.0  # then how long they get to record that they were interrupted


@dataclass
class RunReport:
    """What a run came to."""

    results: list[SyncResult] = field(default_factory=list)
    recovered: int = 0
    locked_by: str | None = None  # run-due: another process holds the lock
    signal: int | None = None
    disabled: list[Integration] = field(default_factory=list)  # newly auto-disabled
    holder: LockHolder | None = None  # run-due: who holds the lock, since when (if known)

    @property
    def failed(self) -> list[SyncResult]:
        return [r for r in self.results if r.status == Status.FAILED]

    @property
    def busy(self) -> list[SyncResult]:
        return [r for r in self.results if r.status == "BUSY"]


class Stopped(Exception):
    """Raised when a signal ended the run; carries the report so far."""

    def __init__(self, report: RunReport) -> None:
        super().__init__(f"stopped by signal {report.signal}")
        self.report = report


@contextlib.contextmanager
def run_lock(db_path: Path) -> Iterator[str | None]:
    """Hold ``<db>.lock`` (never deleted: deleting it would break mutual exclusion).
    Yields None when acquired, else what the holder wrote into the file."""
    lock_path = Path(f"{db_path}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            yield holder or "another process"
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        yield None
    finally:
        os.close(fd)  # closing releases the lock


def lock_holder(db_path: Path) -> LockHolder | None:
    """The run-due holding ``<db>.lock`` now: its pid (from the file) and since when (the
    file's mtime: the holder truncates and writes it when it takes the lock). None when
    nobody holds it. Reads only: never takes the lock, so a tick starting meanwhile is
    not turned away. (Until the stuck-run rule of spec §9 lands in run_lock.)"""
    from datetime import timezone

    lock_path = Path(f"{db_path}.lock")
    try:
        info = lock_path.stat()
        text = lock_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    pid = next((int(w) for w in text.split() if w.isdigit()), None)
    held = _flock_held(lock_path, info.st_ino)
    if not held:
        return None
    return LockHolder(pid, datetime.fromtimestamp(info.st_mtime, timezone.utc))


def _flock_held(lock_path: Path, inode: int) -> bool:
    """Does any process hold a flock on this file? /proc/locks lists them (Linux); where
    it is missing, a shared lock we could take and drop at once says no."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            return any(
                len(fields) > 5 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode)
                for fields in (line.split() for line in locks)
            )
    except OSError:
        pass
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def record_heartbeat(store: Store, now: datetime) -> None:
    """Every tick says it ran (spec §10), before the lock: a tick that finds the lock busy
    still shows cron is alive. One small write per tick, one row per host."""
    import socket

    store.record_tick(socket.gethostname(), os.getpid(), now)


class _Workers:
    """Per-thread database connections and HTTP sessions, closed at the end."""

    def __init__(self, store: Store, settings: SyncSettings) -> None:
        self.store = store
        self.settings = settings
        self.local = threading.local()
        self.opened: list[Any] = []
        self.lock = threading.Lock()

    def engine(self) -> Engine:
        engine = getattr(self.local, "engine", None)
        if engine is None:
            from syncctl.fetch import new_session

            store, session = self.store.reopen(), new_session()
            with self.lock:
                self.opened += [store, session]
            engine = self.local.engine = Engine(store, self.settings, session)
        return engine

    def close(self) -> None:
        for thing in self.opened:
            with contextlib.suppress(Exception):
                thing.close()


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
    """Sync ``integrations``, ``concurrency`` at a time. On SIGTERM/SIGINT: start nothing
    new, give running syncs a grace period, then interrupt them, make sure none of their
    logs stays RUNNING, and raise Stopped."""
    from syncctl.fetch import Cancel

    report = report or RunReport()
    pending = deque(integrations)
    running: dict[Future[SyncResult], tuple[Cancel, str]] = {}  # with the integration's name
    workers = _Workers(store, settings)
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="sync")
    stop: list[int] = []

    def collect(futures: set[Future[SyncResult]]) -> None:
        for future in futures:
            _, name = running.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # e.g. the database failed under the engine: keep going
                result = SyncResult(
                    name, Status.FAILED.value,
                    error_message=f"internal error: {type(exc).__name__}: {exc}",
                    error_hint="check the database (disk space, permissions); report it if it repeats",
                )
            report.results.append(result)
            if on_result:
                on_result(result)

    def task(integration_id: int, cancel: Cancel) -> SyncResult:
        return workers.engine().sync(integration_id, manual=manual, cancel=cancel)

    with _signals(stop):
        while (pending or running) and not stop:
            while pending and len(running) < concurrency and not stop:
                cancel, integration = Cancel(), pending.popleft()
                future = pool.submit(task, integration.id, cancel)
                running[future] = cancel, integration.name
            done, _ = wait(running, timeout=0.25, return_when=FIRST_COMPLETED)
            collect(done)
    if not stop:
        pool.shutdown(wait=True)
        workers.close()
        return report
    report.signal = stop[0]
    done, _ = wait(running, timeout=GRACE_SECONDS)
    collect(done)
    signal_name = signal.Signals(stop[0]).name
    for cancel, _ in running.values():
        cancel.cancel(signal_name)
    done, _ = wait(running, timeout=CANCEL_SECONDS)
    collect(done)
    _interrupt_own_logs(store, signal_name, settings)
    pool.shutdown(wait=False, cancel_futures=True)
    raise Stopped(report)


def _interrupt_own_logs(store: Store, signal_name: str, settings: SyncSettings) -> None:
    """Finish this process's logs still RUNNING (syncs stuck past the grace period)."""
    from syncctl.timeutil import utcnow

    owner = liveness.owner_token()
    now = (settings.clock or utcnow)()
    message, hint = interrupted_by(signal_name)
    for log in store.unfinished_logs():
        if log.owner == owner:
            store.finish_sync(
                log.id,
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
    (``on_start`` is called before the first sync starts)."""
    report = RunReport()
    record_heartbeat(store, now())
    with run_lock(store.path) as holder:
        if holder is not None:
            report.locked_by = holder
            report.holder = lock_holder(store.path)
            return report
        report.recovered = len(recover_orphans(store, now(), settings.rng))
        store.reschedule_after_clock_set_back(
            now(),
            lambda i, at: after_clock_set_back(
                next_sync_at=i.next_sync_at, slot_at=i.slot_at, interval=i.sync_interval, now=at
            ),
        )
        due = store.due_integrations(now())
        if due:
            if on_start is not None:
                on_start()
            run_syncs(store, due, manual=False, concurrency=concurrency, settings=settings,
                      on_result=on_result, report=report)
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
) -> list[str]:
    """What every tick does last, lock-busy ones too (spec §10): send the notifications
    that are due, rewrite the metrics file. Returns the problems met, as error lines for
    stderr: a notification that cannot be delivered is not one (it is retried, and
    ``notify list`` shows its error)."""
    from syncctl.errors import SyncctlError
    from syncctl.notify import notify_tick

    problems = []
    try:
        notify_tick(store, now, holder=report.holder, sync_timeout=sync_timeout, env=env)
    except SyncctlError as exc:  # the database's own faults: named, but the syncs stand
        problems.append((f"notifications: {exc.message}", exc.hint))
    if metrics_file is not None:
        from syncctl import metrics

        try:
            metrics.write_file(store, metrics_file, now)
        except OSError as exc:
            problems.append((
                f"cannot write the metrics file {metrics_file}: {exc.strerror or exc}",
                "check that its folder exists and syncctl may write there (--metrics-file PATH)",
            ))
    return problems
