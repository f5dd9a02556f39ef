"""Managing integrations as an admin does over SSH (spec §5): add, remove, list, show,
set-interval, pause, resume; names, URLs, secrets; help, version, errors and colour."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncctl import __version__
from syncctl.cli import app
from syncctl.store import Store
from tests.helpers import dump, parse_z, query, run_main, run_on_terminal, utc_ms

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ANSI = re.compile(r"\x1b\[")
LIST_KEYS = {
    "name", "url", "state", "interval_seconds", "sync_enabled", "next_sync_at", "last_sync_at",
    "last_status", "consecutive_failures", "records_count", "last_error", "last_hint", "stale", "last_success_at",
}  # fmt: skip
URL = "https://api.example.com/v1/items"


def one_error_line(result) -> str:  # noqa: ANN001
    """The refusal a user sees: exit 2, one line on stderr, no traceback, no stdout."""
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("syncctl: ")
    return lines[0]


def execute(db_path: Path, sql: str, params: tuple = ()) -> None:
    """Change the database behind syncctl's back, as an admin with sqlite3 might."""
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            conn.execute(sql, params)
    finally:
        conn.close()


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def integration(db_path: Path, name: str) -> dict:
    rows = query(db_path, "SELECT * FROM integrations WHERE name = ?", (name,))
    assert rows, f"{name} is not stored"
    return rows[0]


def add_log(db_path: Path, name: str, *, status: str = "SUCCESS", minutes_ago: int = 5, error=None) -> None:  # noqa: ANN001
    started = utc_ms() - timedelta(minutes=minutes_ago)
    execute(
        db_path,
        "INSERT INTO sync_logs (integration_id, trigger, status, attempt, started_at, completed_at,"
        " duration_ms, records_count, error_message) SELECT id, 'schedule', ?, 1, ?, ?, 1000, 2, ?"
        " FROM integrations WHERE name = ?",
        (status, stamp(started), stamp(started + timedelta(seconds=1)), error, name),
    )


def add_record(db_path: Path, name: str, key: str) -> None:
    execute(
        db_path,
        "INSERT INTO records (integration_id, key, data, synced_at) SELECT id, ?, ?, ? FROM integrations"
        " WHERE name = ?",
        (key, json.dumps({"id": key}), stamp(utc_ms()), name),
    )


@pytest.fixture
def three(cli, db_path) -> Path:
    """alpha (15m), beta (1h), gamma (manual)."""
    for name, interval in (("alpha", "15m"), ("beta", "1h"), ("gamma", "manual")):
        result = cli("add", name, "--url", f"{URL}/{name}", "--interval", interval)
        assert result.returncode == 0, result.stderr
    return db_path


# -- add ---------------------------------------------------------------------------------


