"""The HTTP JSON connector: requests, pagination, record extraction, retries within a
sync, rate limiting, and the classification of every failure into a message with a hint.

Imported only when a sync actually runs (it pulls in requests and backoff).
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import json
import logging
import math
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import backoff
import requests

from syncctl import wording
from syncctl.auth import origin
from syncctl.config import IntegrationConfig
from syncctl.errors import SyncError, with_retry_promise
from syncctl.pagination import BODY_PARAM, PageSeen
from syncctl.records import arrays_of_objects, hashed_count, keyed, page_cursor, records_at
from syncctl.schedule import MAX_INTERVAL
from syncctl.secrets import Secrets, uses_secret
from syncctl.wording import Wording, source_text

MAX_PAGE_BYTES = 64 * 1024 * 1024
RETRY_TRIES = 3
RETRY_BUDGET_SECONDS = 60.0
MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Giving up is recorded in the sync log; the library must not print its own lines.
logging.getLogger("backoff").addHandler(logging.NullHandler())
logging.getLogger("backoff").propagate = False
logging.getLogger("urllib3").propagate = False


# -- rate limiting and cancellation ------------------------------------------------------


class RateLimiter:
    """Spaces calls at least ``1 / per_second`` apart; shared safely between threads."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Wait for our turn; ``sleep`` may return early (a cancelled sync's)."""
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + self.interval
        if at > now:
            sleep(at - now)


class Cancel:
    """Ends one sync from another thread: the per-sync timeout and signal handling both
    use it. Cancelling shuts down the socket being read, so even a source that drips
    one byte a second is cut off at once."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._sock: socket.socket | None = None
        self._event = threading.Event()
        self._lock = threading.Lock()

    def cancel(self, reason: str) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
            sock = self._sock
        self._event.set()
        if sock is not None:
            _shutdown(sock)

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once when cancelled."""
        self._event.wait(seconds)

    def watch(self, sock: socket.socket | None) -> None:
        """The socket being read now (while the status line and headers arrive, then the
        body), or None: a cancel shuts it down, which ends any blocked read at once."""
        with self._lock:
            self._sock = sock
            cancelled = self.reason is not None
        if cancelled and sock is not None:
            _shutdown(sock)


class _Deadlines:
    """Cancels each watched sync at its deadline ("timeout"), with one thread for the
    whole process, started at the first sync: a timer thread per sync cost more CPU than
    many a small sync's own work."""

    def __init__(self) -> None:
        self._due: dict[Cancel, float] = {}  # the syncs running, by their monotonic deadline
        self._wakes_at = math.inf
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, cancel: Cancel, deadline: float) -> Iterator[None]:
        """Cancel ``cancel`` at ``deadline`` (``time.monotonic``) unless the block ends first."""
        with self._changed:
            self._due[cancel] = deadline
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sync-deadlines", daemon=True)
                self._thread.start()
            if deadline < self._wakes_at:
                self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._due.pop(cancel, None)

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                late = [cancel for cancel, deadline in self._due.items() if deadline <= now]
                for cancel in late:
                    del self._due[cancel]
                    cancel.cancel("timeout")  # takes only the Cancel's own lock, never ours
                self._wakes_at = min(self._due.values(), default=math.inf)
                self._changed.wait(None if self._wakes_at == math.inf else self._wakes_at - now)


deadlines = _Deadlines()


def _socket_of(response: requests.Response) -> socket.socket | None:
    connection = getattr(response.raw, "connection", None) or getattr(response.raw, "_connection", None)
    return getattr(connection, "sock", None)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed: nothing left to cut off
        sock.shutdown(socket.SHUT_RDWR)


# The Cancel of the sync each worker thread is running, for the connections below.
_active = threading.local()


def _watched(base: type) -> type:
    """A urllib3 connection class that hands its socket to the thread's Cancel while it
    waits for the response's status line and headers."""

    class Watched(base):  # type: ignore[valid-type, misc]
        def getresponse(self, *args: Any, **kwargs: Any) -> Any:
            cancel = getattr(_active, "cancel", None)
            if cancel is None:
                return super().getresponse(*args, **kwargs)
            cancel.watch(self.sock)
            try:
                return super().getresponse(*args, **kwargs)
            finally:
                cancel.watch(None)

    Watched.__name__ = f"Watched{base.__name__}"
    return Watched


