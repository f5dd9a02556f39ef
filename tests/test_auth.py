"""Authentication and request bodies (spec §16), through the real CLI, the database and
what a STRICT token server saw (tests/oauth_server.py: rotation with reuse detection,
client authentication checked the one configured way, expiry, counts per grant and per
refresh token). Secrets follow §9: no token, client secret or fragment of one anywhere."""

from __future__ import annotations

import base64
import json
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import HANG_GUARD, Result, query, run_syncctl, stored, wait_for
from tests.oauth_server import ApiRequest, OAuthServer

KEY = "test-key-5f1c0e9a7b3d4c2e8f6a1b0c9d8e7f6a5b4c3d2e"  # SYNCCTL_SECRET_KEY (>= 32 characters)
OTHER_KEY = "another-key-0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"
SECRET = "Zq9cl1ent-S3cret-value-77x81"  # the client secret, from ${CS}


@pytest.fixture
def oauth() -> Iterator[Callable[..., OAuthServer]]:
    """Start strict OAuth2 servers with the given options; stopped after the test."""
    servers: list[OAuthServer] = []

    def start(**options) -> OAuthServer:  # noqa: ANN003
        options.setdefault("client_secret", SECRET)
        server = OAuthServer(**options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def add_oauth(cli, name: str, server: OAuthServer, *extra: str, path: str = "/items", refresh: bool = False) -> None:  # noqa: ANN001
    args = ["add", name, "--url", server.url(path), "--auth", "oauth2", "--token-url", server.token_url,
            "--client-id", server.client_id, "--client-secret", "${CS}"]  # fmt: skip
    if refresh:
        args += ["--refresh-token", "${RT}"]
    added = cli(*args, *extra)
    assert added.returncode == 0, f"add failed: {added.stderr}"


def env_of(key: str | None = KEY, **more: str) -> dict[str, str]:
    env = {"CS": SECRET, **more}
    if key:
        env["SYNCCTL_SECRET_KEY"] = key
    return env


def logs(cli, name: str) -> list[dict]:  # noqa: ANN001
    result = cli("history", name, "--json")
    assert result.returncode == 0, f"history failed: {result.stderr}"
    return result.json()


def fragments(secret: str) -> set[str]:
    return {secret, secret[:8], secret[-8:]}


def leaks(secrets: set[str], texts: dict[str, str], db_path: Path | None) -> list[tuple[str, str]]:
    """Where any secret, or its first or last 8 characters, shows: in ``texts`` or in the raw
    bytes of the database, its -wal, -shm and -journal."""
    forms = {f for s in secrets for f in fragments(s)}
    blobs = {where: text.encode() for where, text in texts.items()}
    if db_path is not None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            path = Path(f"{db_path}{suffix}")
            if path.exists():
                blobs[path.name] = path.read_bytes()
    return sorted((where, form) for where, blob in blobs.items() for form in forms if form.encode() in blob)


@contextmanager
def wal_kept(db_path: Path) -> Iterator[None]:
    """A read transaction held open: no checkpoint moves past it, every frame stays in -wal."""
    reader = sqlite3.connect(db_path)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM integrations").fetchone()
        yield
    finally:
        reader.close()


# -- HTTP Basic ----------------------------------------------------------------------------------


def test_basic_sends_rfc7617_credentials_and_a_password_may_hold_colons(cli, db_path, oauth):
    password = "s3:cr:et-pässword"  # colons and non-ASCII: UTF-8, split at the first colon
    server = oauth(basic_password=password)
    assert cli("add", "b", "--url", server.url("/basic"), "--auth", "basic:alice:${PW}").returncode == 0

    result = cli("sync", "b", env={"PW": password})

    assert result.returncode == 0, f"sync failed: {result.stderr}"
    assert server.basic_seen == [("alice", password)], "the server must decode exactly alice and the password"
    assert len(stored(db_path, "b")) == 3, "the records behind Basic must be stored"
    assert leaks({password}, {"stdout": result.stdout, "stderr": result.stderr}, db_path) == []


def test_basic_user_may_be_a_variable_too(cli, oauth):
    server = oauth(basic_password="pw-with-value-123")
    assert cli("add", "b", "--url", server.url("/basic"), "--auth", "basic:${USR}:${PW}").returncode == 0

    result = cli("sync", "b", env={"USR": "alice", "PW": "pw-with-value-123"})

    assert result.returncode == 0, f"sync failed: {result.stderr}"
    assert server.basic_seen == [("alice", "pw-with-value-123")], "USER from ${USR} must reach the server"


def test_basic_with_a_literal_password_is_refused_and_nothing_is_stored(cli, db_path, oauth):
    server = oauth()

    result = cli("add", "b", "--url", server.url("/basic"), "--auth", "basic:alice:hunter2-literal")

    assert result.returncode == 2, f"a literal password must be a usage error: {result.stderr}"
    assert "${" in result.stderr, "the hint must show the ${VAR} form"
    assert "hunter2-literal" not in result.stdout + result.stderr, "the written-out password must not be repeated"
    names = query(db_path, "SELECT name FROM integrations") if db_path.exists() else []
    assert names == [], "nothing may be stored"


def netrc_for(tmp_path: Path, host: str, login: str, password: str) -> dict[str, str]:
    """An environment whose ~/.netrc (NETRC) holds a login for ``host``."""
    path = tmp_path / "netrc"
    path.write_text(f"machine {host} login {login} password {password}\n")
    path.chmod(0o600)
    return {"NETRC": str(path)}


def test_a_netrc_login_is_a_fallback_never_over_the_integrations_own_credentials(cli, oauth, tmp_path):
    server = oauth(basic_password="the-right-one")
    netrc = netrc_for(tmp_path, "127.0.0.1", "mallory", "from-netrc")
    assert cli("add", "own", "--url", server.url("/basic"), "--auth", "basic:alice:${PW}").returncode == 0
    assert cli("add", "bare", "--url", server.url("/basic")).returncode == 0

    own = cli("sync", "own", env={"PW": "the-right-one", **netrc})
    bare = cli("sync", "bare", env=netrc)

    assert own.returncode == 0, f"--auth must win over ~/.netrc: {own.stderr}"
    assert bare.returncode == 1, "without --auth the netrc login is sent (and refused by this server)"
    assert server.basic_seen == [("alice", "the-right-one"), ("mallory", "from-netrc")]


# -- OAuth2: client credentials ------------------------------------------------------------------


def test_a_token_is_requested_once_and_reused_across_syncs_and_runs(cli, db_path, oauth):
    server = oauth()
    add_oauth(cli, "o", server)

    results = [cli("sync", "o", env=env_of()) for _ in range(3)]

    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    assert server.grants == {"client_credentials": 1}, "one token request for three runs"
    assert len(set(server.resource_auth)) == 1, "every run must send the same bearer token"
    assert server.resource_auth[0].startswith("Bearer AT-"), "the token goes as Authorization: Bearer"
    [row] = query(db_path, "SELECT access_token, expires_at FROM oauth_tokens")
    assert row["access_token"] and row["access_token"] not in server.issued_access, "stored, but encrypted"


def test_without_the_key_a_token_is_kept_only_for_the_run(cli, db_path, oauth):
    server = oauth()
    add_oauth(cli, "o", server)

    results = [cli("sync", "o", env=env_of(None)) for _ in range(2)]

    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert server.grants == {"client_credentials": 2}, "no key: one token per run"
    rows = query(db_path, "SELECT access_token FROM oauth_tokens WHERE access_token IS NOT NULL")
    assert rows == [], "without SYNCCTL_SECRET_KEY no token may reach the database"


def test_without_expires_in_a_token_lives_one_hour(cli, db_path, oauth):
    from tests.helpers import parse_z, utc_ms

    server = oauth(expires_in=None)
    add_oauth(cli, "o", server)
    before = utc_ms()

    results = [cli("sync", "o", env=env_of()) for _ in range(2)]

    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert server.grants == {"client_credentials": 1}, "a token without expires_in is good for an hour"
    [row] = query(db_path, "SELECT expires_at FROM oauth_tokens")
    lifetime = (parse_z(row["expires_at"]) - before).total_seconds()
    assert 3500 <= lifetime <= 3700, f"expires_at must be about one hour ahead, is {lifetime} s"


@pytest.mark.parametrize("expires_in", [10**14, 1e30, "inf", "1e30", "soon"])
def test_an_absurd_expires_in_is_capped_and_the_rotated_token_kept(cli, db_path, oauth, expires_in):
    from tests.helpers import parse_z, utc_ms

    server = oauth(expires_in=expires_in)
    seed = server.new_refresh_token()
    add_oauth(cli, "o", server, refresh=True)
    before = utc_ms()

    first = cli("sync", "o", env=env_of(RT=seed))

    assert first.returncode == 0, f"an absurd expires_in must not fail the sync: {first.stderr}"
    [row] = query(db_path, "SELECT expires_at FROM oauth_tokens")
    lifetime = (parse_z(row["expires_at"]) - before).total_seconds()
    assert lifetime <= 366 * 24 * 3600 if expires_in != "soon" else 3500 <= lifetime <= 3700, lifetime
    server.reject_bearer = 1  # the next source request refuses the token: a refresh must follow
    second = cli("sync", "o", env=env_of(RT=seed))
    assert second.returncode == 0, second.stderr
    assert server.refresh_uses[seed] == 1, "the seed was used once; the rotated token it returned was kept"
    assert server.grants == {"refresh_token": 2}


def test_a_refresh_answer_without_access_token_still_keeps_its_rotated_refresh_token(cli, db_path, oauth):
    server = oauth()
    seed = server.new_refresh_token()
    add_oauth(cli, "o", server, refresh=True)
    server.drop_access = 1  # the seed is spent and a new refresh token issued, with no access token

    first = cli("sync", "o", env=env_of(RT=seed))

    assert first.returncode == 1 and "without an access_token" in first.stderr, first.stderr
    assert [log["status"] for log in logs(cli, "o")] == ["FAILED"]
    second = cli("sync", "o", env=env_of(RT=seed))
    assert second.returncode == 0, second.stderr
    assert server.refresh_uses[seed] == 1, "the rotated token was kept: the spent seed was never presented again"
    assert server.grants == {"refresh_token": 2} and server.errors["invalid_grant"] == 0
    assert len(stored(db_path, "o")) == len(server.records)


@pytest.mark.parametrize(("expires_in", "requests"), [(59, 2), (120, 1)])
def test_a_token_expiring_within_60_s_is_renewed_first(cli, oauth, expires_in, requests):
    server = oauth(expires_in=expires_in)
    add_oauth(cli, "o", server)

    results = [cli("sync", "o", env=env_of()) for _ in range(2)]

    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert server.grants["client_credentials"] == requests, f"expires_in {expires_in}: {requests} token request(s)"
    assert 401 not in server.resource_status, "a token about to expire is renewed before it is sent"


def test_a_401_gets_exactly_one_new_token_and_one_retry(cli, db_path, oauth):
    server = oauth()
    add_oauth(cli, "o", server)
    assert cli("sync", "o", env=env_of()).returncode == 0
    server.expire_access_tokens()  # the server's clock disagrees with expires_in

    result = cli("sync", "o", env=env_of())

    assert result.returncode == 0, f"sync after a 401 failed: {result.stderr}"
    assert server.grants["client_credentials"] == 2, "one new token after the 401"
    assert server.resource_status == [200, 401, 200], "one retry after the 401, with the new token"
    assert server.resource_auth[1] != server.resource_auth[2], "the retry carries the new token"
    assert [log["status"] for log in logs(cli, "o")] == ["SUCCESS", "SUCCESS"]


def test_a_second_401_fails_the_sync_with_the_credentials_hint(cli, oauth):
    server = oauth()
    add_oauth(cli, "o", server)
    server.reject_always = True

    result = cli("sync", "o", env=env_of())

    assert result.returncode == 1, "a second 401 fails the sync"
    assert server.resource_status == [401, 401], "exactly one retry"
    assert server.grants["client_credentials"] == 2, "one token, then one new token after the 401"
    assert "401" in result.stderr and "${CS}" in result.stderr, f"the hint names the credentials: {result.stderr}"
    assert leaks(server.secrets(), {"stderr": result.stderr}, None) == []
    [log] = logs(cli, "o")
    assert log["status"] == "FAILED" and "${CS}" in log["error_hint"], log


def test_client_auth_basic_form_encodes_id_and_secret_before_base64(cli, oauth):
    secret = "s3cr+t/=:x%20y&z-long"  # RFC 6749 §2.3.1: form-encoded, then base64
    server = oauth(client_id="my client:1", client_secret=secret)
    add_oauth(cli, "o", server)

    result = cli("sync", "o", env={**env_of(), "CS": secret})

    assert result.returncode == 0, f"strict Basic client authentication failed: {result.stderr}"
    [request] = server.token_requests
    assert request.basic == ("my client:1", secret), "the server must decode the exact id and secret"
    assert "client_secret" not in request.form, "Basic: the secret is not also in the body"


def test_client_auth_body_sends_the_credentials_in_the_form(cli, oauth):
    server = oauth(client_auth="body")
    add_oauth(cli, "o", server, "--client-auth", "body")

    result = cli("sync", "o", env=env_of())

    assert result.returncode == 0, f"body client authentication failed: {result.stderr}"
    [request] = server.token_requests
    assert request.basic is None, "--client-auth body: no Basic header"
    assert (request.form.get("client_id"), request.form.get("client_secret")) == (server.client_id, SECRET)


def test_a_netrc_login_for_the_token_host_does_not_replace_the_clients_basic_auth(cli, oauth, tmp_path):
    server = oauth()
    add_oauth(cli, "o", server)

    result = cli("sync", "o", env={**env_of(), **netrc_for(tmp_path, "127.0.0.1", "mallory", "from-netrc")})

    assert result.returncode == 0, f"a ~/.netrc entry must not break the token request: {result.stderr}"
    [request] = server.token_requests
    assert request.basic == (server.client_id, SECRET)


def test_the_default_basic_client_auth_is_refused_by_a_body_only_server_with_the_hint(cli, oauth):
    server = oauth(client_auth="body")
    add_oauth(cli, "o", server)

    result = cli("sync", "o", env=env_of())

    assert result.returncode == 1
    assert "invalid_client" in result.stderr, result.stderr
    assert "--client-auth" in result.stderr, f"the hint points at --client-auth: {result.stderr}"


@pytest.mark.parametrize("param", ["client_secret=plainsecret", "api_key=literalkey123", "password=hunter2"])
def test_a_literal_credential_in_a_token_param_is_refused_like_a_query_param(cli, db_path, oauth, param):
    server = oauth()
    add = ["add", "o", "--url", server.url("/items"), "--auth", "oauth2", "--token-url", server.token_url,
           "--client-id", server.client_id, "--client-secret", "${CS}", "--token-param"]  # fmt: skip

    refused = cli(*add, param)
    referenced = cli(*add, f"{param.partition('=')[0]}=${{TOKEN_PARAM}}")

    assert refused.returncode == 2 and "looks like a credential" in refused.stderr, refused.stderr
    assert param.partition("=")[2] not in refused.stdout + refused.stderr
    assert referenced.returncode == 0, referenced.stderr
    assert param.partition("=")[2].encode() not in db_path.read_bytes()


def test_scope_and_token_params_reach_the_token_endpoint(cli, oauth):
    server = oauth(required_params={"audience": "https://api.example", "resource": "items"})
    add_oauth(cli, "o", server, "--scope", "read:items", "--scope", "write", "--token-param",
              "audience=https://api.example", "--token-param", "resource=${RES}")

    result = cli("sync", "o", env=env_of(RES="items"))

    assert result.returncode == 0, f"sync failed: {result.stderr}"
    [request] = server.token_requests
    assert request.form.get("scope") == "read:items write", "scopes joined by spaces (RFC 6749 §3.3)"
    assert request.form.get("audience") == "https://api.example", "--token-param audience reached the endpoint"
    assert request.form.get("resource") == "items", "a ${VAR} in --token-param is expanded"
    assert request.form.get("grant_type") == "client_credentials"


def test_invalid_client_names_error_description_and_the_secret_variable_never_a_token(cli, db_path, oauth):
    decoy = "AT-decoy-token-in-a-refusal-0123456789"
    server = oauth(refusal_extra={"access_token": decoy, "refresh_token": "RT-decoy-refresh-9876543210xyz",
                                  "error_description": f"client authentication failed (held: {decoy})"})
    add_oauth(cli, "o", server)

    result = cli("sync", "o", env={**env_of(), "CS": "a-wrong-secret-value-4242"})

    assert result.returncode == 1
    assert "invalid_client" in result.stderr, result.stderr
    assert "client authentication failed" in result.stderr, "the error_description is shown"
    assert "${CS}" in result.stderr, "the hint names the client secret's variable"
    found = leaks({decoy, "RT-decoy-refresh-9876543210xyz", "a-wrong-secret-value-4242"},
                  {"stderr": result.stderr, "stdout": result.stdout, "history": cli("history", "o", "--json").stdout},
                  db_path)  # fmt: skip
    assert found == [], "a refusal's tokens and the secret appear nowhere"
    assert server.resource_auth == [], "the resource is not asked without a token"


def test_a_token_endpoint_that_cannot_be_reached_is_named_with_token_url_in_the_hint(cli, oauth, source):
    from tests.httpsources import closed_port

    server = oauth()
    port = closed_port()
    assert cli("add", "o", "--url", server.url("/items"), "--auth", "oauth2", "--token-url",
               f"http://127.0.0.1:{port}/token", "--client-id", "app", "--client-secret", "${CS}").returncode == 0  # fmt: skip

    result = cli("sync", "o", env=env_of())

    assert result.returncode == 1
    assert "the token endpoint: connection refused" in result.stderr, result.stderr
    assert "check the host and port in --token-url" in result.stderr, f"the option to fix: {result.stderr}"
    assert server.resource_auth == [], "the source was not asked"


def test_a_bare_401_from_the_token_endpoint_names_the_client_credentials(cli, oauth, source):
    from tests.httpsources import text_body

    server = oauth()
    token_url = source.add("/token", text_body("Unauthorized", status=401))
    assert cli("add", "o", "--url", server.url("/items"), "--auth", "oauth2", "--token-url", token_url,
               "--client-id", "app", "--client-secret", "${CS}").returncode == 0  # fmt: skip

    result = cli("sync", "o", env=env_of())

    assert result.returncode == 1
    assert "HTTP 401" in result.stderr, f"what the endpoint said: {result.stderr}"
    assert "check the client id and secret (${CS})" in result.stderr, f"the client's credentials: {result.stderr}"


def test_changing_the_oauth2_settings_outdates_the_held_token(cli, oauth):
    server = oauth()
    add_oauth(cli, "o", server, "--scope", "read")
    assert cli("sync", "o", env=env_of()).returncode == 0

    assert cli("edit", "o", "--scope", "admin").returncode == 0
    rescoped = cli("sync", "o", env=env_of())

    assert rescoped.returncode == 0, rescoped.stderr
    assert server.grants["client_credentials"] == 2, "the token granted for 'read' is not used for 'admin'"
    assert server.token_requests[-1].form.get("scope") == "admin"
    assert cli("edit", "o", "--client-id", "a-wrong-client").returncode == 0
    checked = cli("check", "o", env=env_of())
    assert checked.returncode != 0 and "invalid_client" in checked.stdout + checked.stderr, (
        f"check tries the new client, not the old client's token: {checked.stdout}{checked.stderr}")


def test_a_held_token_never_goes_to_the_new_origin_of_an_edited_url(cli, oauth):
    server, other = oauth(), oauth()
    add_oauth(cli, "o", server)
    assert cli("sync", "o", env=env_of()).returncode == 0
    held = server.issued_access[-1]

    assert cli("edit", "o", "--url", other.url("/items")).returncode == 0
    cli("sync", "o", env=env_of())  # the token endpoint is still the first server's

    assert f"Bearer {held}" not in other.resource_auth, f"the old origin's token went to the new one: {other.resource_auth}"
    # A new token for the new origin, then one more after its 401 (it knows only its own tokens).
    assert server.grants["client_credentials"] == 3, server.grants


def test_a_scope_change_keeps_the_rotated_refresh_chain(cli, oauth):
    server = oauth(expires_in=3600)
    seed = server.new_refresh_token()
    add_oauth(cli, "o", server, refresh=True)
    assert cli("sync", "o", env=env_of(RT=seed)).returncode == 0  # the seed is spent: the chain holds the new one

    assert cli("edit", "o", "--scope", "read").returncode == 0
    result = cli("sync", "o", env=env_of(RT=seed))

    assert result.returncode == 0, f"the stored chain still works: {result.stderr}"
    assert server.grants["refresh_token"] == 2 and dict(server.errors) == {}, "a refresh, from the chain, no reuse"


@pytest.mark.parametrize("auth", ["basic:alice:${PW}", ""])
def test_edit_auth_away_from_oauth2_drops_its_settings(cli, oauth, auth):
    server = oauth(client_auth="body")
    add_oauth(cli, "o", server, "--scope", "read", "--client-auth", "body")
    assert cli("sync", "o", env=env_of()).returncode == 0

    switched = cli("edit", "o", "--auth", auth)

    assert switched.returncode == 0, f"no OAuth2 option has to be cleared by hand: {switched.stderr}"
    exported = cli("export", "o").stdout
    assert "token_url" not in exported and "client_id" not in exported and "scopes" not in exported, exported
    back = cli("edit", "o", "--auth", "oauth2")
    assert back.returncode == 2 and "--token-url" in back.stderr, "turned on again, it asks for its options"


# -- OAuth2: refresh tokens with rotation ------------------------------------------------------


def test_a_rotating_chain_keeps_working_across_many_runs(cli, db_path, oauth):
    server = oauth(expires_in=30)  # every run needs a new access token: every run rotates
    seed = server.new_refresh_token()
    add_oauth(cli, "o", server, refresh=True)
    stored_chain = []

    results = []
    for _ in range(6):
        results.append(cli("sync", "o", env=env_of(RT=seed)))
        stored_chain.append(query(db_path, "SELECT refresh_token FROM oauth_tokens")[0]["refresh_token"])

    assert [r.returncode for r in results] == [0] * 6, [r.stderr for r in results]
    assert server.grants == {"refresh_token": 6}, "one refresh per run"
    assert dict(server.errors) == {}, "no refusal: never a reused refresh token"
    assert max(server.refresh_uses.values()) == 1, "each refresh token presented once"
    assert server.refresh_uses[seed] == 1, "the variable's token starts the chain, once"
    assert len(set(stored_chain)) == 6, "each rotation is stored"
    assert not set(stored_chain) & set(server.issued_refresh), "stored encrypted"


def test_refresh_token_without_the_key_fails_before_contacting_the_token_endpoint(cli, db_path, oauth):
    server = oauth()
    seed = server.new_refresh_token()
    add_oauth(cli, "o", server, refresh=True)

    result = cli("sync", "o", env=env_of(None, RT=seed))

    assert result.returncode == 1
    assert server.token_requests == [], "the token endpoint must not be contacted"
    assert "SYNCCTL_SECRET_KEY" in result.stderr, f"the hint says to set the key: {result.stderr}"
    assert seed not in result.stderr
    later = cli("sync", "o", env=env_of(RT=seed))
    assert later.returncode == 0, f"the seed is still good once the key is set: {later.stderr}"


def test_a_new_refresh_token_in_the_variable_wins_over_the_stored_chain(cli, oauth):
    server = oauth(expires_in=30)
    first = server.new_refresh_token()
    add_oauth(cli, "o", server, refresh=True)
    assert [cli("sync", "o", env=env_of(RT=first)).returncode for _ in range(2)] == [0, 0]
    again = server.new_refresh_token()  # the admin re-authorised

    results = [cli("sync", "o", env=env_of(RT=again)) for _ in range(2)]

    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert server.refresh_uses[again] == 1, "the new variable is used, once; then its own chain"
    assert dict(server.errors) == {}, "no reuse, no refusal"
    assert server.grants["refresh_token"] == 4


def test_a_different_secret_key_ignores_stored_tokens_with_a_warning(cli, oauth):
    server = oauth(rotate=False)  # the variable's token stays valid: it can be used again
    seed = server.new_refresh_token()
    add_oauth(cli, "o", server, refresh=True)
    assert cli("sync", "o", env=env_of(RT=seed)).returncode == 0

    result = cli("sync", "o", env=env_of(OTHER_KEY, RT=seed))

    assert result.returncode == 0, f"sync with another key failed: {result.stderr}"
    assert server.refresh_uses[seed] == 2, "the refresh token is taken from the variable again"
    newest = logs(cli, "o")[0]
    assert newest["status"] == "SUCCESS"
    assert "SYNCCTL_SECRET_KEY" in (newest["error_hint"] or ""), f"a warning in the log: {newest}"


def test_a_sync_failing_after_a_key_change_says_the_stored_tokens_were_ignored(cli, oauth):
    server = oauth(expires_in=30)  # rotates: the variable's token is spent after the first sync
    seed = server.new_refresh_token()
    add_oauth(cli, "o", server, refresh=True)
    assert cli("sync", "o", env=env_of(RT=seed)).returncode == 0

    result = cli("sync", "o", env=env_of(OTHER_KEY, RT=seed))

    assert result.returncode == 1 and "invalid_grant" in result.stderr, result.stderr
    newest = logs(cli, "o")[0]
    assert newest["status"] == "FAILED"
    assert "another SYNCCTL_SECRET_KEY" in (newest["error_hint"] or ""), f"why the old token was used: {newest}"
    assert "another SYNCCTL_SECRET_KEY" in result.stderr, result.stderr


def test_invalid_grant_names_the_variable_and_says_reauthorise(cli, db_path, oauth):
    server = oauth(expires_in=30)
    seed = server.new_refresh_token()
    add_oauth(cli, "o", server, refresh=True)
    assert cli("sync", "o", env=env_of(RT=seed)).returncode == 0
    server.revoke_everything()

    result = cli("sync", "o", env=env_of(RT=seed))

    assert result.returncode == 1
    assert "invalid_grant" in result.stderr, result.stderr
    assert "${RT}" in result.stderr, "the hint names the refresh token's variable"
    assert "re-authorise" in result.stderr, "the hint says to re-authorise"
    [failed, _] = logs(cli, "o")
    assert failed["status"] == "FAILED" and "${RT}" in failed["error_hint"], failed
    assert leaks(server.secrets(), {"stderr": result.stderr}, db_path) == []


# -- one refresh at a time ---------------------------------------------------------------------


def wait_all(procs: list[subprocess.Popen]) -> list[Result]:
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=HANG_GUARD)
        out.append(Result(proc.returncode, stdout, stderr))
    return out


