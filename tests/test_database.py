"""The database as a file and a public interface (spec §2-3): where it lives, who can read
it, its schema and version, what is refused (exit 3, file untouched), migrations, and
waiting for another writer instead of failing with "database is locked"."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import site
import sqlite3
import stat
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

import pytest

from syncctl import store as store_module
from syncctl.errors import DatabaseError
from syncctl.store import Store
from tests.helpers import HANG_GUARD, ROOT, Result, query, run_syncctl, unavailable

URL = "https://api.example.com/items"


def run(*args: str, env: dict[str, str | None], cwd: Path | None = None, umask: int | None = None) -> Result:
    """syncctl as a process with no SYNCCTL_DB unless ``env`` (from :func:`clean_env`) sets it."""
    return run_syncctl(None, *args, env=env, cwd=cwd, umask=umask)


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str | None]:
    """No SYNCCTL_DB; HOME and XDG_DATA_HOME inside the test's folder (no XDG_DATA_HOME
    unless ``extra`` sets it): the variables on top of ``base_env(None)``."""
    return {"XDG_DATA_HOME": None, "HOME": str(tmp_path / "home"), **extra}


def names(db_path: Path) -> list[str]:
    return [r["name"] for r in query(db_path, "SELECT name FROM integrations ORDER BY name")]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def fingerprint(path: Path) -> tuple[str, int, list[str]]:
    """The file's bytes, its mtime, and what lies beside it (no -wal or -shm may appear)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest, path.stat().st_mtime_ns, sorted(p.name for p in path.parent.iterdir())


def one_line_exit_3(result: Result) -> str:
    assert result.returncode == 3, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]


# -- where the database is ---------------------------------------------------------------


def test_db_option_beats_env_beats_xdg(tmp_path):
    from_option, from_env = tmp_path / "opt" / "a.db", tmp_path / "env" / "b.db"
    xdg = tmp_path / "xdg"
    env = clean_env(tmp_path, SYNCCTL_DB=str(from_env), XDG_DATA_HOME=str(xdg))

    assert run("--db", str(from_option), "add", "one", "--url", URL, env=env).returncode == 0
    assert names(from_option) == ["one"]
    assert not from_env.exists() and not xdg.exists()

    assert run("add", "two", "--url", URL, env=env).returncode == 0
    assert names(from_env) == ["two"]
    assert not xdg.exists()

    del env["SYNCCTL_DB"]
    assert run("add", "three", "--url", URL, env=env).returncode == 0
    assert names(xdg / "syncctl" / "syncctl.db") == ["three"]
    assert names(from_option) == ["one"] and names(from_env) == ["two"]


def test_default_is_under_home_without_xdg_data_home(tmp_path):
    env = clean_env(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result = run("add", "one", "--url", URL, env=env, cwd=outside)
    assert result.returncode == 0, result.stderr
    assert names(tmp_path / "home" / ".local" / "share" / "syncctl" / "syncctl.db") == ["one"]
    assert list(outside.iterdir()) == []


def test_db_is_a_global_option_before_the_command(tmp_path):
    env = clean_env(tmp_path, XDG_DATA_HOME=str(tmp_path / "xdg"))
    result = run("list", "--db", str(tmp_path / "x.db"), env=env)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "x.db").exists()


# -- creating it -------------------------------------------------------------------------


def test_created_on_first_use_with_its_folder_and_private_files(tmp_path):
    db = tmp_path / "deep" / "er" / "syncctl.db"
    env = clean_env(tmp_path, SYNCCTL_DB=str(db))

    result = run("add", "zero", "--url", URL, "--interval", "manual", env=env, umask=0)  # even with a permissive umask

    assert (result.returncode, result.stderr) == (0, "")
    assert db.is_file()
    assert mode(db) == 0o600
    assert not mode(db.parent) & 0o077  # the folder syncctl created is private too

    # -wal and -shm exist while a connection is open: same mode as the database
    holder = sqlite3.connect(db)
    try:
        holder.execute("SELECT count(*) FROM integrations").fetchone()
        assert run("add", "one", "--url", URL, env=env, umask=0).returncode == 0
        for suffix in ("-wal", "-shm"):
            side = Path(f"{db}{suffix}")
            assert side.exists(), suffix
            assert mode(side) == 0o600, suffix
    finally:
        holder.close()

    # the lock file, after run-due (nothing due: a manual integration)
    assert run("set-interval", "one", "manual", env=env).returncode == 0
    result = run("run-due", env=env, umask=0)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    lock = Path(f"{db}.lock")
    assert lock.exists() and mode(lock) == 0o600
    result = run("run-due", env=env)
    assert result.returncode == 0 and lock.exists()  # never deleted


