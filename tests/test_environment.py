"""Environment faults named as what they are (spec §2, §9; issue 8): a missing database,
a full disk, a read-only file system, files of another user, another program holding the
database's lock (and SIGTERM while waiting for it), remove racing run-due, one running
sync per integration as a rule of the schema, and a stuck run-due that says so."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import site
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from syncctl import runlock
from syncctl import store as store_module
from tests.helpers import HANG_GUARD, ROOT, Result, base_env, ceil_second, query
from tests.httpsources import HTTPSource, gated, hang, json_body

URL = "http://127.0.0.1:9/items"


def one_line(result: Result, code: int) -> str:
    """The single stderr line of a command that failed with ``code``, never a traceback."""
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def source() -> Iterator[HTTPSource]:
    with HTTPSource() as src:
        yield src


# -- a database that does not exist ------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["list"], ["list", "--json"], ["show", "x"], ["history"], ["run-due"], ["sync", "x"], ["pause", "x"],
     ["resume", "--all"], ["remove", "x", "--yes"], ["set-interval", "x", "5m"], ["edit", "x", "--url", URL],
     ["prune", "--older-than", "90d"]],
)  # fmt: skip
def test_every_command_but_add_refuses_a_missing_database(cli, db_path, args):
    line = one_line(cli(*args), 3)
    assert str(db_path) in line
    assert "--db" in line and "SYNCCTL_DB" in line and "syncctl add" in line
    assert not db_path.exists() and not db_path.parent.exists()  # nothing created


def test_a_mistyped_path_in_a_crontab_line_is_loud_and_add_creates_the_database(cli, db_path):
    assert cli("add", "one", "--url", URL).returncode == 0
    mistyped = db_path.parent / "syncctl.bd"
    line = one_line(cli("run-due", env={"SYNCCTL_DB": str(mistyped)}), 3)
    assert str(mistyped) in line and not mistyped.exists()
    assert cli("list", "--json").json()[0]["name"] == "one"


# -- one running sync per integration: a rule of the schema --------------------------------


def test_the_schema_allows_one_unfinished_log_per_integration(cli, db_path):
    assert cli("add", "one", "--url", URL).returncode == 0
    insert = ("INSERT INTO sync_logs (integration_id, trigger, status, started_at)"
              " VALUES (1, 'manual', ?, '2026-01-01T00:00:00.000Z')")  # fmt: skip
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            conn.execute(insert, ["RUNNING"])
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"), conn:
            conn.execute(insert, ["PENDING"])
        with conn:
            conn.execute(insert, ["FAILED"])  # finished logs: as many as you like
    finally:
        conn.close()


def test_a_database_of_the_current_release_with_duplicate_running_logs_is_migrated(cli, db_path):
    """Step 3 on a step-2 database (what the current release writes): all but the newest
    unfinished log of an integration are finished first, then the unique index is built."""
    steps = store_module.schema_steps()
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    for number, sql in steps:
        if number <= 2:
            conn.executescript(sql)
    conn.execute(f"PRAGMA application_id = {store_module.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO integrations (name, url, config, sync_interval, sync_enabled, created_at, updated_at)"
        " VALUES ('old', 'https://example.com/x', '{}', NULL, 1, '2026-01-01T00:00:00.000Z',"
        " '2026-01-01T00:00:00.000Z')"
    )
    for status in ("RUNNING", "SUCCESS", "RUNNING", "PENDING"):
        conn.execute(
            "INSERT INTO sync_logs (integration_id, trigger, status, started_at, pid, owner)"
            " VALUES (1, 'manual', ?, '2026-01-01T00:00:00.000Z', 1, 'elsewhere:-:1:-')",
            [status],
        )
    conn.commit()
    conn.close()

    listed = cli("list", "--json")

    assert listed.returncode == 0, listed
    assert query(db_path, "PRAGMA user_version")[0]["user_version"] == steps[-1][0]
    logs = query(db_path, "SELECT id, status, completed_at, error_message FROM sync_logs ORDER BY id")
    assert [log["status"] for log in logs] == ["FAILED", "SUCCESS", "FAILED", "PENDING"]
    assert "interrupted" in logs[0]["error_message"] and logs[0]["completed_at"].endswith("Z")
    indexes = query(db_path, "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sync_logs'")
    assert any("UNIQUE" in (i["sql"] or "") and "RUNNING" in i["sql"] for i in indexes)


def test_remove_during_a_sync_exits_75_naming_the_holder_and_changes_nothing(cli, spawn, source, db_path):
    release = source.gate()
    assert cli("add", "slow", "--url", source.add("/slow", gated(json_body([{"id": 1}]), release))).returncode == 0
    syncing = spawn("sync", "slow")
    try:
        source.wait_hits("/slow")
        line = one_line(cli("remove", "slow", "--yes"), 75)
        assert f"pid {syncing.pid}" in line
    finally:
        release.set()
    assert syncing.wait(HANG_GUARD) == 0
    assert query(db_path, "SELECT status FROM sync_logs") == [{"status": "SUCCESS"}]
    assert cli("remove", "slow", "--yes").returncode == 0


@pytest.mark.slow
def test_remove_racing_run_due_never_fails_either_process(cli, spawn, source, db_path):
    """Today's bug: 15 of 16 tries ended in IntegrityError: FOREIGN KEY constraint failed."""
    url = source.add("/items", json_body([{"id": n} for n in range(200)], delay=0.05))
    for attempt in range(16):
        name = f"race{attempt}"
        assert cli("add", name, "--url", url).returncode == 0
        run_due = spawn("run-due")
        time.sleep(attempt * 0.04)  # not a timing assertion: spreads remove over run-due's phases
        removing = spawn("remove", name, "--yes")
        run_out, run_err = run_due.communicate(timeout=HANG_GUARD)
        rm_out, rm_err = removing.communicate(timeout=HANG_GUARD)
        for err in (run_err, rm_err):
            assert "Traceback" not in err and "internal error" not in err and "FOREIGN KEY" not in err, err
        assert run_due.returncode == 0, run_err
        assert removing.returncode in (0, 75), rm_err
        if removing.returncode == 75:
            assert "being synced right now (pid" in rm_err
            assert cli("remove", name, "--yes").returncode == 0
        gone = query(db_path, "SELECT (SELECT count(*) FROM integrations WHERE name = ?) AS i,"
                     " (SELECT count(*) FROM sync_logs) AS l, (SELECT count(*) FROM records) AS r", (name,))
        assert gone == [{"i": 0, "l": 0, "r": 0}]  # its records and logs went with it