def test_add_stores_every_option_in_config(cli, db_path):
    result = cli(
        "add", "crm-contacts", "--url", URL, "--interval", "30m",
        "--header", "Accept: application/json", "-H", "Authorization: Bearer ${CRM_TOKEN}",
        "--param", "limit=100", "--param", "fields=a", "-p", "fields=b", "--param", "api_key=${CRM_KEY}",
        "--records-path", "data.items", "--key", "contact.id", "--paginate", "cursor:meta.next:after",
        "--max-pages", "50", "--timeout", "12.5", "--rate-limit", "100/m", "--max-retries", "5",
        env={"CRM_TOKEN": "tok-should-not-appear", "CRM_KEY": "key-should-not-appear"},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "crm-contacts" in result.stdout
    row = integration(db_path, "crm-contacts")
    assert (row["url"], row["sync_interval"], row["sync_enabled"], row["consecutive_failures"]) == (
        URL, 1800, 1, 0,
    )  # fmt: skip
    for column in ("next_sync_at", "created_at"):
        assert TIMESTAMP.match(row[column]), column
    assert row["last_sync_at"] is None
    config = json.loads(row["config"])
    assert config["headers"] == {"Accept": "application/json", "Authorization": "Bearer ${CRM_TOKEN}"}
    assert config["params"] == {"limit": "100", "fields": ["a", "b"], "api_key": "${CRM_KEY}"}
    assert config["records_path"] == "data.items"
    assert config["key"] == "contact.id"
    assert config["paginate"] == "cursor:meta.next:after"
    assert config["max_pages"] == 50
    assert config["timeout"] == 12.5
    assert config["rate_limit"]["per_second"] == pytest.approx(100 / 60)
    assert config["max_retries"] == 5
    assert "should-not-appear" not in dump(db_path)


def test_add_defaults(cli, db_path):
    assert cli("add", "weather", "--url", URL).returncode == 0
    config = json.loads(integration(db_path, "weather")["config"])
    assert config["headers"] == {} and config["params"] == {}
    assert config["paginate"] == "none"
    assert config["max_pages"] == 1000
    assert config["timeout"] == 30
    assert config["max_retries"] == 3
    assert config["rate_limit"] is None
    assert config.get("key") in (None, "id")


@pytest.mark.parametrize(
    "mode", ["none", "link", "next-url:links.next", "cursor:meta.cursor:cursor", "page:p"]
)
def test_add_accepts_every_pagination_mode(mode, db_path):
    result = run_main(db_path, "add", "paged", "--url", URL, "--paginate", mode)
    assert result.returncode == 0, result.stderr
    assert json.loads(integration(db_path, "paged")["config"])["paginate"] == mode


@pytest.mark.parametrize(
    ("rate", "per_second"), [("5/s", 5), ("100/m", 100 / 60), ("3600/h", 1), ("0.5/s", 0.5)]
)
def test_add_accepts_rate_limits(rate, per_second, db_path):
    result = run_main(db_path, "add", "rated", "--url", URL, "--rate-limit", rate)
    assert result.returncode == 0, result.stderr
    config = json.loads(integration(db_path, "rated")["config"])
    assert config["rate_limit"]["per_second"] == pytest.approx(per_second)


BAD_OPTIONS = [
    ["--header", "NoColon"],
    ["--header", "Bad Name: x"],
    ["--header", ": value"],
    ["--header", "X-Token-Ref: ${lower-case}"],
    ["--header", "X-Thing: ${UNCLOSED"],
    ["--param", "novalue"],
    ["--param", "=x"],
    ["--records-path", ""],
    ["--records-path", "data..items"],
    ["--records-path", ".data"],
    ["--key", ""],
    ["--key", "id."],
    ["--paginate", "bogus"],
    ["--paginate", "cursor:only-path"],
    ["--paginate", "page:"],
    ["--paginate", "next-url"],
    ["--paginate", "link:x"],
    ["--max-pages=0"],
    ["--max-pages=-1"],
    ["--max-pages", "abc"],
    ["--max-pages", "1000001"],
    ["--timeout=0"],
    ["--timeout=-1"],
    ["--timeout", "3601"],
    ["--timeout", "nan"],
    ["--timeout", "inf"],
    ["--timeout", "soon"],
    ["--rate-limit", "10"],
    ["--rate-limit", "10/x"],
    ["--rate-limit", "1/d"],
    ["--rate-limit", "0/s"],
    ["--rate-limit=-1/s"],
    ["--rate-limit", "fast"],
    ["--max-retries=-1"],
    ["--max-retries", "101"],
    ["--max-retries", "x"],
    ["--interval", "30s"],
]


def test_add_refuses_each_bad_option_with_one_line_and_stores_nothing(cli, db_path):
    Store.open(db_path).close()  # the database exists, empty
    before = dump(db_path)
    for bad in BAD_OPTIONS:  # in-process: ~40 cases
        result = run_main(db_path, "add", "feed", "--url", URL, *bad)
        line = one_error_line(result)
        assert result.stdout == "", bad
        option = bad[0].split("=")[0].lstrip("-")
        assert option.split("-")[0] in line.lower(), f"the refusal of {bad} must name the option: {line}"
        assert dump(db_path) == before, bad


@pytest.mark.parametrize("bad", [["--paginate", "bogus"], ["--rate-limit", "10"], ["--max-pages", "abc"]])
def test_add_refuses_bad_options_as_a_process(cli, db_path, bad):
    result = cli("add", "feed", "--url", URL, *bad)
    one_error_line(result)
    assert not db_path.exists() or query(db_path, "SELECT * FROM integrations") == []


# -- names and URLs ----------------------------------------------------------------------


GOOD_NAMES = ["a", "0", "weather", "crm-contacts", "billing.v2", "a_b", "9lives", "x" * 64]
BAD_NAMES = ["A", "Weather", "-a", ".a", "_a", "a b", "x" * 65, "wéather", "a/b", "a:b", "", "a\nb"]


def test_name_slug_rules(db_path):
    for name in GOOD_NAMES:
        result = run_main(db_path, "add", name, "--url", URL)
        assert result.returncode == 0, (name, result.stderr)
    before = dump(db_path)
    for name in BAD_NAMES:
        line = one_error_line(run_main(db_path, "add", "--url", URL, "--", name))
        assert "name" in line, line
        assert dump(db_path) == before, name
    assert sorted(r["name"] for r in query(db_path, "SELECT name FROM integrations")) == sorted(GOOD_NAMES)


ARG_TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=25)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=ARG_TEXT | st.from_regex(r"[a-z0-9][a-z0-9._-]{0,10}", fullmatch=True),
    url=ARG_TEXT | st.builds("https://h.example/{}".format, ARG_TEXT),
    option=st.sampled_from(["--header", "--param", "--records-path", "--key", "--paginate", "--rate-limit",
                            "--timeout", "--max-pages", "--max-retries", "--interval"]),
    value=ARG_TEXT,
)  # fmt: skip
def test_random_arguments_to_add_exit_0_or_2_with_one_line(db_path, name, url, option, value):
    result = run_main(db_path, "add", f"--url={url}", f"{option}={value}", "--", name)
    if result.returncode == 0:
        assert integration(db_path, name)["url"] == url
        run_main(db_path, "remove", "--yes", "--", name)
    else:
        one_error_line(result)