def test_wal_mode_version_and_public_tables(cli, db_path):
    assert cli("add", "one", "--url", URL).returncode == 0
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        assert version == store_module.schema_steps()[-1][0] >= 1
        columns = {
            table: {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            for table in ("integrations", "sync_logs", "records")
        }
        pk = [r[1] for r in sorted(conn.execute("PRAGMA table_info(records)"), key=lambda r: r[5]) if r[5]]
        due_plan = " ".join(
            r[3]
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT * FROM integrations WHERE sync_enabled = 1"
                " AND sync_interval IS NOT NULL AND next_sync_at <= '2030-01-01T00:00:00.000Z'"
                " ORDER BY next_sync_at"
            )
        )
        logs_plan = " ".join(
            r[3]
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT * FROM sync_logs WHERE integration_id = 1 ORDER BY id DESC LIMIT 10"
            )
        )
    finally:
        conn.close()
    assert columns["integrations"] >= {
        "id", "name", "url", "config", "sync_interval", "sync_enabled", "next_sync_at", "last_sync_at",
        "consecutive_failures", "created_at",
    }  # fmt: skip
    assert columns["sync_logs"] >= {
        "id", "integration_id", "trigger", "status", "attempt", "started_at", "completed_at",
        "duration_ms", "records_count", "error_message", "error_hint",
    }  # fmt: skip
    assert columns["records"] >= {"integration_id", "key", "data", "synced_at"}
    assert pk == ["integration_id", "key"]
    # "what is due" and "the last N logs of one integration" use indexes, not scans or sorts
    assert "INDEX" in due_plan and "TEMP B-TREE" not in due_plan, due_plan
    assert "INDEX" in logs_plan and "TEMP B-TREE" not in logs_plan, logs_plan


def test_name_is_unique_in_the_schema(cli, db_path):
    assert cli("add", "one", "--url", URL).returncode == 0
    conn = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO integrations (name, url, config, created_at, updated_at)"
                " SELECT name, url, config, created_at, updated_at FROM integrations"
            )
    finally:
        conn.close()


def test_opening_twice_is_idempotent(db_path):
    first = Store.open(db_path)
    first.close()
    schema_before = query(db_path, "SELECT type, name, sql FROM sqlite_master ORDER BY name")
    second = Store.open(db_path)
    third = Store.open(db_path)  # while another connection is open, too
    third.close()
    second.close()
    assert query(db_path, "SELECT type, name, sql FROM sqlite_master ORDER BY name") == schema_before
    assert query(db_path, "PRAGMA user_version")[0]["user_version"] == store_module.schema_steps()[-1][0]


def test_an_empty_file_becomes_a_syncctl_database(cli, db_path):
    db_path.parent.mkdir(parents=True)
    db_path.touch(mode=0o600)  # e.g. created by an admin to choose its owner
    result = cli("add", "one", "--url", URL)
    assert result.returncode == 0, result.stderr
    assert names(db_path) == ["one"]


# -- refused: exit 3, one line, the file untouched ---------------------------------------


def test_a_directory_is_refused(cli, db_path):
    db_path.mkdir(parents=True)
    line = one_line_exit_3(cli("list"))
    assert str(db_path) in line
    assert list(db_path.iterdir()) == []


def test_a_text_file_is_refused_untouched(cli, db_path):
    db_path.parent.mkdir(parents=True)
    db_path.write_text("name,url\nweather,https://example.com\n" * 200)
    before = fingerprint(db_path)
    for args in (["list"], ["add", "one", "--url", URL], ["run-due"]):
        one_line_exit_3(cli(*args))
        assert fingerprint(db_path) == before, args


def test_another_programs_sqlite_file_is_refused_untouched(cli, db_path):
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("INSERT INTO invoices (total) VALUES (9.5)")
    conn.close()
    before = fingerprint(db_path)
    for args in (["list", "--json"], ["add", "one", "--url", URL], ["run-due"]):
        line = one_line_exit_3(cli(*args))
        assert "invoices" in line and "not a syncctl database" in line
        assert fingerprint(db_path) == before, args


