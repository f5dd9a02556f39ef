"""The exception hierarchy. Every error carries a one-line message and a hint that says
what to do; its class decides the exit code (mapped in one place, ``cli.main``)."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class SyncctlError(Exception):
    """Base class: a message for the operator and a hint with the fix."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(SyncctlError):
    """Bad input: an option, a name, an interval, a URL."""

    exit_code = 2


class DatabaseError(SyncctlError):
    """The database cannot be opened or is not a syncctl database."""

    exit_code = 3


class BusyError(SyncctlError):
    """The integration is being synced by another process right now."""

    exit_code = 75


# What the hint of a transient fault promises while the integration is scheduled; a
# disabled one's hint drops it (health.resume_hint): that retry will not happen.
RETRY_PROMISE = "syncctl will retry"


def with_retry_promise(fix: str | None = None) -> str:
    """A transient fault's hint: what may help (``fix``), and that syncctl retries."""
    return f"{fix}; {RETRY_PROMISE}" if fix else RETRY_PROMISE


def without_retry_promise(hint: str) -> str | None:
    """``hint`` without the retry it promises (None when that was all it said)."""
    parts = [p for p in hint.split("; ") if p != RETRY_PROMISE]
    return "; ".join(parts) or None


class SyncError(SyncctlError):
    """A sync failed. ``retryable`` faults are retried within the sync (backoff) and
    across runs; ``retry_after`` is the earliest time, in seconds from now, the source
    asked us to come back."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.retryable = retryable
        self.retry_after = retry_after


class EnvironmentFault(DatabaseError):
    """The machine refused a file syncctl needs: the disk is full, the file system is
    read-only, this user may not write it, or another program holds the database's lock.
    Not a syncctl bug and not the source's fault: the hint names the fix."""

    def __init__(self, message: str, hint: str, *, kind: str) -> None:
        super().__init__(message, hint)
        self.kind = kind  # "disk full" | "read-only" | "not writable" | "locked"


# -- naming an environment fault: one place for every file (database, -wal, -shm, lock) ------


def disk_full(path: Path, elsewhere: str = "move the database with --db") -> EnvironmentFault:
    mount = _mount_point(path)
    return EnvironmentFault(
        f"cannot write {path}: the disk is full ({mount})",
        f"free space on {mount} (see: df -h {mount}), or {elsewhere}",
        kind="disk full",
    )


def read_only(path: Path) -> EnvironmentFault:
    mount = _mount_point(path)
    return EnvironmentFault(
        f"cannot write {path}: {mount} is a read-only file system",
        f"remount it read-write (mount -o remount,rw {mount}), or move the database to a "
        "writable file system with --db",
        kind="read-only",
    )


def not_writable(path: Path) -> EnvironmentFault:
    """``path`` (or the folder it must be created in) exists and this user may not write it."""
    owner = _owner(path)
    me = _user_name(os.geteuid())
    return EnvironmentFault(
        f"cannot write {path}: permission denied for user {me} (it belongs to {owner})",
        f"run syncctl as {owner} (e.g. sudo -u {owner} syncctl …), or fix the permissions "
        f"(chown {me} {path})",
        kind="not writable",
    )


def locked(path: Path, waited: float, pid: int | None, program: str | None) -> EnvironmentFault:
    """Another program kept the database's write lock past the busy timeout."""
    if pid:
        who = f" (pid {pid}" + (f", {program})" if program else ")")
        hint = (f"stop that program or let it finish its write (see it with: ps -fp {pid}); "
                "syncctl retries at the next run")
    else:
        who = ""
        hint = (f"find the program that holds it (fuser -v {path} {path}-shm) and stop it, "
                "or let it finish; syncctl retries at the next run")
    return EnvironmentFault(
        f"database {path} is locked by another program{who}; gave up after {waited:g} s",
        hint,
        kind="locked",
    )


def unwritable(path: Path) -> EnvironmentFault | None:
    """Why this user cannot write ``path`` (or create it in its folder), if the file system
    or the permissions say so; None when both allow it."""
    existing = path if path.exists() else path.parent
    try:
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            return read_only(path)
    except OSError:
        return None
    if not os.access(existing, os.W_OK):
        return not_writable(existing)
    return None


def from_os_error(exc: OSError, path: Path, elsewhere: str = "move the database with --db") -> DatabaseError:
    """An OS error on one of syncctl's files, named as what it is (``elsewhere``: the other
    way out of a full disk)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return disk_full(path, elsewhere)
    if exc.errno == errno.EROFS:
        return read_only(path)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return unwritable(path) or not_writable(path)
    return DatabaseError(
        f"cannot use {path}: {exc.strerror or exc}", "check the path, its folder and the disk"
    )


def nearly_full(path: Path) -> bool:
    """Less than 64 KiB left for this user where ``path`` lives (SQLite reports ENOSPC on
    some writes, such as growing -shm, only as "disk I/O error")."""
    existing = path if path.exists() else path.parent
    try:
        stat = os.statvfs(existing)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < 64 * 1024


def _mount_point(path: Path) -> str:
    """The mount point of the file system that holds ``path``."""
    current = Path(os.path.abspath(path))
    while not current.exists() and current != current.parent:
        current = current.parent
    try:
        device = current.stat().st_dev
        while current != current.parent and current.parent.stat().st_dev == device:
            current = current.parent
    except OSError:
        pass
    return str(current)


def _owner(path: Path) -> str:
    try:
        return _user_name(path.stat().st_uid)
    except OSError:
        return "its owner"


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


class LockHeldTooLong(SyncctlError):
    """Another run-due has held the run lock far longer than a healthy run can (stopped or
    hung): every later tick says so, so that cron mails it."""

    exit_code = 1
