"""What an operator meets in the first hour: output on narrow terminals and odd encodings,
pipes closed early, a disabled or running integration as `list`/`show` tell it, `edit`
with empty values, `sync` progress, the demo's tidiness, and a clock set back."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from syncctl.schedule import after_clock_set_back
from tests.helpers import HANG_GUARD, query, require_tool, run_on_terminal
from tests.httpsources import HTTPSource, gated, json_body

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LONG_ERROR_NAME = "weather-station-north"


@pytest.fixture
def source():
    with HTTPSource() as running:
        yield running


def on_terminal(db_path, *args: str, columns: int = 80) -> str:
    """Run syncctl with stdout and stderr on a pseudo-terminal ``columns`` wide (plain text)."""
    _, output = run_on_terminal(db_path, *args, env={"COLUMNS": str(columns), "LINES": "50", "NO_COLOR": "1"})
    return ANSI.sub("", output).replace("\r", "")


def failing_integration(cli, name: str = LONG_ERROR_NAME) -> None:
    from tests.httpsources import closed_port

    url = f"http://127.0.0.1:{closed_port()}/v1/observations/with/a/long/path"
    assert cli("add", name, "--url", url, "--interval", "15m", "--max-retries", "0").returncode == 0
    assert cli("run-due").returncode == 1  # fails, and with no retries left is disabled


def test_at_80_columns_list_and_history_keep_every_column_and_the_whole_error(cli, db_path):
    failing_integration(cli)

    # The whole error and the hint for the state are there, wrapped under the row: list
    # tells how to resume the disabled integration, history the log's own hint.
    for command, hint in (("list", f"syncctl resume {LONG_ERROR_NAME}"), ("history", "hint: is the service running?")):
        screen = on_terminal(db_path, command)
        lines = screen.splitlines()
        assert all(len(line) <= 80 for line in lines), screen
        assert "…" not in lines[0], screen  # no header cut short
        joined = " ".join(line.strip() for line in lines)
        assert "connection refused by 127.0.0.1" in joined, screen
        assert hint in joined.replace("- ", "-"), f"{command} must show the hint {hint!r}: {screen}"
    history = on_terminal(db_path, "history").splitlines()
    assert history[0].split() == ["ID", "INTEGRATION", "STATUS", "TRIGGER", "STARTED", "DURATION", "RECORDS"]


def test_a_disabled_integration_says_how_to_resume_it_and_shows_no_next_sync(cli, db_path):
    failing_integration(cli)

    listed = cli("list").stdout
    row = next(line for line in listed.splitlines() if line.startswith(LONG_ERROR_NAME))
    assert " disabled " in row
    assert f"syncctl resume {LONG_ERROR_NAME}" in row
    assert "will retry" not in row
    shown = cli("show", LONG_ERROR_NAME).stdout
    assert re.search(r"^next sync\s+-$", shown, re.MULTILINE), shown
    assert f"syncctl resume {LONG_ERROR_NAME}" in shown


def test_show_into_a_pipe_closed_early_exits_0_quietly(cli, spawn):
    failing_integration(cli)
    proc = spawn("show", LONG_ERROR_NAME, text=False)
    proc.stdout.read(4)  # like `head -c 4`
    proc.stdout.close()
    assert proc.wait(timeout=HANG_GUARD) == 0
    assert proc.stderr.read() == b""


@pytest.mark.parametrize("args", [("list", "--json"), ("history",), ("health",), ("export",), ("records", "a", "--json")])
def test_output_to_a_full_device_is_named_as_such_not_a_bug(cli, db_path, args):
    import subprocess

    from tests.helpers import syncctl_command

    assert cli("add", "a", "--url", "http://127.0.0.1:9/a").returncode == 0
    argv, env = syncctl_command(db_path, args)
    with open("/dev/full", "w") as full:
        done = subprocess.run(argv, env=env, stdout=full, stderr=subprocess.PIPE, text=True, timeout=HANG_GUARD)

    assert done.returncode == 3, done.stderr
    assert done.stderr == ("syncctl: cannot write standard output: No space left on device "
                           "(hint: free space where the output goes, or send it elsewhere)\n")  # fmt: skip


@pytest.mark.parametrize("args", [("list",), ("history",), ("show", LONG_ERROR_NAME), ("list", "--json")])
def test_an_ascii_only_output_encoding_never_breaks_a_command(cli, args):
    failing_integration(cli)

    result = cli(*args, env={"PYTHONIOENCODING": "ascii"})

    assert result.returncode == 0, result
    assert "internal error" not in result.stderr
    assert LONG_ERROR_NAME in result.stdout
    if "--json" in args:
        import json

        assert json.loads(result.stdout)[0]["name"] == LONG_ERROR_NAME


def test_edit_with_empty_values_goes_back_to_defaults_or_refuses(cli, db_path):
    assert cli("add", "a", "--url", "http://127.0.0.1:9/a", "--paginate", "page:p").returncode == 0

    assert cli("edit", "a", "--paginate", "").returncode == 0
    config = query(db_path, "SELECT url, json_extract(config, '$.paginate') AS p FROM integrations")[0]
    assert config["p"] == "none"

    refused = cli("edit", "a", "--url", "")
    assert refused.returncode == 2 and "invalid URL" in refused.stderr, refused
    assert query(db_path, "SELECT url FROM integrations")[0]["url"] == "http://127.0.0.1:9/a"


def test_edit_with_one_empty_header_or_param_clears_them(cli, db_path):
    assert cli("add", "a", "--url", "http://127.0.0.1:9/a", "--header", "Accept: application/json",
               "--param", "limit=10", "--param", "q=x").returncode == 0  # fmt: skip

    assert cli("edit", "a", "--header", "", "--param", "").returncode == 0

    config = query(db_path, "SELECT json_extract(config, '$.headers') AS h, json_extract(config, '$.params') AS p"
                            " FROM integrations")[0]  # fmt: skip
    assert (config["h"] or "{}", config["p"] or "{}") == ("{}", "{}"), config


def test_auth_beside_an_authorization_header_is_refused(cli, db_path):
    both = ("--auth", "basic:u:${PASS}", "--header", "Authorization: Bearer ${TOKEN}")
    refused = cli("add", "a", "--url", "http://127.0.0.1:9/a", *both)
    assert refused.returncode == 2 and "--auth basic and an Authorization header" in refused.stderr, refused.stderr
    assert cli("add", "a", "--url", "http://127.0.0.1:9/a", "--header", "Authorization: Bearer ${TOKEN}").returncode == 0
    before = query(db_path, "SELECT config FROM integrations")

    edited = cli("edit", "a", "--auth", "basic:u:${PASS}")

    assert edited.returncode == 2 and "--header ''" in edited.stderr, edited.stderr
    assert query(db_path, "SELECT config FROM integrations") == before
    assert cli("edit", "a", "--auth", "basic:u:${PASS}", "--header", "").returncode == 0, "the hint's fix works"


def test_a_running_sync_shows_in_list_and_show(cli, spawn, db_path, source):
    release = source.gate()
    url = source.add("/slow", gated(json_body([{"id": 1}]), release))
    assert cli("add", "slow", "--url", url, "--interval", "manual").returncode == 0
    proc = spawn("sync", "slow")
    try:
        source.wait_hits("/slow")
        listed = cli("list").stdout
        assert re.search(r"^slow\s+manual\s+manual\s+syncing \(\d+s\)", listed, re.MULTILINE), listed
        assert re.search(r"^syncing\s+now, started", cli("show", "slow").stdout, re.MULTILINE)
    finally:
        release.set()
    out, _ = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 0
    assert out.splitlines()[0].startswith("slow: 1 record in ")  # one record, not "1 records"


def test_sync_of_several_ends_with_a_count(cli, source):
    url = source.add("/items", json_body([{"id": 1}, {"id": 2}]))
    for name in ("one", "two"):
        assert cli("add", name, "--url", url).returncode == 0
    assert cli("add", "bad", "--url", source.url("/missing")).returncode == 0

    result = cli("sync", "--all")

    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "2 of 3 syncs succeeded (1 failed)."
    assert "one: 2 records in " in result.stdout


def test_the_demo_leaves_no_temporary_folder_behind(cli, tmp_path, db_path):
    # A database in use makes the demo pick a temporary one of its own.
    assert cli("add", "prod", "--url", "https://example.com/api").returncode == 0
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    result = cli("demo", env={"TMPDIR": str(scratch)})

    assert result.returncode == 0, result
    assert list(scratch.iterdir()) == []
    # It never claims run-due prints nothing right before a line run-due printed.
    assert "prints nothing" not in result.stdout.split("$ syncctl run-due -v")[-1].split("Nothing was due")[0]


# -- the clock set back ---------------------------------------------------------------------

NOW = datetime(2026, 11, 23, 10, 0, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("next_at", "slot_at", "interval", "expected"),
    [
        # A year ahead on a 15-minute grid: back to the grid's first slot after now.
        (NOW + timedelta(days=365, minutes=14, seconds=30), NOW + timedelta(days=365, minutes=14, seconds=30),
         900, datetime(2026, 11, 23, 10, 15, tzinfo=timezone.utc)),
        # Within one interval: untouched.
        (NOW + timedelta(minutes=14), NOW + timedelta(minutes=14), 900, None),
        # Due already: untouched.
        (NOW - timedelta(minutes=1), NOW - timedelta(minutes=1), 900, None),
        # Manual only: untouched.
        (None, None, None, None),
    ],
)
def test_after_clock_set_back_no_schedule_waits_more_than_one_interval(next_at, slot_at, interval, expected):
    moved = after_clock_set_back(next_sync_at=next_at, slot_at=slot_at, interval=interval, now=NOW)

    assert moved == expected
    if moved is not None:
        assert NOW < moved <= NOW + timedelta(seconds=interval)


def test_after_the_clock_jumped_a_year_ahead_and_back_the_next_sync_is_within_one_interval(cli, db_path, source):
    require_tool("faketime")  # a skip before anything is set up
    url = source.add("/items", json_body([{"id": 1}]))
    assert cli("add", "a", "--url", url, "--interval", "15m").returncode == 0
    ahead = cli("run-due", at="+365d")
    assert ahead.returncode == 0, ahead
    parked = query(db_path, "SELECT next_sync_at FROM integrations")[0]["next_sync_at"]
    assert parked > "2027"

    assert cli("run-due").returncode == 0  # the clock is right again

    next_at = query(db_path, "SELECT next_sync_at FROM integrations")[0]["next_sync_at"]
    next_dt = datetime.fromisoformat(next_at.replace("Z", "+00:00"))
    assert next_dt <= datetime.now(timezone.utc) + timedelta(minutes=15)
