"""Where the helpers shared by test files live (fixtures stay in tests/conftest.py): running
the real CLI (``run_syncctl``, ``spawn_syncctl``, ``run_on_terminal``, ``run_main``),
reading the database back, and skipping on a missing tool. Test files import from here
(``from tests.helpers import …``), never from conftest or from each other."""

from __future__ import annotations

import io
import json
import math
import os
import pty
import select
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from syncctl.store import Store

ROOT = Path(__file__).resolve().parent.parent
HANG_GUARD = 120  # seconds: a generous guard against hangs, never a timing assertion


@dataclass
class Result:
    """A finished syncctl process."""

    returncode: int
    stdout: str
    stderr: str

    def json(self):  # noqa: ANN201
        return json.loads(self.stdout)


def base_env(db: Path | str | None) -> dict[str, str]:
    """The environment syncctl runs in: this process's without SYNCCTL_* or FORCE_COLOR, the
    project on PYTHONPATH, and SYNCCTL_DB=db (a file path or a postgresql:// URL; not set
    when ``db`` is None)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCCTL_", "FORCE_COLOR"))}
    if db is not None:
        env["SYNCCTL_DB"] = str(db)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# -- running the real CLI --------------------------------------------------------------------


def faketime_spec(at: datetime | str) -> str:
    """libfaketime's ``-f`` spec for ``at``: a datetime is an absolute moment in UTC, in whole
    seconds (``@2030-01-07 10:00:00``; microseconds are dropped, and the clock keeps ticking
    from there); a string is a spec as it is (``+365d``, ``-1h``, ``@2030-01-07 10:00:00``),
    or a bare ``2030-01-07 10:00:00``, taken as that absolute moment."""
    if isinstance(at, datetime):
        return at.astimezone(timezone.utc).strftime("@%Y-%m-%d %H:%M:%S")
    return "@" + at if at[:1].isdigit() else at


def ceil_second(moment: datetime) -> datetime:
    """``moment`` rounded up to a whole second (a faketime stamp holds whole seconds: round
    up where the clock must never fall short)."""
    return moment.replace(microsecond=0) + timedelta(seconds=math.ceil(moment.microsecond / 1e6))


def syncctl_command(
    db: Path | str | None, args: tuple, env: Mapping[str, str | None] | None = None, at: datetime | str | None = None
) -> tuple[list, dict[str, str]]:
    """The command line and environment of ``syncctl ARGS…``: ``base_env(db)`` with ``env``
    on top (a None value unsets that variable), run through Debian's ``faketime -f`` when
    ``at`` is given (a skip without faketime; monotonic time stays real and TZ=UTC, unless
    ``env`` says otherwise)."""
    full = base_env(db)
    argv: list = [sys.executable, "-m", "syncctl", *args]
    if at is not None:
        argv = [require_tool("faketime"), "-f", faketime_spec(at), *argv]
        full.update({"FAKETIME_DONT_FAKE_MONOTONIC": "1", "TZ": "UTC"})
    for name, value in (env or {}).items():
        if value is None:
            full.pop(name, None)
        else:
            full[name] = value
    return argv, full


def _umask(umask: int | None) -> Callable[[], object] | None:
    return (lambda: os.umask(umask)) if umask is not None else None


def run_syncctl(
    db: Path | str | None,
    *args: str,
    env: Mapping[str, str | None] | None = None,
    input: str | None = None,  # noqa: A002
    timeout: float = HANG_GUARD,
    at: datetime | str | None = None,
    cwd: Path | str | None = None,
    umask: int | None = None,
) -> Result:
    """Run ``syncctl ARGS…`` as a real process against ``db`` (a file path or a postgresql://
    URL, as SYNCCTL_DB; None: no SYNCCTL_DB) and wait for it.

    ``env``: variables on top of :func:`base_env` (None unsets one); ``input``: stdin text
    (otherwise stdin is /dev/null, never a terminal); ``timeout``: a hang guard; ``at``: the
    wall clock, through libfaketime (see :func:`faketime_spec`); ``cwd``; ``umask``."""
    argv, full = syncctl_command(db, args, env, at)
    proc = subprocess.run(
        argv, env=full, input=input, capture_output=True, text=True, timeout=timeout, cwd=cwd,
        stdin=None if input is not None else subprocess.DEVNULL, preexec_fn=_umask(umask),
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout, proc.stderr)


def spawn_syncctl(
    db: Path | str | None,
    *args: str | bytes,
    env: Mapping[str, str | None] | None = None,
    at: datetime | str | None = None,
    cwd: Path | str | None = None,
    umask: int | None = None,
    **popen: Any,
) -> subprocess.Popen:
    """Start ``syncctl ARGS…`` as :func:`run_syncctl` runs it, without waiting: stdin
    /dev/null, stdout and stderr pipes, text; other ``subprocess.Popen`` arguments (such as
    ``text=False`` or ``start_new_session=True``) go to Popen. The caller reaps it."""
    argv, full = syncctl_command(db, args, env, at)
    options = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen(argv, env=full, cwd=cwd, preexec_fn=_umask(umask), **(options | popen))


def run_on_terminal(  # noqa: ANN201
    db_path: Path | str, *args: str, answer: str | None = None, env: Mapping[str, str | None] | None = None,
    at: datetime | str | None = None,
):
    """Run syncctl with stdin, stdout and stderr on a pseudo-terminal; returns (code, output).
    ``answer`` is typed after the first ``?``; ``env`` and ``at`` as for :func:`run_syncctl`."""
    master, slave = pty.openpty()
    argv, full_env = syncctl_command(
        db_path, args, {"TERM": "xterm-256color", "COLUMNS": "120", "NO_COLOR": None, **(env or {})}, at
    )
    proc = subprocess.Popen(
        argv,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=full_env,
        close_fds=True,
        start_new_session=True,
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + HANG_GUARD
    answered = answer is None
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
                if not answered and b"?" in output:
                    os.write(master, answer.encode() + b"\n")
                    answered = True
            elif proc.poll() is not None and not ready:
                break
    finally:
        os.close(master)
    code = proc.wait(timeout=HANG_GUARD)
    return code, output.decode(errors="replace")


def run_main(db_path: Path, *args: str) -> Result:
    """Run the CLI in this process (for many or random inputs, where a subprocess each
    would be slow). Any exception that escapes ``main`` fails the test: a user would
    have seen a traceback."""
    from syncctl.cli import main

    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = None
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(["--db", str(db_path), *args])
        except SystemExit as exc:
            code = exc.code
    return Result(code if isinstance(code, int) else 1, out.getvalue(), err.getvalue())


# -- what a test needs -----------------------------------------------------------------------


def in_ci() -> bool:
    """CI sets CI=true (so do GitHub, GitLab and most others): nothing may be skipped there."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(message: str) -> None:
    """Something a test needs is missing: a skip on a developer's machine, a failure in CI."""
    if in_ci():
        pytest.fail(message + " (CI must run every test)")
    pytest.skip(message)