@pytest.mark.parametrize("refresh", [False, True], ids=["client-credentials", "refresh-token"])
def test_processes_needing_a_token_at_once_make_one_token_request(cli, spawn, oauth, refresh):
    server = oauth(token_delay=1.5)
    seed = server.new_refresh_token()
    add_oauth(cli, "o", server, refresh=refresh)
    env = env_of(RT=seed)

    procs = [spawn("check", "o", env=env) for _ in range(3)] + [spawn("sync", "o", env=env)]
    results = wait_all(procs)

    assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
    assert len(server.token_requests) == 1, f"one token request between them, saw {len(server.token_requests)}"
    assert dict(server.errors) == {}, "no invalid_grant: never a reused refresh token"
    assert all(n <= 1 for n in server.refresh_uses.values()), "no refresh token presented twice"
    assert len(set(server.resource_auth)) == 1, "every process used the one token"


def test_a_process_killed_mid_refresh_never_leaves_a_silent_failure(cli, spawn, oauth):
    server = oauth(token_delay=2.0, expires_in=30)
    seed = server.new_refresh_token()
    add_oauth(cli, "o", server, refresh=True)
    victim = spawn("sync", "o", env=env_of(RT=seed))
    wait_for(server.token_arrived.is_set, "the token request to arrive")
    victim.send_signal(signal.SIGKILL)
    victim.wait(HANG_GUARD)
    server.token_delay = 0.0

    result = cli("sync", "o", env=env_of(RT=seed))

    if result.returncode != 0:
        assert "invalid_grant" in result.stderr, f"a failure must be the clear invalid_grant: {result.stderr}"
        assert "${RT}" in result.stderr and "re-authorise" in result.stderr, result.stderr
    else:
        assert server.errors["invalid_grant"] == 0, "a success with no refusal"
    statuses = [log["status"] for log in logs(cli, "o")]
    assert "RUNNING" not in statuses, f"no RUNNING log after the next command: {statuses}"
    recovered = cli("sync", "o", env=env_of(RT=server.new_refresh_token()))
    assert recovered.returncode == 0, f"a re-authorised token recovers: {recovered.stderr}"