class Cancelled(Exception):
    """The sync was cancelled (timeout or signal); ``Cancel.reason`` says why."""


# -- the connector -----------------------------------------------------------------------


@dataclass
class Page:
    """One page as fetched: its records as stored, and what the sync notices about it."""

    number: int
    records: list[tuple[str, str]]  # (key, JSON)
    objects: list[Any] | None = None  # the same records as parsed (secrets scrubbed), for the data table
    cursor: Any = None  # the largest incremental FIELD value among its records
    hashed: int = 0  # records keyed by a hash (they lack the key field)
    whole_body: bool = False  # the body was an object taken as one record
    arrays: list[tuple[str, int]] = field(default_factory=list)  # arrays of objects in such a body
    # Only for `check` (keep_bodies=True): the page as the source sent it.
    body: Any = None
    where: str | None = None
    status: int = 0
    content_type: str | None = None
    link_next: bool = False


NOT_MODIFIED = object()  # what _get returns for a 304


def overriding(fixed: list[tuple[str, Any]], chosen: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """A request's query: the integration's fixed parameters, where a parameter syncctl
    sets itself (the incremental cursor, a page number or page cursor) replaces any of the
    same name. So a fixed ``--param since=…`` is where the first sync starts, and never
    goes out beside the cursor."""
    chosen = list(chosen)
    names = {name for name, _ in chosen}
    return [(k, v) for k, v in fixed if k not in names] + chosen


class Connector:
    """Fetches one integration's pages. ``pages()`` yields one page at a time, so memory
    stays bounded by one page however many there are. Afterwards, ``complete`` says
    whether every page was fetched (not cut by --max-pages), ``not_modified`` whether the
    source answered 304, and ``validators`` the (ETag, Last-Modified) it sent."""

    def __init__(
        self,
        url: str,
        config: IntegrationConfig,
        *,
        session: requests.Session,
        secrets: Secrets,
        deadline: float,
        cancel: Cancel,
        global_limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        cursor: str | None = None,
        validators: tuple[str | None, str | None] = (None, None),
        keep_bodies: bool = False,
        tokens: Any = None,
    ) -> None:
        self.config = config
        self.session = session
        self.secrets = secrets
        self.deadline = deadline
        self.cancel = cancel
        self.clock = clock
        self.rng = rng or random.Random()
        self.timeout = config.timeout
        self.errors = Wording(secrets.redact, secrets.references, config.timeout, posts_body=config.body is not None)
        integration_limiter = RateLimiter(config.rate_limit.per_second) if config.rate_limit else None
        self.limiters = [x for x in (global_limiter, integration_limiter) if x]
        # Expand every ${VAR} up front: a missing variable, or a value that cannot be
        # sent, fails before any request.
        self.url = secrets.expand_url(url)
        self.headers = {k: secrets.expand_header(k, v) for k, v in config.headers.items()}
        self.secret_headers = {k for k, v in config.headers.items() if uses_secret(v)}
        self.params = [
            (k, secrets.expand_param(v))
            for k, vs in config.params.items()
            for v in (vs if isinstance(vs, list) else [vs])
        ]
        if config.incremental and cursor is not None:  # no cursor, no PARAM
            self.params = overriding(self.params, [(config.incremental.param, cursor)])
        self.method = config.method
        self.body = _expand_body(config.body, secrets) if config.body is not None else None
        self.secret_body = config.body is not None and uses_secret(json.dumps(config.body))
        self.origin = origin(self.url)
        self.auth = _auth(config, secrets, tokens, self._token_request)
        # Conditional requests only where one request is the whole answer: no pages, and
        # no cursor that changes the query from one sync to the next.
        self.conditional = not config.pagination.paginated and config.incremental is None and self.method == "GET"
        self.sent_validators = validators if self.conditional else (None, None)
        self.keep_bodies = keep_bodies
        self.complete = False
        self.not_modified = False
        self.validators: tuple[str | None, str | None] = (None, None)
        self.graphql_errors: list[str] = []  # the errors a body with records carried (a warning)

    def redact(self, text: str) -> str:
        return self.secrets.redact(text)

    def pages(self) -> Iterator[Page]:
        config = self.config
        pagination = config.pagination
        request = pagination.first()
        seen = {request}
        etag, modified = self.sent_validators
        conditional = {k: v for k, v in (("If-None-Match", etag), ("If-Modified-Since", modified)) if v}
        for number in range(1, config.max_pages + 1):
            if request.url is None:
                url, params = self.url, overriding(self.params, request.params)
            else:
                url, params = request.url, list(request.params)
            body, response = self._get(url, params, conditional if number == 1 else {})
            if body is NOT_MODIFIED:
                self.not_modified = True
                return
            if self.conditional:
                self.validators = (response.headers.get("ETag"), response.headers.get("Last-Modified"))
            records, where = self._records(body)
            # Asked per page: a token learnt during the sync (the first request fetched it) is a secret too.
            secrets = self.secrets if self.secrets.values else None
            try:
                pairs = keyed(records, config.key, secrets)
            except RecursionError:  # parsed, but too deep to encode again for storage
                raise self.errors.too_deep(response.url, None) from None
            page = Page(number, pairs, records, hashed=hashed_count(records, pairs, config.key))
            if where is None:
                page.whole_body = True
                page.arrays = arrays_of_objects(body)
            if config.incremental:
                page.cursor = page_cursor(records, config.incremental.field)
            following = pagination.next(PageSeen(number, body, response.url, response.links, not records))
            if self.keep_bodies:
                page.body, page.where, page.status = body, where, response.status_code
                page.content_type = response.headers.get("Content-Type")
                page.link_next = "next" in response.links
            del records, body
            yield page
            if following is None or following in seen:
                self.complete = True
                return
            seen.add(following)
            request = following

    def _records(self, body: Any) -> tuple[list[Any], str | None]:
        """The page's records; a GraphQL-style ``errors`` array fails the page when it
        holds no records, and is kept as a warning when it does."""
        messages = _error_messages(body)
        if not messages:
            return records_at(body, self.config.records_path)
        try:
            records, where = records_at(body, self.config.records_path)
        except SyncError:
            records, where = [], None
        if not records or where is None:
            raise SyncError(
                f"the source answered with errors: {source_text(self.redact(messages[0]), 300)}"
                + (f" (and {len(messages) - 1} more)" if len(messages) > 1 else ""),
                "check the query and its variables in --body (syncctl show {name}); try it with: syncctl check {name}",
            )
        shown = [source_text(self.redact(m), 300) for m in messages]
        self.graphql_errors += [m for m in shown if m not in self.graphql_errors]
        return records, where

    # -- one request, with retries within the sync -----------------------------------------

    def _get(
        self, url: str, params: list[tuple[str, str]], extra_headers: Mapping[str, str] | None = None
    ) -> tuple[Any, requests.Response]:
        started = self.clock()
        tries = {"n": 0}

        def giveup(exc: SyncError) -> bool:
            if not exc.retryable:
                return True
            wait = exc.retry_after or 0
            return self.clock() - started + wait > RETRY_BUDGET_SECONDS or wait > self._remaining()

        def waits() -> Iterator[float]:
            exc = yield 0.0
            attempt = 0
            while True:
                attempt += 1
                if exc.retry_after:
                    wait = exc.retry_after
                else:  # exponential with full jitter
                    wait = self.rng.uniform(0, 2 ** (attempt - 1))
                exc = yield min(wait, max(self._remaining(), 0))

        def count(details: dict[str, Any]) -> None:
            tries["n"] = details["tries"]

        attempt = backoff.on_exception(
            waits,
            SyncError,
            max_tries=RETRY_TRIES,
            max_time=RETRY_BUDGET_SECONDS,
            jitter=None,
            giveup=giveup,
            on_giveup=count,
            logger=None,
        )(self._get_once)
        try:
            return attempt(url, params, extra_headers or {})
        except SyncError as exc:
            if exc.retryable and tries["n"] > 1:
                exc.message = f"{exc.message} (gave up after {tries['n']} tries)"
            raise

    def _remaining(self) -> float:
        return self.deadline - self.clock()

    def _check_cancel(self) -> None:
        if self.cancel.reason is not None or self._remaining() <= 0:
            raise Cancelled(self.cancel.reason or "timeout")

    def _get_once(
        self, url: str, params: list[tuple[str, str]], extra_headers: Mapping[str, str]
    ) -> tuple[Any, requests.Response]:
        self._check_cancel()
        for limiter in self.limiters:
            limiter.wait(self.cancel.sleep)
            self._check_cancel()
        response = self._send(url, params, extra_headers)
        if response.status_code == 304 and extra_headers:
            response.close()
            return NOT_MODIFIED, response
        try:
            if response.status_code >= 400:
                raise self._status_error(response)
            body = self._read(response)
        finally:
            response.close()
        try:
            return json.loads(body), response
        except ValueError as exc:
            raise self.errors.not_json(response, body, exc) from None
        except RecursionError:  # the parser recurses once per level of nesting
            raise self.errors.too_deep(response.url, wording.nesting(body)) from None

    def _send(
        self, url: str, params: list[tuple[str, str]], extra_headers: Mapping[str, str] | None = None
    ) -> requests.Response:
        """One request, its credentials and its redirects (httpx's layering): a 401 from
        the source gets one fresh credential and one retry (OAuth2)."""
        response = self._send_handling_redirects(url, params, extra_headers)
        if response.status_code == 401 and self.auth is not None and self.auth.refreshable:
            response.close()
            self.auth.refresh()
            response = self._send_handling_redirects(url, params, extra_headers)
        return response

    def _send_handling_redirects(
        self, url: str, params: list[tuple[str, Any]], extra_headers: Mapping[str, str] | None = None
    ) -> requests.Response:
        """Follow redirects by hand so that credentials (${VAR} headers, Basic, a bearer
        token) never leave the integration's origin; a 307/308 keeps a POST and its body."""
        query = [(k, v) for k, v in params if not k.startswith(BODY_PARAM)]
        body = _with_body_params(self.body, params) if self.method == "POST" else None
        method = self.method
        for _ in range(MAX_REDIRECTS + 1):
            self._check_cancel()
            headers = {**self.headers, **(extra_headers or {})}
            if origin(url) != self.origin:
                for name in self.secret_headers:
                    headers.pop(name, None)
                if body is not None and self.secret_body:  # a body cannot lose a part: it is not sent
                    raise SyncError(
                        f"the source sent the request on to {self.errors.show(url)}, another origin than "
                        f"{self.origin[0]}://{self.origin[1]}:{self.origin[2]}; the request body holds ${{VAR}} values, which "
                        "never leave the integration's origin",
                        "if that origin is the right one, point the integration at it: syncctl edit {name} --url URL",
                    )
            elif self.auth is not None:
                headers.update(self.auth.headers())
            response = self._send_single_request(method, url, query, body, headers)
            if response.status_code in REDIRECT_STATUSES:
                location = response.headers.get("Location", "").strip()
                response.close()
                if not location:
                    raise SyncError(
                        f"HTTP {response.status_code} redirect without a Location header from "
                        f"{self.errors.show(response.url)}",
                        "the source redirects without saying where to: check the URL (curl -i shows the "
                        "response) and fix it with: syncctl edit {name} --url URL, or fix the source",
                    )
                url, query = urljoin(response.url, location), []
                if response.status_code not in (307, 308):
                    method, body = "GET", None
                continue
            return response
        raise SyncError(
            f"too many redirects from {self.errors.show(url)}", "check the URL: the source redirects in a loop"
        )

    def _send_single_request(
        self, method: str, url: str, query: list[tuple[str, Any]], body: Any, headers: dict[str, str]
    ) -> requests.Response:
        timeout = max(0.001, min(self.timeout, self._remaining()))
        _active.cancel = self.cancel
        try:
            return self.session.request(
                method,
                url,
                params=query or None,
                json=body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                stream=True,
                **_environment(url, own_credentials=any(name.lower() == "authorization" for name in headers)),
            )
        except requests.RequestException as exc:
            self._check_cancel()
            raise self.errors.transport(exc, url) from None
        finally:
            _active.cancel = None

    def _token_request(self, url: str, form: dict[str, str], basic: tuple[str, str] | None) -> dict[str, Any]:
        """POST a token request (RFC 6749 §4.4, §6): the endpoint's JSON answer, its
        refusals included; its faults (connection, timeout, 5xx) retried like the source's."""
        from urllib.parse import quote

        from requests.auth import HTTPBasicAuth

        self._check_cancel()
        # RFC 6749 §2.3.1: the client id and secret are form-encoded before Basic encoding.
        auth = HTTPBasicAuth(quote(basic[0], safe=""), quote(basic[1], safe="")) if basic else None
        timeout = max(0.001, min(self.timeout, self._remaining()))
        _active.cancel = self.cancel
        try:
            response = self.session.post(url, data=form, auth=auth, headers={"Accept": "application/json"},
                                         timeout=timeout, allow_redirects=False, stream=True,
                                         **_environment(url, own_credentials=auth is not None))  # fmt: skip
        except requests.RequestException as exc:
            self._check_cancel()
            raise self.errors.transport(exc, url, token_endpoint=True) from None
        finally:
            _active.cancel = None
        try:
            if response.status_code >= 500 or response.status_code == 429:
                raise SyncError(
                    f"the token endpoint {self.errors.show(url)} failed: HTTP {response.status_code}",
                    with_retry_promise("a fault of the token endpoint"),
                    retryable=True,
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                )
            body = self._read(response)
        finally:
            response.close()
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) and response.status_code in (401, 403):
            answer = {}  # a bare refusal of the client: judged below like invalid_client
        if not isinstance(answer, dict):
            raise SyncError(
                f"the token endpoint {self.errors.show(url)} answered HTTP {response.status_code} without a JSON object",
                "check --token-url: it should be the provider's OAuth2 token endpoint",
            )
        if response.status_code >= 400 and "error" not in answer:
            answer["error"] = f"HTTP {response.status_code}"
        return answer

    def _read(self, response: requests.Response) -> bytes:
        """The body, at most 64 MiB, cut off by the deadline or a cancel."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_PAGE_BYTES:
            raise wording.too_large(int(declared))
        body = bytearray()
        self.cancel.watch(_socket_of(response))
        try:
            for chunk in response.iter_content(1 << 16):
                body += chunk
                if len(body) > MAX_PAGE_BYTES:
                    raise wording.too_large(len(body))
                self._check_cancel()
        except requests.RequestException as exc:
            self._check_cancel()
            raise self.errors.transport(exc, response.url, response.headers.get("Content-Encoding")) from None
        finally:
            self.cancel.watch(None)
        return bytes(body)

    # -- errors with hints (their words: syncctl/wording.py) -----------------------------

    def _excerpt(self, response: requests.Response) -> str:
        """The first 200 characters of an error response's body, redacted, on one line:
        sources explain themselves there ("_size must be <= 1000")."""
        data = bytearray()
        self.cancel.watch(_socket_of(response))
        try:
            for chunk in response.iter_content(4096):
                data += chunk
                if len(data) >= 4096:
                    break
        except (requests.RequestException, OSError):
            pass  # the status says enough; the body was only a courtesy
        finally:
            self.cancel.watch(None)
        # Redact before cutting: a secret straddling the cut would show half of itself.
        return source_text(self.redact(re.sub(r"\s+", " ", data[:4096].decode("utf-8", "replace"))))

    def _status_error(self, response: requests.Response) -> SyncError:
        excerpt = self._excerpt(response) if 400 <= response.status_code < 500 else ""
        return self.errors.status(response, excerpt, parse_retry_after(response.headers.get("Retry-After")))



def _expand_body(value: Any, secrets: Secrets) -> Any:
    """The body with ${VAR} in its strings expanded: as JSON strings when it is sent, so
    a value is data, never JSON structure."""
    if isinstance(value, str):
        return secrets.expand_param(value)
    if isinstance(value, list):
        return [_expand_body(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: _expand_body(v, secrets) for k, v in value.items()}
    return value


def _with_body_params(body: Any, params: list[tuple[str, Any]]) -> Any:
    """The body with each ``body:DOTTED.PATH`` parameter set at its path (objects made on
    the way); the stored body is never changed."""
    chosen = [(k[len(BODY_PARAM):], v) for k, v in params if k.startswith(BODY_PARAM)]
    if not chosen:
        return body
    body = json.loads(json.dumps(body if body is not None else {}))
    for path, value in chosen:
        target = body
        *parents, last = path.split(".")
        for part in parents:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[last] = value
    return body


def _error_messages(body: Any) -> list[str]:
    """The messages of a GraphQL-style top-level ``errors`` array (empty: none)."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors:
        return []
    return [str(e.get("message")) if isinstance(e, dict) and e.get("message") else json.dumps(e)[:200]
            for e in errors]  # fmt: skip