def require_tool(name: str, install: str | None = None) -> str:
    """The path of a tool a test needs (``install`` says how to get it; a Debian package of
    the same name by default). Missing: a skip locally, a failure in CI."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed ({install or f'apt-get install {name}'})")
    return path


def wait_for(predicate: Callable[[], Any], what: str, guard: float = 30) -> Any:
    """Poll until ``predicate()`` is true (a state in another process, such as a RUNNING
    row); ``guard`` is a hang guard, never a timing assertion."""
    end = time.monotonic() + guard
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"gave up waiting {guard} s for {what}")


# -- setting up and reading back -------------------------------------------------------------

_OPTION_FIELDS = {
    "--header": "headers", "--param": "params", "--records-path": "records_path", "--key": "key",
    "--paginate": "paginate", "--max-pages": "max_pages", "--timeout": "timeout",
    "--max-retries": "max_retries", "--rate-limit": "rate_limit",
}  # fmt: skip


def add(store: Store, name: str, url: str, *options: str) -> None:
    """Set up an integration as ``syncctl add NAME --url URL OPTIONS…`` would, but in-process
    (a subprocess costs most of a second; ``add`` itself is not under test here)."""
    from syncctl.config import IntegrationOptions, build_config, validate_name, validate_url
    from syncctl.schedule import parse_interval
    from syncctl.timeutil import utcnow

    fields: dict = {"headers": [], "params": []}
    interval = "1h"
    for flag, value in zip(options[::2], options[1::2], strict=False):
        if flag == "--interval":
            interval = value
        elif flag in ("--header", "--param"):
            fields[_OPTION_FIELDS[flag]].append(value)
        elif flag in ("--max-pages", "--max-retries"):
            fields[_OPTION_FIELDS[flag]] = int(value)
        elif flag == "--timeout":
            fields["timeout"] = float(value)
        else:
            fields[_OPTION_FIELDS[flag]] = value
    store.add_integration(
        name=validate_name(name), url=validate_url(url), config=build_config(IntegrationOptions(**fields)),
        interval=parse_interval(interval), now=utcnow(),
    )


def query(db_path: Path, sql: str, params: tuple = ()) -> list[dict]:
    """Read the database the way a user would, with the sqlite3 module."""
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def stored(db_path: Path, name: str) -> dict[str, object]:
    """The records of one integration, by key, as a user reads them with sqlite3."""
    rows = query(
        db_path,
        "SELECT r.key, r.data FROM records r JOIN integrations i ON i.id = r.integration_id"
        " WHERE i.name = ? ORDER BY r.key",
        (name,),
    )
    return {r["key"]: json.loads(r["data"]) for r in rows}


def dump(db_path: Path) -> str:
    """The whole database as SQL, plus its schema version: to compare before and after."""
    conn = sqlite3.connect(db_path)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        return f"user_version={version}\n" + "\n".join(conn.iterdump())
    finally:
        conn.close()


def parse_z(text: str) -> datetime:
    """A stored timestamp (``2026-01-02T03:04:05.678Z``) as an aware datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def utc_ms() -> datetime:
    """Now, to the millisecond (as syncctl stores it)."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def can_exchange(directory: Path) -> bool:
    """Whether this file system swaps two names atomically (renameat2 RENAME_EXCHANGE)."""
    import ctypes

    one, other = directory / "exchange-a", directory / "exchange-b"
    one.write_text("a")
    other.write_text("b")
    libc = ctypes.CDLL(None, use_errno=True)
    swapped = getattr(libc, "renameat2", None) is not None and libc.renameat2(
        -100, bytes(one), -100, bytes(other), 2) == 0
    assert one.read_text() == ("b" if swapped else "a")
    one.unlink()
    other.unlink()
    return swapped
