"""A STRICT OAuth2 token server and protected resource on 127.0.0.1 for tests (spec §16).

One threaded ``http.server`` (like tests/httpsources.py) that plays three parts:

- ``POST /token``: RFC 6749 token endpoint. The client-credentials and refresh-token
  grants; the client authenticates with HTTP Basic (RFC 6749 §2.3.1: id and secret
  form-urlencoded, then base64) or in the form body, and only the way ``client_auth``
  says; using both at once is refused. Refresh tokens ROTATE (each use returns a new one)
  with REUSE DETECTION: a refresh token presented a second time revokes its whole family
  (every refresh and access token descended from the same authorisation), and the request
  gets ``invalid_grant``. Counts per grant and per refresh token, every form it received.
  ``token_delay`` slows its answers (concurrency, kills), ``token_arrived`` is set when a
  request has arrived.
- ``GET|POST /items``: a resource that answers 401 without a valid, unexpired bearer
  token; its records may echo the token (``echo_token``) to test redaction.
- ``GET /basic``: a resource behind RFC 7617 Basic (``basic_user``/``basic_password``).
- ``POST|GET /api``: JSON API whose answer ``api(request)`` computes from the JSON body
  (request bodies, body pagination, GraphQL-style errors); every request is kept.

    with OAuthServer(client_id="app", client_secret="s3cret") as server:
        seed = server.new_refresh_token()   # what an admin's authorisation gives
        server.expire_access_tokens()       # every token issued so far dies now
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

GUARD = 120.0  # seconds: a hang guard, never a timing assertion


@dataclass
class TokenRequest:
    """One request the token endpoint received."""

    grant_type: str | None
    form: dict[str, str]  # as received (client_secret included when sent in the body)
    basic: tuple[str, str] | None  # the decoded Basic client credentials, if any
    content_type: str
    answer: dict[str, Any] = field(default_factory=dict)
    status: int = 0


@dataclass
class ApiRequest:
    """One request to ``/api``."""

    method: str
    target: str
    headers: dict[str, str]
    raw: bytes
    body: Any  # the parsed JSON body, or None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch(b"")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _dispatch(self, raw: bytes) -> None:
        owner = self.server.owner
        path = urlsplit(self.path).path
        try:
            if path == "/token" and self.command == "POST":
                status, value, headers = owner._token(self, raw)
            elif path == "/items":
                status, value, headers = owner._items(self)
            elif path == "/basic":
                status, value, headers = owner._basic(self)
            elif path == "/api":
                status, value, headers = owner._api(self, raw)
            else:
                status, value, headers = 404, {"error": "no such route"}, {}
            body = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, header in headers.items():
                self.send_header(name, header)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:  # the client went away (killed): not the server's problem
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    owner: OAuthServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class OAuthServer:
    """The token endpoint, the protected resources and a JSON API, on 127.0.0.1."""

    def __init__(
        self,
        *,
        client_id: str = "syncctl-client",
        client_secret: str = "client-s3cret-0123456789abcdef",
        client_auth: str = "basic",
        expires_in: int | float | str | None = 3600,
        rotate: bool = True,
        token_delay: float = 0.0,
        records: list[dict[str, Any]] | None = None,
        echo_token: bool = False,
        required_params: dict[str, str] | None = None,
        refusal_extra: dict[str, Any] | None = None,
        basic_user: str = "alice",
        basic_password: str = "",
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.client_auth = client_auth  # "basic" or "body": the only method accepted
        self.expires_in = expires_in  # None: the answer carries no expires_in
        self.rotate = rotate  # False: a refresh token stays valid and is not replaced
        self.token_delay = token_delay
        self.records = records if records is not None else [{"id": i, "name": f"item {i}"} for i in (1, 2, 3)]
        self.echo_token = echo_token
        self.required_params = required_params or {}
        self.refusal_extra = refusal_extra or {}  # extra fields put into every refusal
        self.basic_user = basic_user
        self.basic_password = basic_password
        self.reject_bearer = 0  # the next N resource requests get 401 whatever the token
        self.reject_always = False  # every resource request gets 401
        self.drop_access = 0  # the next N refresh answers rotate the refresh token but carry no access_token
        self.api: Callable[[ApiRequest], tuple[int, Any]] = lambda request: (200, [])

        self.lock = threading.Lock()
        self.token_arrived = threading.Event()  # set when a token request arrives
        self.stopping = threading.Event()
        self.token_requests: list[TokenRequest] = []
        self.grants: Counter[str] = Counter()  # token requests per grant_type
        self.refresh_uses: Counter[str] = Counter()  # token requests per refresh token presented
        self.errors: Counter[str] = Counter()  # refusals per error code
        self.issued_access: list[str] = []
        self.issued_refresh: list[str] = []
        self._access: dict[str, dict[str, Any]] = {}  # token -> {"expires": epoch, "family": id}
        self._refresh: dict[str, dict[str, Any]] = {}  # token -> {"family": id, "used": bool}
        self._revoked_families: set[int] = set()
        self._families = 0
        self.resource_auth: list[str | None] = []  # the Authorization header of each /items request
        self.resource_status: list[int] = []
        self.basic_seen: list[tuple[str, str] | None] = []
        self.api_requests: list[ApiRequest] = []

        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.token_url = f"{self.base}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    # -- what a test does to the server ------------------------------------------------------

    def url(self, path: str) -> str:
        return self.base + path

    def new_refresh_token(self) -> str:
        """A refresh token from a new authorisation (a new family), as an admin gets it."""
        with self.lock:
            return self._new_refresh(self._new_family())

    def expire_access_tokens(self) -> None:
        """Every access token issued so far expires now (the server's clock says so)."""
        with self.lock:
            for data in self._access.values():
                data["expires"] = 0.0

    def revoke_everything(self) -> None:
        """Revoke every family (the user withdrew the grant)."""
        with self.lock:
            self._revoked_families.update(range(1, self._families + 1))

    def secrets(self) -> set[str]:
        """Every token issued and the client secret: what must never leak."""
        with self.lock:
            return {self.client_secret, *self.issued_access, *self.issued_refresh}

    def close(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(GUARD)

    def __enter__(self) -> OAuthServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the token endpoint --------------------------------------------------------------------

    def _new_family(self) -> int:
        self._families += 1
        return self._families

    def _new_refresh(self, family: int) -> str:
        token = "RT-" + secrets.token_urlsafe(30)
        self._refresh[token] = {"family": family, "used": False}
        self.issued_refresh.append(token)
        return token

    def _new_access(self, family: int | None) -> tuple[str, dict[str, Any]]:
        token = "AT-" + secrets.token_urlsafe(30)
        # What it honours; what it says (expires_in) may be absurd or not a number at all.
        lifetime = self.expires_in if isinstance(self.expires_in, (int, float)) else 3600
        self._access[token] = {"expires": time.time() + lifetime, "family": family}
        self.issued_access.append(token)
        answer: dict[str, Any] = {"access_token": token, "token_type": "Bearer"}
        if self.expires_in is not None:
            answer["expires_in"] = self.expires_in
        return token, answer

    def _refuse(self, status: int, error: str, description: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        self.errors[error] += 1
        headers = {"WWW-Authenticate": 'Basic realm="token"'} if status == 401 else {}
        return status, {"error": error, "error_description": description, **self.refusal_extra}, headers

    def _client_from_basic(self, header: str | None) -> tuple[str, str] | None | str:
        """The Basic client credentials (RFC 6749 §2.3.1), None without, "bad" when malformed."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return "bad"
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return "bad"
        user, sep, password = decoded.partition(":")
        if not sep:
            return "bad"
        # Both were application/x-www-form-urlencoded before the base64 encoding.
        return unquote_plus(user), unquote_plus(password)

    def _token(self, handler: _Handler, raw: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        content_type = handler.headers.get("Content-Type", "")
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
        basic = self._client_from_basic(handler.headers.get("Authorization"))
        request = TokenRequest(form.get("grant_type"), form, basic if isinstance(basic, tuple) else None, content_type)
        with self.lock:
            self.token_requests.append(request)
            self.grants[form.get("grant_type") or ""] += 1
            if form.get("grant_type") == "refresh_token":
                self.refresh_uses[form.get("refresh_token", "")] += 1
        self.token_arrived.set()
        if self.token_delay:
            self.stopping.wait(self.token_delay)
        with self.lock:
            status, answer, headers = self._token_answer(content_type, form, basic)
        request.status, request.answer = status, answer
        return status, answer, headers

    def _token_answer(self, content_type: str, form: dict[str, str], basic: Any) -> tuple[int, dict, dict]:
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return self._refuse(400, "invalid_request", "the request must be application/x-www-form-urlencoded")
        in_body = "client_secret" in form
        if basic is not None and in_body:
            return self._refuse(400, "invalid_request", "more than one client authentication method")
        if basic == "bad":
            return self._refuse(401, "invalid_client", "malformed Basic credentials")
        if self.client_auth == "basic":
            if basic is None:
                return self._refuse(401, "invalid_client", "this client must authenticate with HTTP Basic")
            client = basic
        else:
            if basic is not None or not in_body:
                return self._refuse(401, "invalid_client", "this client must send its credentials in the body")
            client = (form.get("client_id", ""), form.get("client_secret", ""))
        if client != (self.client_id, self.client_secret):
            return self._refuse(401, "invalid_client", "client authentication failed")
        for name, value in self.required_params.items():
            if form.get(name) != value:
                return self._refuse(400, "invalid_request", f"{name} must be {value}")
        grant = form.get("grant_type")
        if grant == "client_credentials":
            _, answer = self._new_access(None)
            if "scope" in form:
                answer["scope"] = form["scope"]
            return 200, answer, {}
        if grant == "refresh_token":
            presented = form.get("refresh_token", "")
            data = self._refresh.get(presented)
            if data is None:
                return self._refuse(400, "invalid_grant", "unknown refresh token")
            family = data["family"]
            if family in self._revoked_families:
                return self._refuse(400, "invalid_grant", "the refresh token was revoked")
            if data["used"]:
                # Reuse detection: whoever presents a used token may have stolen it.
                self._revoked_families.add(family)
                return self._refuse(400, "invalid_grant", "refresh token reuse detected: the grant is revoked")
            _, answer = self._new_access(family)
            if self.rotate:
                data["used"] = True
                answer["refresh_token"] = self._new_refresh(family)
            if self.drop_access:  # RFC 6749 broken: the grant was used, yet no access token
                self.drop_access -= 1
                del answer["access_token"]
            return 200, answer, {}
        return self._refuse(400, "unsupported_grant_type", f"grant_type {grant!r} is not supported")

    # -- the resources -------------------------------------------------------------------------

    def valid_bearer(self, header: str | None) -> str | None:
        """The access token of a valid ``Authorization: Bearer`` header, or None."""
        if not header or not header.startswith("Bearer "):
            return None
        token = header[len("Bearer "):]
        data = self._access.get(token)
        if data is None or data["expires"] <= time.time():
            return None
        if data["family"] is not None and data["family"] in self._revoked_families:
            return None
        return token

    def _items(self, handler: _Handler) -> tuple[int, Any, dict[str, str]]:
        header = handler.headers.get("Authorization")
        with self.lock:
            self.resource_auth.append(header)
            token = self.valid_bearer(header)
            rejected = self.reject_always or self.reject_bearer > 0
            if self.reject_bearer > 0:
                self.reject_bearer -= 1
            status = 401 if token is None or rejected else 200
            self.resource_status.append(status)
        if status == 401:
            return 401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        records = [dict(r, **({"seen_token": token, "note": f"served to Bearer {token}"} if self.echo_token else {}))
                   for r in self.records]  # fmt: skip
        return 200, records, {}

    def _basic(self, handler: _Handler) -> tuple[int, Any, dict[str, str]]:
        header = handler.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        seen = None
        if scheme == "Basic":
            try:  # RFC 7617: base64 of UTF-8 "user:password", split at the first colon
                user, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
                seen = (user, password)
            except (binascii.Error, UnicodeDecodeError):
                seen = None
        with self.lock:
            self.basic_seen.append(seen)
        if seen != (self.basic_user, self.basic_password):
            return 401, {"error": "unauthorized"}, {"WWW-Authenticate": 'Basic realm="items", charset="UTF-8"'}
        return 200, self.records, {}

    def _api(self, handler: _Handler, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = ApiRequest(handler.command, handler.path, dict(handler.headers), raw, body)
        with self.lock:
            self.api_requests.append(request)
        status, value = self.api(request)
        return status, value, {}