# -- no leak -------------------------------------------------------------------------------------


def test_no_token_secret_or_fragment_leaks_after_a_rotation_chain(cli, db_path, oauth):
    server = oauth(expires_in=30, echo_token=True)
    seed = server.new_refresh_token()
    add_oauth(cli, "o", server, refresh=True)
    env = env_of(RT=seed)
    texts: dict[str, str] = {}
    assert cli("sync", "o", env=env).returncode == 0  # creates the database
    with wal_kept(db_path):
        for n in range(5):
            server.records = [{"id": 1, "n": n}, {"id": 2, "n": n}]  # changed: written again
            result = cli("sync", "o", env=env)
            assert result.returncode == 0, result.stderr
            texts[f"sync {n} stdout"], texts[f"sync {n} stderr"] = result.stdout, result.stderr
        checked = cli("check", "o", env=env)
        texts["check stdout"], texts["check stderr"] = checked.stdout, checked.stderr
        texts["history"] = cli("history", "o", "--json").stdout
        texts["show"] = cli("show", "o").stdout
        found = leaks(server.secrets() | {seed}, texts, db_path)

    assert server.grants["refresh_token"] == 7, "each sync and the check rotated"
    assert found == [], f"secrets leaked: {found[:5]}"
    records = stored(db_path, "o")
    assert records["1"]["seen_token"] == "[redacted]", f"an echoed token is redacted: {records['1']}"
    assert server.issued_access[-1] not in records["1"]["note"], "no token inside a longer text"


