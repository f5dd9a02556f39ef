"""The fixtures every test may ask for: a fresh database path, the real CLI against it in a
subprocess (``cli``, ``spawn``), the database opened in-process, a PostgreSQL cluster, and
the HTTP source on 127.0.0.1. Helpers that are not fixtures live in tests/helpers.py."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from syncctl.store import Store
from tests.helpers import HANG_GUARD, Result, run_syncctl, spawn_syncctl, unavailable
from tests.httpsources import HTTPSource


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where this test's database lives (not created yet)."""
    return tmp_path / "data" / "syncctl.db"


@pytest.fixture
def cli(db_path: Path) -> Callable[..., Result]:
    """Run ``syncctl ARGS…`` as a real process against the test's database and wait for it.

    Keyword arguments as for ``tests.helpers.run_syncctl``: ``env`` (extra variables),
    ``input`` (stdin text), ``timeout``, ``at`` (the wall clock, through faketime), ``cwd``.
    """

    def run(*args: str, **options: Any) -> Result:
        return run_syncctl(db_path, *args, **options)

    return run


@pytest.fixture
def spawn(db_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start ``syncctl ARGS…`` in the background (for signals, races and kills), as
    ``tests.helpers.spawn_syncctl`` does; whatever is still running at the end is killed."""
    procs: list[subprocess.Popen] = []

    def start(*args: str, **options: Any) -> subprocess.Popen:
        proc = spawn_syncctl(db_path, *args, **options)
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


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, db_path: Path) -> str:
    """The test's database on each backend in turn: a file path, or the URL of a fresh
    PostgreSQL database (a test that asks for it runs twice)."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return str(db_path)


@pytest.fixture
def tcli(target: str) -> Callable[..., Result]:
    """Run ``syncctl ARGS…`` against ``target`` (keyword arguments as for ``run_syncctl``)."""
    return lambda *args, **options: run_syncctl(target, *args, **options)


@pytest.fixture
def source() -> Iterator[HTTPSource]:
    """A started HTTP source on 127.0.0.1 (tests/httpsources.py), stopped after the test."""
    with HTTPSource() as running:
        yield running
