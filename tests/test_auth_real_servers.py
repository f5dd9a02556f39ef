"""Spec §16 against real third-party servers from npm: oauth2-mock-server 7.2.1 (a token
endpoint that signs JWTs and serves their JWKS) and json-graphql-server 3.3.2 (GraphQL over
a JSON file, paged here by a cursor in the body). Skipped locally when the tool is missing,
required under CI (npm install -g oauth2-mock-server@7.2.1 json-graphql-server@3.3.2).
Loopback only; each test starts one server and stops it."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import urllib.request
from collections.abc import Iterator

import pytest

from tests.helpers import HANG_GUARD, query, require_tool, stored, wait_for
from tests.httpsources import HTTPSource, dynamic

NPM = "npm install -g oauth2-mock-server@7.2.1 json-graphql-server@3.3.2"
KEY = "test-key-5f1c0e9a7b3d4c2e8f6a1b0c9d8e7f6a5b4c3d2e"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answering(url: str, data: bytes | None = None) -> bool:
    try:
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def served(tmp_path) -> Iterator:  # noqa: ANN001
    procs: list[subprocess.Popen] = []

    def start(args: list[str], ready_url: str, data: bytes | None = None) -> None:
        proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        wait_for(lambda: proc.poll() is not None or answering(ready_url, data), f"{args[0]} to answer", guard=60)
        assert proc.poll() is None, f"{args[0]} exited with {proc.returncode}"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=HANG_GUARD)


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_jwt(token: str, jwks: dict) -> dict:
    """The claims of an RS256 JWT whose signature one of ``jwks``'s keys verifies
    (cryptography, no JWT library); AssertionError otherwise."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    head, payload, signature = token.split(".")
    header = json.loads(b64url(head))
    assert header.get("alg") == "RS256", f"an RS256 JWT, got {header}"
    [jwk] = [k for k in jwks["keys"] if k.get("kid") == header.get("kid")]
    public = rsa.RSAPublicNumbers(int.from_bytes(b64url(jwk["e"]), "big"),
                                  int.from_bytes(b64url(jwk["n"]), "big")).public_key()  # fmt: skip
    public.verify(b64url(signature), f"{head}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return json.loads(b64url(payload))


def test_oauth2_mock_server_issues_a_jwt_the_resource_verifies_against_its_jwks(cli, db_path, served):
    mock = require_tool("oauth2-mock-server", NPM)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    served([mock, "-a", "127.0.0.1", "-p", str(port)], f"{base}/jwks")
    with urllib.request.urlopen(f"{base}/jwks", timeout=10) as response:
        jwks = json.load(response)
    claims: list[dict] = []

    def resource(handler) -> tuple[int, object]:  # noqa: ANN001
        header = handler.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return 401, {"error": "no bearer"}
        try:
            claims.append(verify_jwt(header[len("Bearer "):], jwks))
        except Exception as exc:  # noqa: BLE001 - any failure to verify is a 401
            return 401, {"error": f"invalid token: {type(exc).__name__}"}
        return 200, [{"id": 1, "title": "one"}, {"id": 2, "title": "two"}]

    with HTTPSource() as source:
        url = source.add("/items", dynamic(resource))
        added = cli("add", "m", "--url", url, "--auth", "oauth2", "--token-url", f"{base}/token",
                    "--client-id", "syncctl", "--client-secret", "${CS}", "--scope", "items:read")
        assert added.returncode == 0, added.stderr

        results = [cli("sync", "m", env={"CS": "mock-secret-value-123456", "SYNCCTL_SECRET_KEY": KEY})
                   for _ in range(2)]  # fmt: skip

    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert len(claims) == 2, "the resource verified the bearer of both syncs"
    assert claims[0].get("scope") == "items:read", f"--scope reached the real server: {claims[0]}"
    assert claims[0].get("iss") is not None, "a token issued by the mock server"
    assert len(stored(db_path, "m")) == 2
    [row] = query(db_path, "SELECT access_token FROM oauth_tokens")
    assert row["access_token"] and not row["access_token"].startswith("eyJ"), "the JWT is stored encrypted"


GRAPHQL_QUERY = ("query($after: Int) { allItems(page: 0, perPage: 10, sortField: \"seq\", "
                 "filter: {seq_gt: $after}) { id seq title } }")  # fmt: skip


def test_json_graphql_server_paged_by_a_cursor_in_the_body(cli, db_path, tmp_path, served):
    server = require_tool("json-graphql-server", NPM)
    (tmp_path / "db.json").write_text(json.dumps({"items": [{"id": i, "seq": i, "title": f"t{i}"}
                                                            for i in range(1, 26)]}))  # fmt: skip
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    served([server, "db.json", "--port", str(port), "--host", "127.0.0.1"], url,
           data=json.dumps({"query": "{ __typename }"}).encode())
    (tmp_path / "query.json").write_text(json.dumps({"query": GRAPHQL_QUERY, "variables": {}}))
    # The tenth record's seq is the cursor (a page of fewer than ten has none: the end).
    added = cli("add", "gq", "--url", url, "--body", f"@{tmp_path / 'query.json'}", "--records-path",
                "data.allItems", "--paginate", "cursor:data.allItems.9.seq:body:variables.after")
    assert added.returncode == 0, added.stderr

    result = cli("sync", "gq")

    assert result.returncode == 0, result.stderr
    assert "25 records" in result.stdout, result.stdout
    assert sorted(stored(db_path, "gq"), key=int) == [str(i) for i in range(1, 26)], "every page fetched once"


def test_json_graphql_server_errors_fail_the_sync_with_its_message(cli, tmp_path, served):
    server = require_tool("json-graphql-server", NPM)
    (tmp_path / "db.json").write_text(json.dumps({"items": [{"id": 1, "title": "t1"}]}))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    served([server, "db.json", "--port", str(port), "--host", "127.0.0.1"], url,
           data=json.dumps({"query": "{ __typename }"}).encode())
    added = cli("add", "bad", "--url", url, "--body", '{"query": "{ allItems { id nosuchfield } }"}',
                "--records-path", "data.allItems")
    assert added.returncode == 0, added.stderr

    result = cli("sync", "bad")

    assert result.returncode == 1
    assert "nosuchfield" in result.stderr, f"the server's first error message is shown: {result.stderr}"