def test_a_database_from_a_newer_syncctl_is_refused_untouched(cli, db_path):
    assert cli("add", "one", "--url", URL).returncode == 0
    known = store_module.schema_steps()[-1][0]
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {known + 1}")
    conn.close()
    before = fingerprint(db_path)
    for args in (["list"], ["pause", "one"], ["run-due"]):
        line = one_line_exit_3(cli(*args))
        assert "newer" in line and "upgrade" in line
        assert fingerprint(db_path) == before, args


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_an_unreadable_file_is_refused_untouched(cli, db_path):
    assert cli("add", "one", "--url", URL).returncode == 0
    db_path.chmod(0)
    try:
        line = one_line_exit_3(cli("list"))
        assert "permission" in line
    finally:
        db_path.chmod(0o600)
    assert names(db_path) == ["one"]


# -- migrations --------------------------------------------------------------------------


def test_an_older_database_is_migrated_forward_once(db_path, monkeypatch):
    Store.open(db_path).close()
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute(
            "INSERT INTO integrations (name, url, config, created_at, updated_at)"
            " VALUES ('kept', 'https://x.example/', '{}', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')"
        )
    conn.close()
    steps = store_module.schema_steps()
    new = steps[-1][0] + 1
    step = (new, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);\n"
                 "ALTER TABLE integrations ADD COLUMN owner TEXT DEFAULT 'ops';\n")  # fmt: skip
    monkeypatch.setattr(store_module, "schema_steps", lambda: [*steps, step])

    Store.open(db_path).close()
    Store.open(db_path).close()  # applied once: a second run would fail on CREATE TABLE

    assert query(db_path, "PRAGMA user_version")[0]["user_version"] == new
    assert query(db_path, "SELECT name, owner FROM integrations") == [{"name": "kept", "owner": "ops"}]
    assert query(db_path, "SELECT name FROM sqlite_master WHERE name = 'notes'") == [{"name": "notes"}]