def test_bad_name_as_a_process(cli, db_path):
    line = one_error_line(cli("add", "Weather", "--url", URL))
    assert "Weather" in line and "lowercase" in line


GOOD_URLS = [
    "http://example.com",
    "https://api.example.com/v1/items?limit=10",
    "http://127.0.0.1:8080/x",
    "https://[::1]:8443/x",
    "https://user:${API_PASSWORD}@api.example.com/x",
    "https://api.example.com/x?token=${API_TOKEN}",
]
BAD_URLS = [
    "ftp://example.com/x",
    "file:///etc/passwd",
    "example.com/x",
    "//example.com/x",
    "http://",
    "https://",
    "http:///path",
    "https://exa mple.com",
    "javascript:alert(1)",
    "http://example.com:99999/",
    "",
    "https://${HOST}/x",
    "https://user:hunter2@api.example.com/x",
    "https://api.example.com/x?access_token=abc123",
    "https://api.example.com/x?api_key=abc123",
]


def test_url_must_be_http_with_a_host(db_path):
    for i, url in enumerate(GOOD_URLS):
        result = run_main(db_path, "add", f"ok{i}", "--url", url)
        assert result.returncode == 0, (url, result.stderr)
        assert integration(db_path, f"ok{i}")["url"] == url  # stored verbatim, references too
    before = dump(db_path)
    for url in BAD_URLS:
        line = one_error_line(run_main(db_path, "add", "bad", f"--url={url}"))
        assert "URL" in line or "${" in line, (url, line)
        assert "abc123" not in line and "hunter2" not in line  # a refused secret is not echoed
        assert dump(db_path) == before, url


def test_bad_url_as_a_process(cli, db_path):
    line = one_error_line(cli("add", "feed", "--url", "ftp://example.com/data"))
    assert "http" in line


def test_duplicate_names_are_refused(cli, db_path):
    assert cli("add", "weather", "--url", URL).returncode == 0
    before = dump(db_path)
    line = one_error_line(cli("add", "weather", "--url", "https://other.example.com/", "--interval", "5m"))
    assert "weather" in line and "exists" in line
    assert dump(db_path) == before