def test_records_echoing_a_token_held_from_an_earlier_run_are_redacted(cli, db_path, oauth):
    server = oauth(echo_token=True, records=[{"id": 1, "n": 1}])
    add_oauth(cli, "o", server)
    assert cli("sync", "o", env=env_of()).returncode == 0
    server.records = [{"id": 1, "n": 2}]  # changed: the record is written again

    result = cli("sync", "o", env=env_of())  # uses the token stored by the first run

    assert result.returncode == 0, result.stderr
    assert server.grants["client_credentials"] == 1, "the stored token was reused"
    record = stored(db_path, "o")["1"]
    assert record["n"] == 2, "the second run's record was stored"
    assert record["seen_token"] == "[redacted]", f"a held token echoed in a record must be redacted: {record}"


def test_an_echoed_token_is_redacted_even_when_no_variable_holds_a_secret(cli, db_path, oauth):
    # A client secret of two characters is too short to redact (every "ab" in every record
    # would go): the sync starts with no secret to scrub, then learns the access token.
    server = oauth(client_secret="ab", echo_token=True, records=[{"id": 1, "n": 1}])
    add_oauth(cli, "o", server)

    result = cli("sync", "o", env={"CS": "ab", "SYNCCTL_SECRET_KEY": KEY})

    assert result.returncode == 0, result.stderr
    record = stored(db_path, "o")["1"]
    assert record["seen_token"] == "[redacted]", f"the access token echoed in a record must be redacted: {record}"
    table = query(db_path, "SELECT seen_token FROM o")
    assert table == [{"seen_token": "[redacted]"}], f"nor stored in the data table: {table}"


