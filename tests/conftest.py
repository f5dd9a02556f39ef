"""Fixtures and helpers shared by every test: a fresh database path, a way to run the real
CLI in a subprocess (or in-process), the HTTP source on 127.0.0.1, and the few helpers more
than one test file uses. Test files import from here, never from each other."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from syncctl.store import Store
from tests.httpsources import HTTPSource

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


def base_env(db_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCCTL_", "FORCE_COLOR"))}
    env["SYNCCTL_DB"] = str(db_path)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where this test's database lives (not created yet)."""
    return tmp_path / "data" / "syncctl.db"


@pytest.fixture
def cli(db_path: Path) -> Callable[..., Result]:
    """Run ``syncctl ARGS…`` as a real process against the test's database.

    Keyword arguments: ``env`` (extra variables), ``input`` (stdin text), ``timeout``.
    """

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None,  # noqa: A002
            timeout: float = HANG_GUARD) -> Result:
        full_env = base_env(db_path)
        full_env.update(env or {})
        proc = subprocess.run(
            [sys.executable, "-m", "syncctl", *args], env=full_env, input=input,
            capture_output=True, text=True, timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def spawn(db_path: Path) -> Callable[..., subprocess.Popen]:
    """Start ``syncctl ARGS…`` in the background (for signals, races and kills)."""
    procs: list[subprocess.Popen] = []

    def start(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:  # noqa: ANN003
        full_env = base_env(db_path)
        full_env.update(env or {})
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncctl", *args], env=full_env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=HANG_GUARD)


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    """The test's database, opened in-process (for setting up and inspecting state)."""
    opened = Store.open(db_path)
    yield opened
    opened.close()


def query(db_path: Path, sql: str, params: tuple = ()) -> list[dict]:
    """Read the database the way a user would, with the sqlite3 module."""
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


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


@pytest.fixture(scope="session")
def pg_cluster():  # noqa: ANN201
    """A PostgreSQL cluster for the whole session (tests/pgcluster.py), stopped at the end.
    Without PostgreSQL or psycopg: a skip locally, a failure in CI."""
    from tests import pgcluster

    bindir = pgcluster.binaries()
    if bindir is None:
        unavailable("PostgreSQL is not installed (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (pip install -e '.[test]')")
    cluster = pgcluster.Cluster(bindir)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster) -> str:  # noqa: ANN001
    """A fresh, empty PostgreSQL database for this test."""
    return pg_cluster.url(pg_cluster.new_database())


@pytest.fixture
def source() -> Iterator[HTTPSource]:
    """A started HTTP source on 127.0.0.1 (tests/httpsources.py), stopped after the test."""
    with HTTPSource() as running:
        yield running


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


def parse_z(text: str) -> datetime:
    """A stored timestamp (``2026-01-02T03:04:05.678Z``) as an aware datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def utc_ms() -> datetime:
    """Now, to the millisecond (as syncctl stores it)."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def run_on_terminal(db_path: Path, *args: str, answer: str | None = None, env: dict | None = None):  # noqa: ANN201
    """Run syncctl with stdin, stdout and stderr on a pseudo-terminal; returns (code, output)."""
    master, slave = pty.openpty()
    full_env = base_env(db_path)
    full_env.update({"TERM": "xterm-256color", "COLUMNS": "120"})
    full_env.pop("NO_COLOR", None)
    full_env.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncctl", *args],
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