def _auth(config: IntegrationConfig, secrets: Secrets, tokens: Any, request: Any) -> Any:
    """The integration's auth object (syncctl.auth), or None."""
    if config.auth is None:
        return None
    from syncctl import auth

    if config.auth.kind == "basic":
        return auth.BasicAuth(config.auth, secrets)
    if tokens is None:
        tokens = auth.TokenKeeper(None, None, None, {}, "", _utcnow)
    return auth.OAuth2(config.auth, secrets, tokens, request)


def _utcnow() -> Any:
    from syncctl.timeutil import utcnow

    return utcnow()


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), at most the
    largest interval (365 days); None for 0, negative or unreadable values, which fall
    back to the normal backoff."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return min(seconds, MAX_INTERVAL)  # the one cap: no server parks an integration for longer


class _Adapter(requests.adapters.HTTPAdapter):
    """Connection pools whose connections report their socket to the sync's Cancel."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        from urllib3.connection import HTTPConnection, HTTPSConnection
        from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

        super().init_poolmanager(*args, **kwargs)
        http = type("WatchedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": _watched(HTTPConnection)})
        https = type(
            "WatchedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": _watched(HTTPSConnection)}
        )
        self.poolmanager.pool_classes_by_scheme = {"http": http, "https": https}


def _environment(url: str, *, own_credentials: bool) -> dict[str, Any]:
    """requests' settings from the environment for a request to ``url``. A login from
    ~/.netrc is a fallback, as with curl --netrc: a request that carries credentials of
    its own (--auth, an Authorization header, the OAuth2 client's Basic) keeps them;
    requests would otherwise put the netrc login over them."""
    settings = _from_environment(*_scheme_and_host(url))
    if own_credentials and "auth" in settings:
        return {name: value for name, value in settings.items() if name != "auth"}
    return settings


@functools.lru_cache(maxsize=64)
def _from_environment(scheme: str, host: str) -> dict[str, Any]:
    """What requests takes from the environment for a request to this origin (a proxy
    unless NO_PROXY covers it, REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, ~/.netrc), asked of
    requests once per origin and process rather than on every request: scanning the
    environment cost more CPU than the rest of a small request. Our sessions have
    ``trust_env`` off and pass these instead."""
    from requests.utils import get_netrc_auth

    url = f"{scheme}://{host}/"
    found = requests.Session().merge_environment_settings(url, {}, None, True, None)
    settings = {"proxies": found["proxies"], "verify": found["verify"], "auth": get_netrc_auth(url)}
    # Only what differs from a session's defaults (each one passed costs requests a merge).
    return {name: value for name, value in settings.items() if value not in ({}, True, None)}


def _scheme_and_host(url: str) -> tuple[str, str]:
    """The scheme and host[:port] of ``url`` as written (without any user:password@)."""
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.rpartition("@")[2]


def new_session() -> requests.Session:
    """A session (connection pool) for one worker thread; what requests would read from
    the environment on every request comes from ``_from_environment``."""
    session = requests.Session()
    session.trust_env = False
    adapter = _Adapter(pool_connections=16, pool_maxsize=16, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "syncctl"
    return session