# -- another program holds the database's write lock -------------------------------------


HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE integrations SET updated_at = updated_at")
print("held", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


@contextlib.contextmanager
def lock_held_by_another_program(db_path: Path) -> Iterator[subprocess.Popen]:
    """A helper process (the sqlite3 module, not syncctl) holding BEGIN IMMEDIATE until
    the block ends, or until the test writes a line to its stdin."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        release(holder)


def release(holder: subprocess.Popen) -> None:
    if holder.poll() is None:
        with contextlib.suppress(BrokenPipeError):
            holder.stdin.write("\n")
            holder.stdin.flush()
        holder.wait(HANG_GUARD)


def test_a_write_locked_past_the_busy_timeout_names_the_program(cli, db_path):
    assert cli("add", "one", "--url", URL).returncode == 0
    with lock_held_by_another_program(db_path) as holder:
        line = one_line(cli("pause", "one", env={"SYNCCTL_BUSY_TIMEOUT": "0.5"}), 3)
    assert f"locked by another program (pid {holder.pid}, python" in line
    assert f"ps -fp {holder.pid}" in line and "internal error" not in line
    assert query(db_path, "SELECT sync_enabled FROM integrations") == [{"sync_enabled": 1}]


def test_run_due_locked_out_reports_one_line_and_logs_the_attempt_once_released(spawn, cli, source, db_path):
    url = source.add("/items", json_body([{"id": 1}]))
    assert cli("add", "one", "--url", url).returncode == 0
    with lock_held_by_another_program(db_path) as holder:
        run = spawn("run-due", env={"SYNCCTL_BUSY_TIMEOUT": "0.5"})
        first = run.stderr.readline()  # printed as soon as the sync gave up
        assert f"one: database {db_path} is locked by another program (pid {holder.pid}" in first
        assert "hint: stop that program" in first
        release(holder)
        rest = run.stderr.read()
        assert run.wait(HANG_GUARD) == 1
    assert rest == "" and run.stdout.read() == ""
    logs = query(db_path, "SELECT status, error_message FROM sync_logs")
    assert len(logs) == 1 and logs[0]["status"] == "FAILED"  # the attempt is still logged
    assert f"pid {holder.pid}" in logs[0]["error_message"]
    assert source.hits["/items"] == 0
    row = query(db_path, "SELECT consecutive_failures, next_sync_at FROM integrations")[0]
    assert row["consecutive_failures"] == 0  # not the source's fault
    again = cli("run-due")  # due again at the next tick, which works
    assert (again.returncode, again.stderr) == (0, "")
    assert source.hits["/items"] == 1


def test_sync_of_an_integration_being_synced_says_busy_without_waiting_for_the_write_lock(cli, spawn, source, db_path):
    # As when a run-due is stopped (SIGSTOP) inside a transaction: the sync it holds is
    # still its own, and `sync NAME` says so at once instead of waiting out the busy timeout.
    assert cli("add", "hung", "--url", source.add("/hung", hang())).returncode == 0
    run = spawn("run-due")
    try:
        source.wait_hits("/hung")
        with lock_held_by_another_program(db_path):
            busy = cli("sync", "hung", timeout=60)  # a hang guard well inside the 120 s busy timeout
    finally:
        run.kill()
        run.wait(HANG_GUARD)
    assert busy.returncode == 75, busy.stderr
    assert f"pid {run.pid}" in busy.stderr and "locked" not in busy.stderr
    assert source.hits["/hung"] == 1


@pytest.mark.slow
def test_sigterm_while_waiting_for_another_programs_lock_keeps_the_grace_period(spawn, cli, source, db_path):
    answer = source.gate()
    assert cli("add", "one", "--url", source.add("/items", gated(json_body([{"id": 1}]), answer))).returncode == 0
    run = spawn("run-due")  # the default busy timeout: 120 s
    try:
        source.wait_hits("/items")  # claimed: its log is RUNNING
        with lock_held_by_another_program(db_path):
            answer.set()  # the page arrives; storing it waits for the lock
            run.send_signal(signal.SIGTERM)
            # The hang guard sits well inside the 120 s busy timeout: a wait in SQLite's C
            # code would keep the process (and its interrupted log) past it.
            code = run.wait(60)
    finally:
        answer.set()
    err = run.stderr.read()
    assert code == 143, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err and "internal error" not in err
    assert cli("list").returncode == 0  # reaps the log the lock kept it from finishing
    assert query(db_path, "SELECT status FROM sync_logs") == [{"status": "FAILED"}]


# -- a full disk (a tiny tmpfs) ------------------------------------------------------------


@contextlib.contextmanager
def mounted(target: Path, options: str) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}); run as root")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB file system for the database."""
    with mounted(tmp_path / "tiny", "size=1m,mode=0755") as mount:
        yield mount


def fill(mount: Path) -> Path:
    """Take every free block of ``mount``."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    return filler


def test_disk_full_when_creating_the_database(cli, tiny_disk):
    fill(tiny_disk)
    db = tiny_disk / "syncctl.db"
    line = one_line(cli("add", "one", "--url", URL, env={"SYNCCTL_DB": str(db)}), 3)
    assert "disk is full" in line and f"free space on {tiny_disk}" in line
    assert not db.exists()  # no empty file left to be mistaken for a database


def test_a_full_disk_under_the_status_page_or_metrics_file_is_named_with_its_fix(cli, tiny_disk):
    assert cli("add", "one", "--url", URL, "--interval", "manual").returncode == 0  # the database is elsewhere
    fill(tiny_disk)

    page = one_line(cli("status-page", str(tiny_disk / "status")), 3)
    tick = cli("run-due", "--metrics-file", str(tiny_disk / "syncctl.prom"))

    assert "the disk is full" in page and f"free space on {tiny_disk}" in page and "write the page elsewhere" in page
    assert tick.returncode == 0, "the tick itself went well"
    [line] = tick.stderr.splitlines()
    assert line.startswith("syncctl: metrics file: cannot write") and "the disk is full" in line, line
    assert "point --metrics-file elsewhere" in line and "--db" not in line, line


def test_disk_full_when_opening_needs_the_wal(cli, tiny_disk):
    db = tiny_disk / "syncctl.db"
    env = {"SYNCCTL_DB": str(db)}
    assert cli("add", "one", "--url", URL, env=env).returncode == 0
    assert not Path(f"{db}-wal").exists()  # closed cleanly: the next open creates it
    fill(tiny_disk)
    for args in (["list"], ["run-due"]):
        line = one_line(cli(*args, env=env), 3)
        assert "disk is full" in line and f"free space on {tiny_disk}" in line, line


def test_disk_full_when_writing_the_lock_file(cli, tiny_disk):
    db = tiny_disk / "syncctl.db"
    env = {"SYNCCTL_DB": str(db)}
    assert cli("add", "one", "--url", URL, "--interval", "manual", env=env).returncode == 0
    reader = sqlite3.connect(db)  # keeps -wal and -shm in place: opening needs no space
    try:
        reader.execute("SELECT count(*) FROM integrations").fetchone()
        fill(tiny_disk)
        line = one_line(cli("run-due", env=env), 3)
    finally:
        reader.close()
    assert f"{db}.lock" in line and "disk is full" in line and f"free space on {tiny_disk}" in line


def test_disk_full_mid_sync_fails_that_sync_and_the_next_tick_works(cli, source, tiny_disk):
    db = tiny_disk / "syncctl.db"
    env = {"SYNCCTL_DB": str(db)}
    big = [{"id": n, "text": "x" * 1000} for n in range(3000)]  # ~3 MB: more than the disk
    url = source.add("/items", json_body(big))
    assert cli("add", "big", "--url", url, env=env).returncode == 0
    assert cli("add", "other", "--url", url, env=env).returncode == 0

    run = cli("run-due", "--concurrency", "1", env=env)

    line = one_line(run, 1)
    assert line.startswith("syncctl: big: cannot write") and "disk is full" in line
    assert f"free space on {tiny_disk}" in line
    logs = query(db, "SELECT i.name, l.status, l.error_message FROM sync_logs l JOIN integrations i"
                     " ON i.id = l.integration_id")  # fmt: skip
    assert [(log["name"], log["status"]) for log in logs] == [("big", "FAILED")]  # still logged
    assert "disk is full" in logs[0]["error_message"]
    assert source.hits["/items"] == 1  # nothing new started on a full disk

    source.add("/items", json_body([{"id": 1}]))  # the cause gone (a smaller body)
    healed = cli("run-due", env=env)
    assert (healed.returncode, healed.stderr) == (0, "")
    statuses = query(db, "SELECT status FROM sync_logs ORDER BY id")
    assert [s["status"] for s in statuses] == ["FAILED", "SUCCESS", "SUCCESS"]


# -- a read-only file system ---------------------------------------------------------------


def test_a_read_only_file_system_is_named_with_remount_as_the_fix(cli, tmp_path):
    with mounted(tmp_path / "ro", "size=4m") as mount:
        db = mount / "syncctl.db"
        env = {"SYNCCTL_DB": str(db)}
        assert cli("add", "one", "--url", URL, env=env).returncode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        for args in (["list"], ["run-due"], ["pause", "one"]):
            line = one_line(cli(*args, env=env), 3)
            assert "read-only file system" in line and "remount" in line, line
            assert "permission" not in line
        subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=True)
        assert cli("pause", "one", env=env).returncode == 0


# -- files of another user -------------------------------------------------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder another user can reach (pytest's own tmp folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="syncctl-env-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_as(user: str, db: Path, *args: str) -> Result:
    """Run the CLI as ``user`` (root bypasses file permissions, so the test needs another)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run the CLI as another user")
    entry = pwd.getpwnam(user)
    env = base_env(db)
    env["HOME"] = "/"
    # The interpreter must be one that user may run: the venv's may live under /root.
    paths = [str(ROOT), *site.getsitepackages()]
    for python in (sys.executable, f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"):
        env["PYTHONPATH"] = os.pathsep.join(paths)
        try:
            probe = subprocess.run([python, "-c", "import syncctl.cli"], env=env, user=entry.pw_uid,
                                   group=entry.pw_gid, capture_output=True, cwd="/")  # fmt: skip
        except OSError:  # not executable for that user
            continue
        if probe.returncode == 0:
            proc = subprocess.run([python, "-m", "syncctl", *args], env=env, user=entry.pw_uid,
                                  group=entry.pw_gid, extra_groups=[], capture_output=True, text=True,
                                  timeout=HANG_GUARD, cwd="/", stdin=subprocess.DEVNULL)  # fmt: skip
            return Result(proc.returncode, proc.stdout, proc.stderr)
    pytest.skip(f"no Python interpreter that {user} may run")


def test_a_database_of_another_user_names_the_owner(cli, shared_dir):
    db = shared_dir / "syncctl.db"
    assert cli("add", "one", "--url", URL, env={"SYNCCTL_DB": str(db)}).returncode == 0
    line = one_line(run_as("nobody", db, "list"), 3)
    assert f"cannot write {db}" in line and "user nobody" in line and "belongs to root" in line
    assert "run syncctl as root" in line


def test_a_lock_file_of_another_user_names_the_owner(cli, shared_dir):
    db = shared_dir / "syncctl.db"
    assert cli("add", "one", "--url", URL, "--interval", "manual", env={"SYNCCTL_DB": str(db)}).returncode == 0
    assert cli("run-due", env={"SYNCCTL_DB": str(db)}).returncode == 0  # root's run-due made the lock file
    nobody = pwd.getpwnam("nobody")
    for path in (db, shared_dir):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)  # the database is nobody's now, the lock is not
    line = one_line(run_as("nobody", db, "run-due"), 3)
    assert f"cannot write {db}.lock" in line and "belongs to root" in line and "run syncctl as root" in line


# -- a stuck run-due -------------------------------------------------------------------------


def test_the_stuck_rule_is_two_sync_timeouts_and_five_minutes():
    assert not runlock.too_long(2 * 300 + 300, 300)
    assert runlock.too_long(2 * 300 + 301, 300)
    assert runlock.too_long(26, 10) is False and runlock.too_long(321, 10) is True


def test_a_stopped_run_due_makes_every_later_tick_say_so(cli, spawn, source, db_path):
    assert cli("add", "hung", "--url", source.add("/hung", hang())).returncode == 0
    stuck = spawn("run-due", "--sync-timeout", "10")
    try:
        source.wait_hits("/hung")
        stuck.send_signal(signal.SIGSTOP)

        quiet = cli("run-due")  # held for seconds: a normally busy lock
        assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
        noted = cli("run-due", "-v")
        assert noted.returncode == 0 and f"another run-due is running (pid {stuck.pid}" in noted.stderr

        # > 2 × 10 s + 5 min; faketime's stamp holds whole seconds: round up, never fall short
        later = ceil_second(datetime.now(timezone.utc) + timedelta(minutes=6))
        for _ in range(2):  # every later tick, not once
            line = one_line(cli("run-due", at=later), 1)
            assert f"run-due pid {stuck.pid} has held {db_path}.lock for 6m" in line, line
            assert "SIGSTOP" in line and f"ps -o pid,stat,etime,cmd -p {stuck.pid}" in line
            assert f"kill {stuck.pid}" in line

        busy = cli("sync", "hung", at=later)
        assert busy.returncode == 75
        assert f"pid {stuck.pid}, started 6m" in busy.stderr and "SIGSTOP" in busy.stderr
    finally:
        stuck.send_signal(signal.SIGCONT)
        stuck.kill()
        stuck.wait(HANG_GUARD)
    after = cli("run-due")  # the next tick takes over: it reaps the killed run's log
    assert (after.returncode, after.stderr) == (0, "")
    assert query(db_path, "SELECT status FROM sync_logs") == [{"status": "FAILED"}]