def test_a_fresh_database_runs_every_step(db_path, monkeypatch):
    steps = store_module.schema_steps()
    monkeypatch.setattr(
        store_module, "schema_steps", lambda: [*steps, (steps[-1][0] + 1, "CREATE TABLE notes (id INTEGER);")]
    )
    Store.open(db_path).close()
    assert query(db_path, "PRAGMA user_version")[0]["user_version"] == steps[-1][0] + 1
    assert {r["name"] for r in query(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")} >= {
        "integrations", "sync_logs", "records", "notes",
    }  # fmt: skip


def test_a_failing_migration_step_changes_nothing(db_path, monkeypatch):
    Store.open(db_path).close()
    steps = store_module.schema_steps()
    version = steps[-1][0]
    broken = (version + 1, "CREATE TABLE half (id INTEGER);\nCREATE TABLE oops (;\n")
    monkeypatch.setattr(store_module, "schema_steps", lambda: [*steps, broken])
    schema_before = query(db_path, "SELECT name FROM sqlite_master ORDER BY name")

    with pytest.raises(DatabaseError):
        Store.open(db_path)

    assert query(db_path, "PRAGMA user_version")[0]["user_version"] == version
    assert query(db_path, "SELECT name FROM sqlite_master ORDER BY name") == schema_before


def test_schema_sql_at_the_top_is_the_source(db_path):
    text = (ROOT / "schema.sql").read_text()
    assert "-- step 1" in text
    assert [n for n, _ in store_module.schema_steps()] == sorted(
        int(line.split()[-1]) for line in text.splitlines() if line.startswith("-- step ")
    )


# -- busy: wait, don't fail --------------------------------------------------------------


def test_a_command_waits_for_another_writer_instead_of_failing(cli, db_path):
    assert cli("add", "one", "--url", URL).returncode == 0
    holding, release = threading.Event(), threading.Event()

    def hold_write_lock() -> None:
        conn = sqlite3.connect(db_path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE integrations SET url = url || '?held=1'")
            holding.set()
            # Longer than Python's own 5 s default busy timeout: syncctl must set its own.
            release.wait(6)
            conn.execute("COMMIT")
        finally:
            conn.close()

    holder = threading.Thread(target=hold_write_lock)
    holder.start()
    try:
        assert holding.wait(HANG_GUARD)
        listed = cli("list", "--json")  # readers are not blocked (WAL)
        paused = cli("pause", "one")  # a writer waits for the lock
    finally:
        release.set()
        holder.join(HANG_GUARD)

    assert listed.returncode == 0, listed.stderr
    assert paused.returncode == 0, paused.stderr
    assert "locked" not in paused.stderr
    row = query(db_path, "SELECT url, sync_enabled FROM integrations")[0]
    assert row == {"url": URL + "?held=1", "sync_enabled": 0}  # both writes are there


# -- the installed package finds schema.sql ----------------------------------------------


@pytest.mark.slow
def test_an_installed_wheel_finds_its_schema(tmp_path):
    """The wheel, built offline from a copy of the checkout and installed alone into a new
    virtualenv, finds schema.sql inside the package: works from inside a virtualenv (the
    README's way) or the system Python, and needs no network."""
    try:
        import hatchling  # noqa: F401 - the build backend, from the test extra
    except ImportError:
        unavailable("hatchling is not installed (pip install -e '.[test]')")
    source = tmp_path / "src"  # a copy: the build must not write into the checkout
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".git", "*.db*", "__pycache__", ".venv*", "dist", "build")
    )
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
                    "--wheel-dir", str(dist), str(source)],
                   check=True, timeout=HANG_GUARD * 3, capture_output=True)  # fmt: skip
    shutil.rmtree(source)  # nothing left to fall back on but the installed package
    (wheel,) = dist.glob("syncctl-*.whl")

    # A new virtualenv from the base interpreter (a venv's own python would make a venv
    # that cannot see the packages installed in it) that sees this environment's packages
    # (typer, requests…) through a .pth file: plain paths, so an editable install's own
    # .pth, which would lead back to the checkout, is not followed.
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=HANG_GUARD * 3)
    python = venv / "bin" / "python"
    venv_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True, timeout=HANG_GUARD).stdout.strip()  # fmt: skip
    ours = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    Path(venv_site, "syncctl-test-deps.pth").write_text("".join(f"{path}\n" for path in ours if Path(path).is_dir()))
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=HANG_GUARD * 3, capture_output=True)  # fmt: skip

    outside = tmp_path / "outside"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCCTL_", "PYTHON"))}
    env["SYNCCTL_DB"] = str(tmp_path / "data" / "syncctl.db")
    where = subprocess.run(
        [str(python), "-c", "import importlib.resources as r, syncctl; print(syncctl.__file__);"
         " print(r.files('syncctl') / 'schema.sql')"],
        cwd=outside, env=env, capture_output=True, text=True, timeout=HANG_GUARD, check=True,
    )
    package, schema = where.stdout.splitlines()
    assert Path(package).is_relative_to(venv_site), package  # the wheel's package, not the checkout
    assert Path(schema).is_relative_to(venv_site) and Path(schema).is_file(), schema

    for args in (["add", "one", "--url", "https://example.com/api", "--interval", "manual"], ["list", "--json"]):
        result = subprocess.run([str(venv / "bin" / "syncctl"), *args], cwd=outside, env=env,
                                capture_output=True, text=True, timeout=HANG_GUARD)  # fmt: skip
        assert (result.returncode, result.stderr) == (0, ""), result
    assert [i["name"] for i in json.loads(result.stdout)] == ["one"]
    assert query(tmp_path / "data" / "syncctl.db", "SELECT count(*) AS n FROM integrations") == [{"n": 1}]
    steps = store_module.schema_steps()
    assert query(tmp_path / "data" / "syncctl.db", "PRAGMA user_version") == [{"user_version": steps[-1][0]}]


def test_a_database_from_before_the_last_schema_step_is_migrated_with_its_data(cli, db_path):
    """A real upgrade: a file made with only step 1 of schema.sql (what the first release
    wrote) gains the later steps on first use; its integrations, logs and records stay."""
    steps = store_module.schema_steps()
    assert len(steps) >= 2
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    conn.executescript(steps[0][1])
    conn.execute(f"PRAGMA application_id = {store_module.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO integrations (name, url, config, sync_interval, sync_enabled, consecutive_failures,"
        " records_count, created_at, updated_at) VALUES ('old', 'https://example.com/x', '{}', 3600, 1,"
        " 0, 1, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')"
    )
    conn.execute("INSERT INTO records VALUES (1, 'k', '{\"id\":\"k\"}', '2026-01-01T00:00:00.000Z')")
    conn.commit()
    conn.close()

    listed = cli("list", "--json")

    assert listed.returncode == 0, listed
    assert [i["name"] for i in listed.json()] == ["old"]
    assert query(db_path, "PRAGMA user_version")[0]["user_version"] == steps[-1][0]
    columns = {c["name"] for c in query(db_path, "PRAGMA table_info(integrations)")}
    assert "disable_notice" in columns
    assert query(db_path, "SELECT key FROM records") == [{"key": "k"}]