def test_check_never_shows_a_held_token_echoed_in_its_sample(cli, oauth):
    server = oauth(echo_token=True)
    add_oauth(cli, "o", server)
    assert cli("sync", "o", env=env_of()).returncode == 0

    checked = cli("check", "o", env=env_of())

    assert checked.returncode == 0, checked.stderr
    assert "OAuth2" in checked.stdout, "check reports the auth it used"
    assert leaks(server.secrets(), {"stdout": checked.stdout, "stderr": checked.stderr}, None) == []


# -- the token store on PostgreSQL ---------------------------------------------------------------


def test_the_rotating_chain_on_postgresql_keeps_tokens_encrypted(pg_url, oauth):
    import psycopg

    def pg(*args: str, env: dict[str, str] | None = None) -> Result:
        return run_syncctl(pg_url, *args, env=env)

    server = oauth(expires_in=30)
    seed = server.new_refresh_token()
    add_oauth(pg, "o", server, refresh=True)

    results = [pg("sync", "o", env=env_of(RT=seed)) for _ in range(4)]

    assert [r.returncode for r in results] == [0] * 4, [r.stderr for r in results]
    assert server.grants == {"refresh_token": 4} and dict(server.errors) == {}, "the chain held on PostgreSQL"
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT * FROM oauth_tokens").fetchall()
    dumped = json.dumps([list(map(str, row)) for row in rows])
    assert len(rows) == 1 and "gAAAA" in dumped, "one row, Fernet-encrypted values"
    assert leaks(server.secrets() | {seed}, {"oauth_tokens": dumped}, None) == [], "no token in clear"


