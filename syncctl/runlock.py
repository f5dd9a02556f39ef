"""The run-due lock file, ``<database>.lock``, and the rule for a holder that has held it
too long (stopped with SIGSTOP, or hung).

The holder writes who it is into the file: its pid, when it took the lock, its
--sync-timeout and its liveness token (``liveness.owner_token``). The token tells a live
holder from stale text left by an earlier one; the file is never deleted, because deleting
a lock file breaks mutual exclusion.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from syncctl import errors, liveness
from syncctl.timeutil import format_ts, human_duration, parse_ts

STUCK_MARGIN = 300.0  # seconds on top of two sync timeouts


def too_long(held_seconds: float, sync_timeout: float) -> bool:
    """The one rule: a run-due that has held the lock longer than ``2 × --sync-timeout +
    5 min`` is stuck. Every sync of a healthy run ends within its timeout, and the second
    timeout covers the syncs queued behind them and recording the outcomes."""
    return held_seconds > limit(sync_timeout)


def limit(sync_timeout: float) -> float:
    return 2 * sync_timeout + STUCK_MARGIN


@dataclass(frozen=True)
class Holder:
    """Who holds the lock, as far as its file says."""

    pid: int | None = None
    started_at: datetime | None = None
    sync_timeout: float | None = None
    owner: str | None = None

    def held_for(self, now: datetime) -> float | None:
        return (now - self.started_at).total_seconds() if self.started_at else None

    def describe(self, now: datetime) -> str:
        """One line for the -v note: ``pid 1234, for 3m``."""
        held = self.held_for(now)
        who = f"pid {self.pid}" if self.pid else "another process"
        return who + (f", for {human_duration(max(0.0, held))}" if held is not None else "")

    def stuck(self, now: datetime, sync_timeout: float) -> bool:
        """Held too long by its own --sync-timeout (``sync_timeout`` if it did not say)."""
        held = self.held_for(now)
        return held is not None and too_long(held, self.sync_timeout or sync_timeout)

    def stuck_error(self, lock_path: Path, now: datetime, sync_timeout: float) -> errors.LockHeldTooLong:
        timeout = self.sync_timeout or sync_timeout
        held = human_duration(self.held_for(now) or 0.0)
        return errors.LockHeldTooLong(
            f"run-due pid {self.pid} has held {lock_path} for {held} (more than 2 × "
            f"--sync-timeout + 5 min = {human_duration(limit(timeout))}); no integration is "
            "syncing meanwhile",
            stuck_hint(self.pid),
        )


def stuck_hint(pid: int | None) -> str:
    return (
        f"it may be stopped (SIGSTOP) or hung: check it with ps -o pid,stat,etime,cmd -p {pid}, "
        f"then kill it (kill {pid}; kill -CONT {pid} if its state is T); the next tick takes over"
    )


def lock_path(db_path: Path) -> Path:
    return Path(f"{db_path}.lock")


def read_holder(db_path: Path) -> Holder | None:
    """The live holder the lock file names, or None (no file, stale or unreadable text).
    Takes no lock: a future ``health`` command can call it while run-due runs."""
    path = lock_path(db_path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        modified = datetime.fromtimestamp(path.stat().st_mtime).astimezone()
    except OSError:
        return None
    return _parse(text, modified)


def _parse(text: str, modified: datetime | None) -> Holder | None:
    fields = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    try:
        pid = int(fields["pid"])
    except (KeyError, ValueError):
        return None
    owner = fields.get("owner")
    if owner is not None and not liveness.is_alive(pid, owner):
        return None  # an earlier holder's text: the current one has not written yet
    try:
        started = parse_ts(fields["started"]) if "started" in fields else modified
        timeout = float(fields["sync-timeout"]) if "sync-timeout" in fields else None
    except ValueError:
        started, timeout = modified, None
    return Holder(pid=pid, started_at=started, sync_timeout=timeout, owner=owner)


def sync_timeout_of(db_path: Path, pid: int | None) -> float | None:
    """The --sync-timeout of the run-due with ``pid``, if it holds the lock."""
    holder = read_holder(db_path)
    return holder.sync_timeout if holder is not None and pid and holder.pid == pid else None


@contextlib.contextmanager
def hold(db_path: Path, now: datetime, sync_timeout: float) -> Iterator[Holder | None]:
    """Hold ``<db>.lock`` for the block. Yields None when acquired, else the holder (an
    empty Holder when the file does not say). OS errors (disk full, read-only file system,
    a file of another user) are named by ``errors.from_os_error``."""
    path = lock_path(db_path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise errors.from_os_error(exc, path) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            modified = datetime.fromtimestamp(os.fstat(fd).st_mtime).astimezone()
            yield _parse(text, modified) or Holder()
            return
        record = (
            f"pid {os.getpid()}\nstarted {format_ts(now)}\nsync-timeout {sync_timeout:g}\n"
            f"owner {liveness.owner_token()}\n"
        )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode(), 0)
        except OSError as exc:
            raise errors.from_os_error(exc, path) from None
        yield None
    finally:
        os.close(fd)  # closing releases the lock
