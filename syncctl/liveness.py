"""Is the process that owns a RUNNING log still alive?

A pid alone is not enough: pids are reused, and after a reboot every pid is someone
else's. The owner token is the host name, the boot id, the pid and the process's start
time (in clock ticks since boot, from /proc); a sync on this host is alive only if all
still match. Where /proc is missing (not Linux) we fall back to "a process with that pid
exists".

Across hosts a pid says nothing: there a log holds a lease on the database's clock,
renewed while its sync runs (``lease_seconds``), and an expired lease is the proof of
death (rq's ``StartedJobRegistry.cleanup``, Procrastinate's stalled jobs). ``is_orphan``
is the one rule.
"""

from __future__ import annotations

import functools
import os
import socket
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "-"


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # field 3, state: a zombie has ended; only its parent hasn't noticed
        return None
    return fields[19]  # field 22, starttime


LEASE_SECONDS = 60.0  # a RUNNING log's lease; renewed every quarter of it while it runs


def lease_seconds() -> float:
    """60 s, or ``SYNCCTL_LEASE_SECONDS`` (tests that kill a host do not wait a minute)."""
    try:
        return max(1.0, float(os.environ.get("SYNCCTL_LEASE_SECONDS", LEASE_SECONDS)))
    except ValueError:
        return LEASE_SECONDS


def hostname() -> str:
    """This host's name, as logs and messages give it (``SYNCCTL_HOSTNAME`` overrides it,
    for hosts that share a name, and for tests that play several hosts)."""
    return os.environ.get("SYNCCTL_HOSTNAME") or socket.gethostname()


def owner_token(pid: int | None = None) -> str:
    """The identity of a process that survives nothing but that process."""
    own = os.getpid()
    pid = own if pid is None else pid
    ticks = _own_start_ticks(own) if pid == own else _start_ticks(pid)
    return f"{hostname()}:{_boot_id()}:{pid}:{ticks or '-'}"


@functools.lru_cache(maxsize=1)
def _own_start_ticks(pid: int) -> str | None:
    """This process's start time, read once (every claim names its owner); a forked child
    has another pid, so it reads its own."""
    return _start_ticks(pid)


def host_of(owner: str | None) -> str | None:
    """The host named in an owner token."""
    return owner.rsplit(":", 3)[0] if owner and owner.count(":") >= 3 else None


def is_orphan(pid: int | None, owner: str | None, *, lease_expired: bool, leases_decide: bool) -> bool:
    """Has the sync behind an unfinished log died? On this host its process tells, at once
    and exactly; an expired lease tells for another host's sync, and for any sync where
    leases decide (PostgreSQL: a host stopped or cut off past its lease has lost it). A
    sync that renews its lease is never an orphan."""
    host = host_of(owner)
    here = host is None or host == hostname()  # no token (an old row): the pid decides
    if lease_expired and (leases_decide or not here):
        return True
    return here and not is_alive(pid, owner)


def is_alive(pid: int | None, owner: str | None) -> bool:
    """True while the process that wrote ``owner`` runs; never true for a reused pid."""
    if not pid or not owner:
        return False
    try:
        host, boot, _, ticks = owner.rsplit(":", 3)
    except ValueError:
        return False
    if host != hostname():
        return True  # another machine's sync: we cannot see it, so never reap it
    if ticks != "-" and boot != "-":
        return boot == _boot_id() and _start_ticks(pid) == ticks
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_lock_holder(db_path: Path) -> tuple[int, str | None] | None:
    """The pid (and command name) of another process holding the SQLite write lock on
    ``db_path``, from /proc/locks: in WAL mode that is a lock on byte 120 of the -shm file,
    otherwise a write lock on the database file itself. None when it cannot be known."""
    inodes = {}
    for path, kind in ((Path(f"{db_path}-shm"), "shm"), (Path(db_path), "db")):
        try:
            st = path.stat()
        except OSError:
            continue
        inodes[f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"] = kind
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 8 or fields[1] == "->" or fields[3] != "WRITE":
            continue  # "->" marks a process waiting for a lock, not holding it
        kind = inodes.get(fields[5])
        try:
            pid, start = int(fields[4]), int(fields[6])
        except ValueError:
            continue
        if kind is None or pid <= 0 or pid == os.getpid():
            continue
        if kind == "db" or start == 120:  # WAL_WRITE_LOCK: the first lock byte of -shm
            return pid, command_name(pid)
    return None


def command_name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() or None
    except OSError:
        return None