# -- secrets -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    [
        ["--header", "Authorization: Bearer abc123"],
        ["--header", "X-Api-Key: abc123"],
        ["--header", "X-Auth-Token: abc123"],
        ["--header", "Cookie: session=abc"],
        ["--param", "api_key=abc123"],
        ["--param", "token=abc123"],
        ["--param", "client_secret=abc123"],
        ["--param", "password=hunter2"],
    ],
)
def test_literal_secrets_are_refused(option, db_path):
    result = run_main(db_path, "add", "feed", "--url", URL, *option)
    line = one_error_line(result)
    assert "${" in line  # says how to write it instead
    secret = option[1].split(":" if option[0] == "--header" else "=", 1)[1].strip()
    assert secret not in line  # the refusal does not echo the secret
    assert not db_path.exists() or query(db_path, "SELECT * FROM integrations") == []


def test_secret_references_are_stored_and_shown_verbatim_never_expanded(cli, db_path):
    env = {"API_TOKEN": "s3cr3t-token-value", "API_KEY": "s3cr3t-key-value"}
    result = cli(
        "add", "vault", "--url", URL, "--header", "Authorization: Bearer ${API_TOKEN}",
        "--param", "api_key=${API_KEY}", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

    config = json.loads(integration(db_path, "vault")["config"])
    assert config["headers"]["Authorization"] == "Bearer ${API_TOKEN}"
    assert config["params"]["api_key"] == "${API_KEY}"
    shown = cli("show", "vault", "--json", env=env)
    assert shown.json()["config"]["headers"]["Authorization"] == "Bearer ${API_TOKEN}"
    text = cli("show", "vault", env=env)
    assert "${API_TOKEN}" in text.stdout and "${API_KEY}" in text.stdout
    listed = cli("list", env=env)
    for output in (result, shown, text, listed, cli("list", "--json", env=env)):
        assert output.returncode == 0
        assert "s3cr3t" not in output.stdout + output.stderr
    assert "s3cr3t" not in dump(db_path)


# -- remove ------------------------------------------------------------------------------


def test_remove_refuses_without_yes_when_not_a_terminal(cli, three):
    add_log(three, "alpha")
    add_record(three, "alpha", "1")
    before = dump(three)
    line = one_error_line(cli("remove", "alpha"))
    assert "--yes" in line
    assert dump(three) == before


def test_remove_yes_deletes_the_integration_its_logs_and_records(cli, three):
    for name in ("alpha", "beta"):
        add_log(three, name)
        add_log(three, name, status="FAILED", error="boom")
        add_record(three, name, "1")
        add_record(three, name, "2")
    alpha_id = integration(three, "alpha")["id"]

    result = cli("remove", "alpha", "--yes")

    assert result.returncode == 0, result.stderr
    assert "alpha" in result.stdout
    assert [r["name"] for r in query(three, "SELECT name FROM integrations ORDER BY name")] == [
        "beta",
        "gamma",
    ]
    assert query(three, "SELECT * FROM sync_logs WHERE integration_id = ?", (alpha_id,)) == []
    assert query(three, "SELECT * FROM records WHERE integration_id = ?", (alpha_id,)) == []
    assert len(query(three, "SELECT * FROM sync_logs")) == 2  # beta's are kept
    assert len(query(three, "SELECT * FROM records")) == 2
    assert "alpha" not in [i["name"] for i in cli("list", "--json").json()]
    # the name can be used again, and starts from nothing
    assert cli("add", "alpha", "--url", URL).returncode == 0
    assert cli("show", "alpha", "--json").json()["logs"] == []


def test_remove_asks_on_a_terminal(three):
    add_record(three, "alpha", "1")
    code, output = run_on_terminal(three, "remove", "alpha", answer="n")
    assert code != 0
    assert "alpha" in output and "Traceback" not in output
    assert integration(three, "alpha")  # still there

    code, output = run_on_terminal(three, "remove", "alpha", answer="y")
    assert code == 0, output
    assert query(three, "SELECT * FROM integrations WHERE name = 'alpha'") == []
    assert query(three, "SELECT * FROM records") == []


# -- list and show -----------------------------------------------------------------------


def test_list_json_shape_and_every_state(cli, three):
    assert cli("add", "delta", "--url", URL, "--interval", "5m").returncode == 0
    assert cli("pause", "beta").returncode == 0
    failed_at = utc_ms() - timedelta(minutes=3)
    execute(
        three,
        "UPDATE integrations SET sync_enabled = 0, disabled_reason = 'failures', consecutive_failures = 4,"
        " last_status = 'FAILED', last_sync_at = ?, last_error = 'HTTP 401 Unauthorized',"
        " last_hint = 'check ${API_TOKEN}' WHERE name = 'delta'",
        (stamp(failed_at),),
    )
    add_record(three, "alpha", "1")
    add_record(three, "alpha", "2")
    execute(three, "UPDATE integrations SET records_count = 2 WHERE name = 'alpha'")

    result = cli("list", "--json", env={"FORCE_COLOR": "1", "TERM": "xterm-256color"})

    assert result.returncode == 0 and result.stderr == ""
    assert not ANSI.search(result.stdout)
    listed = json.loads(result.stdout)
    assert isinstance(listed, list)
    for item in listed:
        assert set(item) == LIST_KEYS, item
        for key in ("next_sync_at", "last_sync_at"):
            assert item[key] is None or TIMESTAMP.match(item[key]), item
    by_name = {i["name"]: i for i in listed}
    assert sorted(by_name) == ["alpha", "beta", "delta", "gamma"]
    assert {n: i["state"] for n, i in by_name.items()} == {
        "alpha": "active", "beta": "paused", "gamma": "manual", "delta": "disabled",
    }  # fmt: skip
    assert by_name["alpha"]["interval_seconds"] == 900 and by_name["alpha"]["sync_enabled"] is True
    assert by_name["alpha"]["records_count"] == 2
    assert by_name["alpha"]["url"] == f"{URL}/alpha"
    assert by_name["gamma"]["interval_seconds"] is None and by_name["gamma"]["next_sync_at"] is None
    assert by_name["beta"]["sync_enabled"] is False
    delta = by_name["delta"]
    assert (delta["last_status"], delta["consecutive_failures"], delta["last_error"], delta["last_hint"]) == (
        "FAILED", 4, "HTTP 401 Unauthorized", "check ${API_TOKEN}",
    )  # fmt: skip
    assert parse_z(delta["last_sync_at"]) == failed_at
    for name in ("alpha", "beta", "gamma"):
        assert by_name[name]["last_error"] is None and by_name[name]["last_status"] is None

    table = cli("list")
    assert table.returncode == 0 and not ANSI.search(table.stdout + table.stderr)
    lines = {line.split()[0]: line for line in table.stdout.splitlines() if line.strip()}
    assert "active" in lines["alpha"] and "paused" in lines["beta"]
    assert "manual" in lines["gamma"] and "disabled" in lines["delta"]
    assert "HTTP 401" in lines["delta"] and "${API_TOKEN}" in lines["delta"]  # last error and hint


def test_list_on_an_empty_database(cli, store):
    assert cli("list", "--json").json() == []
    result = cli("list")
    assert result.returncode == 0 and "syncctl add" in result.stdout


def test_show_json_and_text(cli, three):
    for minutes in range(12, 0, -1):
        add_log(three, "alpha", minutes_ago=minutes, status="FAILED" if minutes == 1 else "SUCCESS",
                error="HTTP 500" if minutes == 1 else None)  # fmt: skip
    add_log(three, "beta")

    result = cli("show", "alpha", "--json", env={"FORCE_COLOR": "1"})

    assert result.returncode == 0 and result.stderr == ""
    shown = json.loads(result.stdout)
    assert set(shown) >= LIST_KEYS
    assert shown["name"] == "alpha" and shown["interval_seconds"] == 900
    assert TIMESTAMP.match(shown["next_sync_at"])
    logs = shown["logs"]
    assert len(logs) == 10  # the last 10, newest first
    started = [log["started_at"] for log in logs]
    assert started == sorted(started, reverse=True)
    assert logs[0]["status"] == "FAILED" and logs[0]["error_message"] == "HTTP 500"
    assert {log["integration"] for log in logs} == {"alpha"}
    for log in logs:
        assert TIMESTAMP.match(log["started_at"]) and TIMESTAMP.match(log["completed_at"])

    text = cli("show", "alpha")
    assert text.returncode == 0 and not ANSI.search(text.stdout)
    assert "alpha" in text.stdout and f"{URL}/alpha" in text.stdout and "15m" in text.stdout
    assert "HTTP 500" in text.stdout


# -- set-interval, pause, resume ---------------------------------------------------------


def test_set_interval_changes_interval_and_next_sync(cli, three):
    result = cli("set-interval", "gamma", "6h")
    assert result.returncode == 0, result.stderr
    row = integration(three, "gamma")
    assert row["sync_interval"] == 6 * 3600
    assert parse_z(row["next_sync_at"]) <= utc_ms()  # never synced: due now
    result = cli("set-interval", "alpha", "manual")
    assert result.returncode == 0
    row = integration(three, "alpha")
    assert (row["sync_interval"], row["next_sync_at"]) == (None, None)
    assert cli("list", "--json").json()[0]["state"] == "manual"


def test_pause_and_resume_several_names_and_all(cli, three):
    result = cli("pause", "alpha", "beta")
    assert result.returncode == 0, result.stderr
    assert "alpha" in result.stdout and "beta" in result.stdout
    states = {i["name"]: i["state"] for i in cli("list", "--json").json()}
    assert states == {"alpha": "paused", "beta": "paused", "gamma": "manual"}
    assert integration(three, "alpha")["sync_enabled"] == 0

    assert cli("resume", "alpha", "beta").returncode == 0
    assert {i["name"]: i["state"] for i in cli("list", "--json").json()} == {
        "alpha": "active", "beta": "active", "gamma": "manual",
    }  # fmt: skip

    assert cli("pause", "--all").returncode == 0
    rows = query(three, "SELECT name, sync_enabled FROM integrations ORDER BY name")
    assert [r["sync_enabled"] for r in rows] == [0, 0, 0]
    assert cli("resume", "--all").returncode == 0
    assert {i["name"]: i["state"] for i in cli("list", "--json").json()} == {
        "alpha": "active", "beta": "active", "gamma": "manual",
    }  # fmt: skip
    assert integration(three, "gamma")["next_sync_at"] is None  # manual stays manual


def test_pause_and_resume_need_names_or_all(cli, three):
    before = dump(three)
    for args in (["pause"], ["resume"], ["pause", "alpha", "--all"], ["resume", "beta", "--all"]):
        line = one_error_line(cli(*args))
        assert "--all" in line
    assert dump(three) == before


def test_pause_with_one_unknown_name_changes_nothing(cli, three):
    before = dump(three)
    line = one_error_line(cli("pause", "alpha", "betta"))
    assert "'beta'" in line
    assert dump(three) == before


def test_resume_clears_failures_and_is_due_now_when_its_slot_passed(cli, three):
    past = utc_ms() - timedelta(hours=2)
    execute(
        three,
        "UPDATE integrations SET sync_enabled = 0, disabled_reason = 'failures', consecutive_failures = 4,"
        " last_status = 'FAILED', last_error = 'HTTP 503', next_sync_at = ?, slot_at = ? WHERE name = 'alpha'",
        (stamp(past), stamp(past)),
    )
    assert cli("list", "--json").json()[0]["state"] == "disabled"
    before = utc_ms()

    result = cli("resume", "alpha")

    assert result.returncode == 0, result.stderr
    row = integration(three, "alpha")
    assert (row["sync_enabled"], row["consecutive_failures"]) == (1, 0)
    assert before - timedelta(minutes=1) < parse_z(row["next_sync_at"]) <= utc_ms()
    assert cli("list", "--json").json()[0]["state"] == "active"


def test_resume_keeps_a_future_slot(cli, three):
    future = utc_ms().replace(second=0, microsecond=0) + timedelta(minutes=9)
    assert cli("pause", "alpha").returncode == 0
    execute(
        three,
        "UPDATE integrations SET consecutive_failures = 2, next_sync_at = ?, slot_at = ? WHERE name = 'alpha'",
        (stamp(future), stamp(future)),
    )
    result = cli("resume", "alpha")
    assert result.returncode == 0, result.stderr
    row = integration(three, "alpha")
    assert (row["sync_enabled"], row["consecutive_failures"]) == (1, 0)
    assert parse_z(row["next_sync_at"]) == future


# -- unknown names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["show", "alpah"], ["remove", "alpah", "--yes"], ["set-interval", "alpah", "5m"], ["pause", "alpah"],
     ["resume", "alpah"]],
)  # fmt: skip
def test_unknown_names_exit_2_and_suggest_the_closest(cli, three, args):
    before = dump(three)
    line = one_error_line(cli(*args))
    assert "alpah" in line and "'alpha'" in line
    assert dump(three) == before


