"""What `list`, `show` and `health` say of an integration's state (issue 19): a sync in
progress is visible, with its start, process and host; a disabled integration's hint is
how to turn it back on, never the retry its last sync promised."""

from __future__ import annotations

import socket

from tests.httpsources import gated, json_body


def test_a_running_sync_shows_in_list_and_show_with_its_start_pid_and_host(cli, spawn, source):
    release = source.gate()
    url = source.add("/slow", gated(json_body([{"id": 1}]), release))
    assert cli("add", "slow", "--url", url, "--interval", "1h").returncode == 0
    syncing = spawn("sync", "slow")
    try:
        source.wait_hits("/slow")
        [listed] = cli("list", "--json").json()
        shown = cli("show", "slow", "--json").json()
        text = cli("show", "slow").stdout
    finally:
        release.set()
    assert syncing.wait(120) == 0

    assert listed["last_status"] == "RUNNING", "a sync in progress must be visible in list --json"
    assert listed["last_sync_at"] == shown["running"]["started_at"], "last_sync_at is when the running sync started"
    assert shown["running"]["pid"] == syncing.pid
    assert shown["running"]["host"] == socket.gethostname()
    assert f"by pid {syncing.pid} on {socket.gethostname()}" in text, text
    [after] = cli("list", "--json").json()
    assert after["last_status"] == "SUCCESS", "once finished, the outcome replaces RUNNING"
    assert cli("show", "slow", "--json").json()["running"] is None


def test_a_disabled_integration_gives_the_resume_hint_everywhere_never_the_retry(cli, source):
    url = source.add("/down", json_body({"error": "maintenance"}, status=503))
    assert cli("add", "down", "--url", url, "--interval", "15m", "--max-retries", "0").returncode == 0
    tick = cli("run-due")  # a 503: "a remote fault; syncctl will retry", but this attempt disables it
    assert tick.returncode == 1
    assert "will retry" not in tick.stderr, "the tick that disables it must not promise a retry"
    assert tick.stderr.count("(hint: a remote fault; then run: syncctl resume down)") == 2, tick.stderr

    [listed] = cli("list", "--json").json()
    shown = cli("show", "down", "--json").json()
    health = cli("health", "--json").json()
    [problem] = [p for p in health["problems"] if p["integration"] == "down"]

    assert listed["state"] == "disabled"
    assert listed["next_sync_at"] is None and shown["next_sync_at"] is None, "no next sync, as list shows '-'"
    assert listed["last_hint"] == "a remote fault; then run: syncctl resume down", listed
    assert shown["last_hint"] == listed["last_hint"]
    assert problem["kind"] == "disabled"
    assert problem["hint"] == listed["last_hint"]
    assert "will retry" not in cli("list").stdout
    history = cli("history", "down", "--json").json()
    assert history[0]["error_hint"] == "a remote fault; syncctl will retry", "the log keeps what was true then"

    assert cli("resume", "down").returncode == 0
    [resumed] = cli("list", "--json").json()
    assert resumed["next_sync_at"] is not None, "active again: its next sync is known"
    assert cli("pause", "down").returncode == 0
    assert cli("list", "--json").json()[0]["next_sync_at"] is None, "paused: none either"
    assert cli("resume", "down").returncode == 0
    assert "syncctl resume" not in (resumed["last_hint"] or ""), "an active integration is not told to resume"


def test_an_integration_disabled_by_crash_recovery_is_not_promised_a_retry(cli, spawn, source):
    import signal

    from tests.helpers import HANG_GUARD
    from tests.httpsources import hang

    assert cli("add", "k", "--url", source.add("/slow", hang()), "--interval", "5m", "--max-retries", "0").returncode == 0
    run = spawn("run-due")
    source.wait_hits("/slow")
    run.send_signal(signal.SIGKILL)  # the machine "restarted" mid-sync
    run.wait(HANG_GUARD)

    [listed] = cli("list", "--json").json()  # recovery finishes the log: the one allowed failure

    assert listed["state"] == "disabled", listed
    assert listed["last_hint"].startswith("nothing to fix if the machine restarted"), listed
    assert listed["last_hint"].endswith("; then run: syncctl resume k") and "retr" not in listed["last_hint"], listed