# -- request bodies ------------------------------------------------------------------------------


def api_server(oauth, answer: Callable[[ApiRequest], tuple[int, object]]) -> OAuthServer:  # noqa: ANN001
    server = oauth()
    server.api = answer
    return server


def test_a_body_is_posted_as_json_with_variables_expanded_as_json_strings(cli, db_path, oauth):
    server = api_server(oauth, lambda r: (200, [{"id": 1}]))
    tricky = 'say "hi" \\ back\\slash\nnew line }, "x": 1'
    assert cli("add", "q", "--url", server.url("/api"), "--body", '{"q": "${Q}", "n": 5}').returncode == 0

    result = cli("sync", "q", env={"Q": tricky})

    assert result.returncode == 0, result.stderr
    [request] = server.api_requests
    assert request.method == "POST", "--body implies POST"
    assert request.headers.get("Content-Type") == "application/json"
    assert request.body == {"q": tricky, "n": 5}, f"the variable is a JSON string, never structure: {request.raw!r}"


def test_a_body_secret_quoted_back_inside_a_json_error_is_redacted(cli, db_path, oauth):
    # The source quotes the request body it refused as a JSON string: the value's quote and
    # backslash are escaped twice there, a spelling of its own.
    server = api_server(oauth, lambda r: (400, {"error": "bad query", "request": r.raw.decode()}))
    secret = 'Pa"ss\\word-Sekr3t-Tail-8812'
    assert cli("add", "q", "--url", server.url("/api"), "--body", '{"q": "${Q}"}').returncode == 0

    result = cli("sync", "q", env={"Q": secret})

    assert result.returncode != 0, "the source refused the query"
    assert "bad query" in result.stderr, f"the source's own words are shown: {result.stderr}"
    assert "--body" in result.stderr, f"the hint names the body the source may be refusing: {result.stderr}"
    history = cli("history", "q", "--json").stdout
    for where, text in (("stderr", result.stderr), ("history", history)):
        assert "Sekr3t-Tail-8812" not in text, f"no part of the secret in {where}: {text}"