def test_unknown_name_on_an_empty_database(cli, store):
    line = one_error_line(cli("show", "nothing"))
    assert "nothing" in line


# -- help, version, usage errors, colour -------------------------------------------------


def test_version(cli):
    result = cli("--version")
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, f"syncctl {__version__}", "")


def test_every_command_has_help_with_an_example(tmp_path):
    commands = typer.main.get_command(app).commands
    assert {"add", "remove", "list", "show", "set-interval", "pause", "resume", "sync", "run-due",
            "history", "prune", "demo"} <= set(commands)  # fmt: skip
    for args in ([], *([name] for name in commands)):
        result = run_main(tmp_path / "unused.db", *args, "--help")
        assert result.returncode == 0, (args, result)
        assert "Example" in result.stdout, args
        assert "Usage" in result.stdout, args
    assert not (tmp_path / "unused.db").exists()  # --help touches no database


def test_help_as_a_process(cli):
    result = cli("add", "--help")
    assert result.returncode == 0 and "Example" in result.stdout and "--url" in result.stdout


@pytest.mark.parametrize(
    "args",
    [["add", "x", "--url", URL, "--bogus"], ["add"], ["add", "x"], ["set-interval", "x"], ["bogus-command"],
     ["list", "extra"], ["show"], ["history", "--limit", "many"]],
)  # fmt: skip
def test_usage_errors_are_one_line(cli, db_path, args):
    line = one_error_line(cli(*args))
    assert not db_path.exists()  # nothing was created by the failed command
    assert len(line) < 400


