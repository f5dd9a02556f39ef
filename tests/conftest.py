"""Fixtures shared by every test: a fresh database path, a way to run the real CLI in a
subprocess, and HTTP sources on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

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


def require_tool(name: str) -> str:
    """The path of a Debian tool a test needs. Missing: a skip locally, a failure in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {name})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