def test_show_lists_the_auth_method_and_body_a_hint_sends_the_admin_to(cli, oauth):
    server = oauth()
    add_oauth(cli, "o", server, "--scope", "read:items", "--body", '{"query": "{ items { id } }"}')

    shown = cli("show", "o")

    assert shown.returncode == 0, shown.stderr
    lines = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in shown.stdout.splitlines() if line.strip()
             and line.split(None, 1)[0] in ("auth", "method", "body")}  # fmt: skip
    assert lines.get("method") == "POST", shown.stdout
    assert lines.get("body") == '{"query": "{ items { id } }"}', shown.stdout
    assert server.token_url in lines.get("auth", "") and "${CS}" in lines["auth"] and "read:items" in lines["auth"]
    assert SECRET not in shown.stdout, "the secret only as its ${VAR}"


def test_a_body_from_a_file_is_read_once_when_given(cli, tmp_path, oauth):
    server = api_server(oauth, lambda r: (200, [{"id": 1}]))
    path = tmp_path / "query.json"
    path.write_text(json.dumps({"query": "{ items { id } }"}))
    assert cli("add", "q", "--url", server.url("/api"), "--body", f"@{path}").returncode == 0
    path.write_text(json.dumps({"query": "changed later"}))

    result = cli("sync", "q")

    assert result.returncode == 0, result.stderr
    assert server.api_requests[0].body == {"query": "{ items { id } }"}, "the file as it was when given"


def test_get_with_a_body_is_refused(cli, db_path, oauth):
    server = api_server(oauth, lambda r: (200, []))

    result = cli("add", "q", "--url", server.url("/api"), "--method", "GET", "--body", '{"a": 1}')

    assert result.returncode == 2, f"GET with a body is a usage error: {result.stderr}"
    names = query(db_path, "SELECT name FROM integrations") if db_path.exists() else []
    assert names == [], "nothing stored"


@pytest.mark.parametrize(("body", "paginate", "says"), [
    (None, "page:body:variables.page", "there is no --body"),
    ('[{"q": 1}]', "page:body:variables.page", "--body is not a JSON object"),
    ('{"variables": "x"}', "page:body:variables.page", "'variables' is not an object"),
    ('{"variables": {}}', "page:body:", "invalid --paginate"),
    ('{"variables": {}}', "page:body:a..b", "invalid --paginate"),
])
def test_a_body_param_that_cannot_be_set_is_refused_at_add(cli, db_path, oauth, body, paginate, says):
    server = oauth()
    args = ["add", "g", "--url", server.url("/api"), "--paginate", paginate] + (["--body", body] if body else [])

    result = cli(*args)

    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "hint:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert (query(db_path, "SELECT name FROM integrations") if db_path.exists() else []) == []


def test_an_incremental_body_param_needs_an_object_body_too(cli, oauth):
    server = oauth()
    result = cli("add", "g", "--url", server.url("/api"), "--body", "[1]", "--incremental", "id:body:since")
    assert result.returncode == 2 and "--incremental puts 'body:since' in the request body" in result.stderr


def test_page_numbers_go_in_the_body(cli, db_path, oauth):
    def answer(request: ApiRequest) -> tuple[int, object]:
        page = request.body.get("variables", {}).get("page")
        items = [{"id": (page - 1) * 2 + i} for i in (1, 2)] if isinstance(page, int) and page <= 3 else []
        return 200, {"data": {"items": items}}

    server = api_server(oauth, answer)
    added = cli("add", "q", "--url", server.url("/api"), "--body", '{"query": "q", "variables": {"n": 2}}',
                "--records-path", "data.items", "--paginate", "page:body:variables.page")
    assert added.returncode == 0, added.stderr

    result = cli("sync", "q")

    assert result.returncode == 0, result.stderr
    assert [r.body["variables"].get("page") for r in server.api_requests] == [1, 2, 3, 4], "pages 1.. in the body"
    assert all(r.body["variables"]["n"] == 2 for r in server.api_requests), "the rest of the body is kept"
    assert all("page" not in r.target for r in server.api_requests), "no page in the query string"
    assert sorted(stored(db_path, "q"), key=int) == [str(i) for i in range(1, 7)]


def test_a_cursor_goes_in_the_body_and_null_ends_it(cli, db_path, oauth):
    chain = {None: ("c1", [1, 2]), "c1": ("c2", [3, 4]), "c2": (None, [5])}

    def answer(request: ApiRequest) -> tuple[int, object]:
        after = request.body.get("variables", {}).get("after")
        following, ids = chain[after]
        return 200, {"data": {"issues": {"nodes": [{"id": i} for i in ids],
                                         "pageInfo": {"endCursor": following, "hasNextPage": following is not None}}}}

    server = api_server(oauth, answer)
    added = cli("add", "q", "--url", server.url("/api"), "--body", '{"query": "q", "variables": {}}',
                "--records-path", "data.issues.nodes",
                "--paginate", "cursor:data.issues.pageInfo.endCursor:body:variables.after")
    assert added.returncode == 0, added.stderr

    result = cli("sync", "q")

    assert result.returncode == 0, result.stderr
    assert [r.body["variables"].get("after") for r in server.api_requests] == [None, "c1", "c2"]
    assert sorted(stored(db_path, "q")) == ["1", "2", "3", "4", "5"]