def test_no_arguments_shows_help_not_an_error_line(cli):
    result = cli()
    assert "Traceback" not in result.stderr
    output = result.stdout + result.stderr
    assert "Usage" in output and len(output.splitlines()) > 5  # the help, not squashed into one line


def test_json_is_clean_even_with_force_color(cli, three):
    add_log(three, "alpha", status="FAILED", error="boom")
    env = {"FORCE_COLOR": "1", "TERM": "xterm-256color", "CLICOLOR_FORCE": "1"}
    for args in (["list", "--json"], ["show", "alpha", "--json"], ["history", "--json"]):
        result = cli(*args, env=env)
        assert result.returncode == 0, result.stderr
        assert not ANSI.search(result.stdout), args
        json.loads(result.stdout)  # nothing else on stdout


def test_no_colour_when_not_a_terminal(cli, three):
    add_log(three, "alpha", status="FAILED", error="boom")
    for args in (["list"], ["show", "alpha"], ["history"], ["show", "nope"], ["add", "X", "--url", URL]):
        result = cli(*args)
        assert not ANSI.search(result.stdout + result.stderr), args


def test_colour_on_a_terminal_but_never_with_no_color(three):
    code, coloured = run_on_terminal(three, "list")
    assert code == 0 and "alpha" in coloured
    assert ANSI.search(coloured), coloured
    code, plain = run_on_terminal(three, "list", env={"NO_COLOR": "1"})
    assert code == 0 and "alpha" in plain
    assert not re.search(r"\x1b\[[0-9;]*m", plain), plain


def test_timestamps_everywhere_have_milliseconds_and_z(cli, three):
    for row in query(three, "SELECT next_sync_at, created_at, updated_at FROM integrations"):
        for value in row.values():
            assert value is None or TIMESTAMP.match(value)
    shown = cli("show", "beta", "--json").json()
    assert TIMESTAMP.match(shown["created_at"]) and TIMESTAMP.match(shown["next_sync_at"])
    assert parse_z(shown["created_at"]) <= datetime.now(timezone.utc)
