"""Is the process that owns a RUNNING log still alive?

A pid alone is not enough: pids are reused, and after a reboot every pid is someone
else's. The owner token is the boot id, the pid and the process's start time (in clock
ticks since boot, from /proc); a sync is alive only if all three still match. Where /proc
is missing (not Linux) we fall back to "a process with that pid exists".
"""

from __future__ import annotations

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


def owner_token(pid: int | None = None) -> str:
    """The identity of a process that survives nothing but that process."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{_boot_id()}:{pid}:{_start_ticks(pid) or '-'}"


def is_alive(pid: int | None, owner: str | None) -> bool:
    """True while the process that wrote ``owner`` runs; never true for a reused pid."""
    if not pid or not owner:
        return False
    try:
        host, boot, _, ticks = owner.rsplit(":", 3)
    except ValueError:
        return False
    if host != socket.gethostname():
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