def test_an_incremental_cursor_goes_in_the_body(cli, oauth):
    def answer(request: ApiRequest) -> tuple[int, object]:
        since = request.body.get("variables", {}).get("since")
        rows = [{"id": 1, "updated": "2026-01-01"}, {"id": 2, "updated": "2026-02-01"}]
        return 200, [r for r in rows if since is None or r["updated"] > since]

    server = api_server(oauth, answer)
    added = cli("add", "q", "--url", server.url("/api"), "--body", '{"query": "q", "variables": {}}',
                "--incremental", "updated:body:variables.since")
    assert added.returncode == 0, added.stderr

    results = [cli("sync", "q") for _ in range(2)]

    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    sent = [r.body["variables"].get("since") for r in server.api_requests]
    assert sent == [None, "2026-02-01"], f"the second sync sends the cursor in the body: {sent}"


def test_a_numeric_incremental_cursor_keeps_its_type_in_the_body(cli, oauth):
    def answer(request: ApiRequest) -> tuple[int, object]:
        since = request.body.get("variables", {}).get("since")
        if since is not None and not isinstance(since, int):
            return 200, {"errors": [{"message": f"Variable $since of type Int got {since!r}"}]}
        return 200, [r for r in ({"seq": 5}, {"seq": 7}) if since is None or r["seq"] > since]

    server = api_server(oauth, answer)
    assert cli("add", "q", "--url", server.url("/api"), "--body", '{"query": "q", "variables": {}}',
               "--incremental", "seq:body:variables.since").returncode == 0

    results = [cli("sync", "q") for _ in range(2)]

    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert [r.body["variables"].get("since") for r in server.api_requests] == [None, 7]


def test_a_cursor_of_zero_is_a_cursor_not_the_end(cli, db_path, oauth):
    chain = {None: (0, [1]), 0: (1, [2]), 1: (None, [3])}  # 0, a falsy cursor, comes first

    def answer(request: ApiRequest) -> tuple[int, object]:
        following, ids = chain[request.body["variables"].get("after")]
        return 200, {"items": [{"id": i} for i in ids], "next": following}

    server = api_server(oauth, answer)
    assert cli("add", "z", "--url", server.url("/api"), "--body", '{"variables": {}}', "--records-path", "items",
               "--paginate", "cursor:next:body:variables.after").returncode == 0

    assert cli("sync", "z").returncode == 0
    assert [r.body["variables"].get("after") for r in server.api_requests] == [None, 0, 1]
    assert sorted(stored(db_path, "z")) == ["1", "2", "3"]


def test_graphql_errors_without_records_fail_with_the_first_message(cli, oauth):
    body = {"data": None, "errors": [{"message": "Field 'nope' doesn't exist"}, {"message": "second"}]}
    server = api_server(oauth, lambda r: (200, body))
    assert cli("add", "g", "--url", server.url("/api"), "--body", '{"query": "{ nope }"}',
               "--records-path", "data.items").returncode == 0

    result = cli("sync", "g")

    assert result.returncode == 1
    assert "Field 'nope' doesn't exist" in result.stderr, result.stderr
    assert "hint" in result.stderr, "with a hint"
    assert logs(cli, "g")[0]["status"] == "FAILED"


def test_graphql_errors_with_records_succeed_with_a_warning(cli, db_path, oauth):
    body = {"data": {"items": [{"id": 1}, {"id": 2}]}, "errors": [{"message": "partial: one resolver failed"}]}
    server = api_server(oauth, lambda r: (200, body))
    assert cli("add", "g", "--url", server.url("/api"), "--body", '{"query": "{ items { id } }"}',
               "--records-path", "data.items").returncode == 0

    result = cli("sync", "g")

    assert result.returncode == 0, result.stderr
    assert sorted(stored(db_path, "g")) == ["1", "2"]
    [log] = logs(cli, "g")
    assert log["status"] == "SUCCESS"
    assert "partial: one resolver failed" in (log["error_hint"] or ""), f"a warning in the log: {log}"
    checked = [cli("check", "g"), cli("check", "--url", server.url("/api"), "--body", '{"query": "{ items { id } }"}',
                                     "--records-path", "data.items")]  # fmt: skip
    for result in checked:  # check foretells the warning: exit 1, as for any sync that would warn
        assert result.returncode == 1, result.stdout + result.stderr
        assert "partial: one resolver failed" in result.stdout + result.stderr
        assert "without a warning" not in result.stdout
    assert logs(cli, "g") == [log], "check writes no sync log"


def test_a_bearer_token_is_sent_with_a_posted_body(cli, oauth):
    server = oauth()
    server.api = lambda r: (200, [{"id": 1}])
    add_oauth(cli, "o", server, "--body", '{"query": "x"}', path="/api")

    result = cli("sync", "o", env=env_of())

    assert result.returncode == 0, result.stderr
    [request] = server.api_requests
    assert request.headers.get("Authorization", "").startswith("Bearer AT-"), "OAuth2 with a body"
    assert request.body == {"query": "x"}


def test_the_basic_header_value_is_exactly_rfc7617(cli, oauth):
    server = oauth(basic_password="p:w")
    server.api = lambda r: (200, [{"id": 1}])
    assert cli("add", "b", "--url", server.url("/api"), "--auth", "basic:alice:${PW}").returncode == 0

    assert cli("sync", "b", env={"PW": "p:w"}).returncode == 0

    expected = "Basic " + base64.b64encode(b"alice:p:w").decode()
    assert server.api_requests[0].headers.get("Authorization") == expected
