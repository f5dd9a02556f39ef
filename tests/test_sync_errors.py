"""Every class of sync failure ends in one FAILED log with a one-line message and a hint
that says what to fix (spec §7), and no secret ever leaks: not in stdout, stderr, the
database or its WAL, whatever the failure."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest

from tests.helpers import add, stored
from tests.httpsources import (
    HTTPSource,
    closed_port,
    echo,
    hang,
    huge_body,
    json_body,
    raw_body,
    self_signed_context,
    send,
    text_body,
)


def failed_sync(cli, name: str, env: dict | None = None) -> tuple[str, dict]:
    """Run ``syncctl sync NAME`` expecting one failure; returns its stderr line and log row."""
    result = cli("sync", name, env=env)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    rows = logs_of(cli, name)
    assert [r["status"] for r in rows] == ["FAILED"]
    row = rows[0]
    assert row["error_message"] and row["error_hint"]
    assert row["completed_at"] and row["duration_ms"] is not None and row["trigger"] == "manual"
    # What the admin sees on stderr is what the log keeps.
    assert row["error_message"] in lines[0] and f"(hint: {row['error_hint']})" in lines[0]
    return lines[0], row


def logs_of(cli, name: str) -> list[dict]:
    return cli("history", name, "--json").json()


# -- transport failures --------------------------------------------------------------------------


def test_dns_failure(cli, store):
    add(store, "dns", "http://nonexistent.invalid/v1/items")

    line, row = failed_sync(cli, "dns")

    assert "cannot resolve host nonexistent.invalid" in row["error_message"]
    assert "DNS" in row["error_hint"] and "host name" in row["error_hint"]


def test_connection_refused(cli, store):
    port = closed_port()
    add(store, "refused", f"http://127.0.0.1:{port}/items")

    line, row = failed_sync(cli, "refused")

    assert f"connection refused by 127.0.0.1:{port}" in row["error_message"]
    assert "running" in row["error_hint"] and "port" in row["error_hint"]


def test_tls_to_a_plain_http_server_fails_verification(cli, store):
    with HTTPSource() as source:
        source.add("/items", raw_body(b"[]"))
        add(store, "plain", f"https://127.0.0.1:{source.port}/items")
        line, row = failed_sync(cli, "plain")

    assert "TLS" in row["error_message"] and "127.0.0.1" in row["error_message"]
    assert "REQUESTS_CA_BUNDLE" in row["error_hint"]


def test_tls_self_signed_fails_and_requests_ca_bundle_is_honoured(cli, store, tmp_path, db_path):
    with HTTPSource(ssl_context=self_signed_context(tmp_path)) as server:
        url = server.add("/items", json_body([{"id": 1}]))
        assert url.startswith("https://127.0.0.1:")
        add(store, "selfsigned", url)

        line, row = failed_sync(cli, "selfsigned")
        assert row["error_message"] == "TLS verification failed for 127.0.0.1"
        assert "certificate" in row["error_hint"] and "REQUESTS_CA_BUNDLE" in row["error_hint"]
        assert stored(db_path, "selfsigned") == {}

        trusted = cli("sync", "selfsigned", env={"REQUESTS_CA_BUNDLE": str(tmp_path / "cert.pem")})
        assert trusted.returncode == 0, trusted.stderr
        assert stored(db_path, "selfsigned") == {"1": {"id": 1}}


def _proxy_env(proxy: str, no_proxy: str) -> dict[str, str]:
    return {"http_proxy": proxy, "HTTP_PROXY": proxy, "no_proxy": no_proxy, "NO_PROXY": no_proxy,
            "all_proxy": "", "ALL_PROXY": ""}  # fmt: skip


def test_the_environments_proxy_is_used_except_where_no_proxy_says(cli, store, source, db_path):
    # The proxy is a test server: it sees the absolute URL a client asks a proxy for.
    source.add("/items", json_body([{"id": 1}]))
    add(store, "far", "http://api.example.invalid/items")
    with HTTPSource() as direct:
        add(store, "near", direct.add("/items", json_body([{"id": 2}])))

        proxied = cli("sync", "far", env=_proxy_env(f"http://127.0.0.1:{source.port}", ""))
        # Nothing listens on port 9: "near" syncs only because NO_PROXY sends it direct.
        bypassed = cli("sync", "near", env=_proxy_env("http://127.0.0.1:9", "127.0.0.1"))

        assert proxied.returncode == 0, proxied.stderr
        assert source.requests[-1][1] == "http://api.example.invalid/items"
        assert stored(db_path, "far") == {"1": {"id": 1}}
        assert bypassed.returncode == 0, bypassed.stderr
        assert direct.hits["/items"] == 1 and stored(db_path, "near") == {"2": {"id": 2}}


def test_timeout(cli, store):
    with HTTPSource() as source:
        url = source.add("/slow", hang(30))
        add(store, "slow", url, "--timeout", "1")
        line, row = failed_sync(cli, "slow")
        tries = source.hits["/slow"]

    assert "timed out waiting for 127.0.0.1 (after 1 s)" in row["error_message"]
    assert "--timeout" in row["error_hint"]
    assert tries == 3  # a timeout is transient: retried within the sync
    assert "gave up after 3 tries" in row["error_message"]


# -- HTTP status failures ------------------------------------------------------------------------


def test_401_names_the_variables_holding_the_credentials(cli, store, source):
    source.add("/private", text_body("no", status=401))
    add(store, "private", source.url("/private"),
        "--header", "Authorization: Bearer ${CRM_TOKEN}", "--param", "account=${CRM_ACCOUNT}")

    line, row = failed_sync(cli, "private", env={"CRM_TOKEN": "tok-401-abc", "CRM_ACCOUNT": "acct-77"})

    assert "HTTP 401" in row["error_message"] and "credentials" in row["error_message"]
    assert "${CRM_TOKEN}" in row["error_hint"] and "${CRM_ACCOUNT}" in row["error_hint"]
    assert len(source.requests) == 1


def test_403_without_credentials_suggests_adding_them(cli, store, source):
    source.add("/private", text_body("forbidden", status=403))
    add(store, "anon", source.url("/private"))

    line, row = failed_sync(cli, "anon")

    assert "HTTP 403" in row["error_message"]
    assert "--header" in row["error_hint"] and "${" in row["error_hint"]


def test_404_names_the_path(cli, store, source):
    source.add("/v1/missing", text_body("not here", status=404))
    add(store, "missing", source.url("/v1/missing"), "--param", "page_size=10")

    line, row = failed_sync(cli, "missing")

    assert "HTTP 404" in row["error_message"]
    assert "/v1/missing" in row["error_hint"] and "path" in row["error_hint"]
    assert "page_size" not in line  # the query string is not part of the path shown
    listed = cli("list", "--json").json()[0]
    assert (listed["last_status"], listed["last_error"], listed["last_hint"]) == (
        "FAILED", row["error_message"], row["error_hint"],
    )


def test_an_ipv6_url_is_shown_as_a_url(cli, store):
    try:
        server = HTTPSource(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server:
        server.add("/v1/missing", text_body("not here", status=404))
        add(store, "six", f"http://[::1]:{server.port}/v1/missing")
        line, row = failed_sync(cli, "six")

    assert f"http://[::1]:{server.port}/v1/missing" in row["error_message"]
    assert "/v1/missing" in row["error_hint"]


def test_429_is_a_rate_limit(cli, store, source):
    # A Retry-After past the 60 s budget ends the sync at once (no backoff sleeps here).
    source.add("/busy", text_body("slow down", status=429, headers={"Retry-After": "120"}))
    add(store, "limited", source.url("/busy"))

    line, row = failed_sync(cli, "limited")

    assert "HTTP 429" in row["error_message"] and "rate limited" in row["error_message"]
    assert "120 s" in row["error_message"]
    assert "--rate-limit" in row["error_hint"]


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_a_remote_fault(cli, store, source, status):
    headers = {"Retry-After": "3600"} if status == 503 else None  # keep the 503 case free of sleeps
    source.add("/down", text_body("oops", status=status, headers=headers))
    add(store, "down", source.url("/down"))

    line, row = failed_sync(cli, "down")

    assert f"HTTP {status}" in row["error_message"] and "the source failed" in row["error_message"]
    assert "remote fault" in row["error_hint"]
    assert len(source.requests) == 1


def test_5xx_retried_then_given_up_says_so(cli, store, source):
    source.add("/gateway", text_body("bad gateway", status=502))
    add(store, "gateway", source.url("/gateway"))

    line, row = failed_sync(cli, "gateway")

    assert len(source.requests) == 3
    assert "HTTP 502" in row["error_message"] and "gave up after 3 tries" in row["error_message"]


# -- body failures -------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/json"])
def test_non_json_body_shows_the_content_type_and_first_bytes(cli, store, source,
                                                              content_type):
    # Also an HTML page labelled JSON, as a proxy or a login wall in front of an API sends.
    page = "<!DOCTYPE html><html><head><title>Sign in</title></head><body>" + "x" * 5000 + "</body></html>"
    source.add("/login", raw_body(page.encode(), content_type=content_type))
    add(store, "html", source.url("/login"))

    line, row = failed_sync(cli, "html")

    assert content_type in row["error_message"]
    assert "<!DOCTYPE html><html>" in row["error_message"]
    assert len(line) < 400  # the first bytes, not the whole page
    assert "web page" in row["error_hint"] or "login" in row["error_hint"]


def test_truncated_json(cli, store, source):
    source.add("/cut", raw_body(b'[{"id": 1}, {"id": 2, "name": "Bo', content_type="application/json"))
    add(store, "cut", source.url("/cut"))

    line, row = failed_sync(cli, "cut")

    assert "invalid JSON" in row["error_message"] and "application/json" in row["error_message"]
    assert "cut short" in row["error_hint"] or "malformed" in row["error_hint"]


@pytest.mark.parametrize(
    ("path", "shown"),
    [("data.items", "'data' the keys are: rows, cursor"), ("results", "top-level keys: data, meta")],
)
def test_records_path_not_found_lists_the_keys_that_exist(cli, store, source, path, shown):
    source.add("/nested", json_body(
        {"data": {"rows": [{"id": 1}], "cursor": None}, "meta": {"total": 1}}
    ))
    add(store, "nested", source.url("/nested"), "--records-path", path)

    line, row = failed_sync(cli, "nested")

    assert repr(path) in row["error_message"] and shown in row["error_message"]
    assert "--records-path" in row["error_hint"]


@pytest.mark.parametrize("where", ["header", "param", "url"])
def test_missing_environment_variable_sends_no_request(cli, store, source, where):
    source.add("/x", json_body([{"id": 1}]))
    url = source.url("/x")
    options = {
        "header": ["--header", "Authorization: Bearer ${NOT_SET_TOKEN}"],
        "param": ["--param", "api_key=${NOT_SET_TOKEN}"],
        "url": [],
    }[where]
    if where == "url":
        url = url.replace("/x", "/x/${NOT_SET_TOKEN}")
    add(store, "noenv", url, *options)

    line, row = failed_sync(cli, "noenv")

    assert "NOT_SET_TOKEN" in row["error_message"] and "not set" in row["error_message"]
    assert "export NOT_SET_TOKEN" in row["error_hint"] and "no request was sent" in row["error_hint"]
    assert source.requests == []


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "streamed"])
def test_a_page_over_64_mib_fails_with_a_hint(cli, store, db_path, declare_length):
    with HTTPSource() as source:
        url = source.add("/huge", huge_body(declare_length=declare_length))
        add(store, "huge", url)
        line, row = failed_sync(cli, "huge")

    assert "exceeds 64 MiB" in row["error_message"]
    assert "--paginate" in row["error_hint"]
    assert stored(db_path, "huge") == {}


# -- the secret canary ---------------------------------------------------------------------------

# Characters that URL encoding changes, so the canary also catches a leak of its encoded form.
TOKEN = "cAnAry-5ecret/Tok+en=42"
FORMS = {TOKEN, urllib.parse.quote(TOKEN, safe=""), urllib.parse.quote_plus(TOKEN), TOKEN[:12]}


def assert_no_secret(*texts: str, files: list[Path] = ()) -> None:
    for text in texts:
        for form in FORMS:
            assert form not in text, f"secret {form!r} leaked in output: {text!r}"
    for path in files:
        data = path.read_bytes()
        for form in FORMS:
            assert form.encode() not in data, f"secret {form!r} leaked in {path.name}"


def database_files(db_path: Path) -> list[Path]:
    files = sorted(db_path.parent.glob(db_path.name + "*"))
    assert db_path in files
    return files


def echo_at_the_preview_edge(handler) -> None:
    """An HTML error page that echoes the token so that it straddles the first bytes a
    message shows: redacting only after cutting the preview would leak half of it."""
    token = handler.headers["Authorization"].removeprefix("Bearer ")
    body = ("<p>" + "." * 40 + token + " was refused</p>").encode()
    send(handler, 200, body, "text/html")


CANARY_FAILURES = ["success", "401", "500", "refused", "html-echo", "text-echo", "preview-edge", "404-echo"]


def test_the_secret_never_leaks_whatever_the_failure(cli, store, db_path):
    env = {"CANARY_TOKEN": TOKEN}
    with HTTPSource() as source:
        behaviours = {
            "success": raw_body(b'[{"id": 1}]'),
            "401": raw_body(b"unauthorized", 401, "text/plain"),
            "500": raw_body(b"boom", 500, "text/plain"),
            "html-echo": echo(200, "text/html"),
            "text-echo": echo(200, "text/plain"),
            "preview-edge": echo_at_the_preview_edge,
            "404-echo": echo(404, "text/plain"),
        }
        for name in CANARY_FAILURES:
            if name == "refused":
                url = f"http://127.0.0.1:{closed_port()}/items"
            else:
                url = source.add(f"/{name}", behaviours[name])
            add(store, name, url, "--header", "Authorization: Bearer ${CANARY_TOKEN}",
                "--param", "api_key=${CANARY_TOKEN}")

        result = cli("sync", "--all", env=env)

        assert len(source.requests) == len(CANARY_FAILURES) - 1
        for _, target, headers in source.requests:  # the real value did go to the source
            assert {k.lower(): v for k, v in headers.items()}["authorization"] == f"Bearer {TOKEN}"
            assert ("api_key", TOKEN) in urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query)

    assert result.returncode == 1 and "Traceback" not in result.stderr
    shown = [cli(*args, env=env) for args in (("list",), ("history", "--json"), ("show", "html-echo", "--json"))]
    statuses = {log["integration"]: log["status"] for log in json.loads(shown[1].stdout)}
    assert statuses == {name: "SUCCESS" if name == "success" else "FAILED" for name in CANARY_FAILURES}
    assert_no_secret(
        result.stdout, result.stderr, *(r.stdout + r.stderr for r in shown), files=database_files(db_path)
    )
    for log in json.loads(shown[1].stdout):
        if log["integration"] in ("html-echo", "text-echo", "preview-edge"):
            assert "***" in log["error_message"]  # redacted, not silently dropped


# -- what a source writes never drives the operator's terminal ---------------------------------


@pytest.mark.parametrize("how", ["4xx body", "graphql errors"])
def test_control_characters_a_source_sends_never_reach_the_terminal_raw(cli, store, source, how):
    hostile = "\x1b[2J\x1b[31mall is lost\x07\x00" + "A" * 5000
    if how == "4xx body":
        source.add("/x", text_body(hostile, 400))
        add(store, "hostile", source.url("/x"))
    else:
        source.add("/x", json_body({"data": None, "errors": [{"message": hostile}]}))
        assert cli("add", "hostile", "--url", source.url("/x"), "--body", '{"query": "{ x }"}').returncode == 0

    line, row = failed_sync(cli, "hostile")

    assert "all is lost" in line, line
    for text in (line, row["error_message"]):
        assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in text), repr(text[:80])
    assert len(line) < 1000, "a source's text is cut, not a 5,000-character line"
    listed = cli("history", "hostile")
    assert "\x1b" not in listed.stdout + listed.stderr
