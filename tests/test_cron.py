"""End to end under Debian's real cron daemon: a crontab line runs run-due every minute,
the due integration gets synced, and the job prints nothing (so cron would mail nothing).

Takes one to two minutes. As root it starts cron if it is not running and installs the
line in /etc/cron.d; as another user, cron must already run, and the line is added to
(then removed from) that user's crontab. Run only this test with: python -m pytest -m cron
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, base_env, query, require_tool, unavailable, wait_for
from tests.httpsources import json_body

CRON_GUARD = 150  # seconds: cron ticks once a minute and may need a minute to notice a new file
CRON_D = Path("/etc/cron.d")


def _cron_pids() -> set[int]:
    """The pids of running cron daemons (by their command name, not a pid file that may be stale)."""
    pids = set()
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() in ("cron", "crond"):
                pids.add(int(comm.parent.name))
        except (OSError, ValueError):
            continue
    return pids


@pytest.fixture
def cron_daemon():  # noqa: ANN201
    """Debian's cron, running; started here (and stopped again) if it was not."""
    cron = require_tool("cron")
    started: set[int] = set()
    if not _cron_pids():
        if os.geteuid() != 0:
            unavailable("cron is not running, and only root can start it")
        # cron forks into the background; -L 0: log nothing (there may be no syslog).
        subprocess.run([cron, "-L", "0"], check=True, timeout=30)
        deadline = time.monotonic() + 10
        while not started and time.monotonic() < deadline:
            started = _cron_pids()
            time.sleep(0.1)
        if not started:
            unavailable("cron did not start")
    yield
    for pid in started & _cron_pids():  # only the daemon started here, if it still runs
        os.kill(pid, 15)


@contextlib.contextmanager
def cron_line(command: str) -> Iterator[None]:
    """Install ``* * * * * command`` for the current user, and remove it afterwards: as a
    file in /etc/cron.d for root, else by adding it to (and restoring) the user's crontab."""
    if os.geteuid() == 0:
        # /etc/cron.d file names may hold only letters, digits, '-' and '_' (run-parts
        # rules); the file must belong to root and be writable by root only.
        entry = CRON_D / f"syncctl-test-{os.getpid()}"
        entry.write_text(f'MAILTO=""\nSHELL=/bin/sh\n* * * * * root {command}\n')
        entry.chmod(0o644)
        os.utime(CRON_D)  # cron notices new files by the folder's modification time
        try:
            yield
        finally:
            entry.unlink()
            os.utime(CRON_D)
        return
    crontab = require_tool("crontab")
    listed = subprocess.run([crontab, "-l"], capture_output=True, text=True, timeout=30)
    before = listed.stdout if listed.returncode == 0 else None
    mine = f'MAILTO=""\n* * * * * {command}\n'
    subprocess.run([crontab, "-"], input=(before or "") + mine, text=True, check=True, timeout=30)
    try:
        yield
    finally:
        if before is None:
            subprocess.run([crontab, "-r"], timeout=30, check=False)
        else:
            subprocess.run([crontab, "-"], input=before, text=True, check=True, timeout=30)


@pytest.mark.slow
@pytest.mark.cron
def test_a_crontab_line_syncs_what_is_due_and_cron_would_mail_nothing(cron_daemon, cli, db_path, tmp_path, source):
    added = cli("add", "via-cron", "--url", source.add("/items", json_body([{"id": 1}, {"id": 2}])))
    assert added.returncode == 0, added
    output, done = tmp_path / "cron-output.txt", tmp_path / "cron-exit-code.txt"
    env = base_env(db_path)
    command = (
        f"cd {shlex.quote(str(tmp_path))} && "
        f"SYNCCTL_DB={shlex.quote(env['SYNCCTL_DB'])} PYTHONPATH={shlex.quote(str(ROOT))} "
        f"{shlex.quote(sys.executable)} -m syncctl run-due >{shlex.quote(str(output))} 2>&1; "
        f"echo $? >{shlex.quote(str(done))}"
    )
    with cron_line(command):
        # The exit code is written last: the shell creates the file, then writes the code.
        wait_for(lambda: done.exists() and done.read_text().strip(),
                 "cron to run run-due (is cron allowed to run jobs here?)", guard=CRON_GUARD)
    synced = query(db_path, "SELECT * FROM sync_logs WHERE status = 'SUCCESS'")
    assert done.read_text().strip() == "0"
    assert output.read_text() == ""  # nothing for cron to mail
    assert [s["trigger"] for s in synced] == ["schedule"]
    history = cli("history", "via-cron", "--json").json()
    assert [(h["status"], h["records_count"]) for h in history] == [("SUCCESS", 2)]
    assert source.count("/items") == 1
