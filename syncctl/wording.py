"""The words of the connector's failures: each a one-line message naming what went
wrong and a hint that fixes it (spec §7, §9), apart from the code that detects them
(``fetch.py``). Messages show URLs without their query, password or secrets."""

from __future__ import annotations

import http.client
import itertools
import re
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import requests

from syncctl.errors import SyncError, with_retry_promise
from syncctl.schedule import MAX_INTERVAL

RETRY_STATUSES = frozenset({429, 502, 503, 504})  # retried within a sync (spec §6)


class Wording:
    """One sync's error messages: redacted with its secrets, its credentials named by
    their ${VAR}s."""

    def __init__(
        self, redact: Callable[[str], str], references: Callable[[], str], timeout: float, *, posts_body: bool = False
    ) -> None:
        self.redact = redact
        self.references = references
        self.timeout = timeout
        self.posts_body = posts_body  # a refused request may be refusing its --body

    def show(self, url: str) -> str:
        """A URL fit for a message: no query string, no password, secrets redacted."""
        parts = urlsplit(url)
        netloc = bracketed(parts.hostname or "")
        if parts.port:
            netloc += f":{parts.port}"
        return self.redact(urlunsplit((parts.scheme, netloc, parts.path, "", "")))

    def transport(
        self, exc: requests.RequestException, url: str, encoding: str | None = None, *, token_endpoint: bool = False
    ) -> SyncError:
        """What went wrong below HTTP; ``encoding`` is the body's Content-Encoding label;
        ``token_endpoint``: the request was for an OAuth2 token (named so, fixed in --token-url)."""
        error = self._transport(exc, url, encoding, "--token-url" if token_endpoint else "the URL")
        if token_endpoint:
            error.message = f"the token endpoint: {error.message}"
        return error

    def _transport(self, exc: requests.RequestException, url: str, encoding: str | None, the_url: str) -> SyncError:
        host = urlsplit(url).hostname or url
        text = self.redact(str(exc))
        malformed = malformed_head(exc)
        if malformed:  # requests calls it a ConnectionError, but the same bytes come back every time
            return SyncError(
                f"the source at {self.show(url)} sent {malformed}",
                "a response syncctl will not read (a retry gets the same): fix the source, or the "
                "proxy in front of it",
            )
        if isinstance(exc, requests.exceptions.ContentDecodingError):
            label = (encoding or "").strip() or "an unknown encoding"
            return SyncError(
                f"the body from {self.show(url)} is labelled Content-Encoding: {label} "
                f"but is not valid {label}",
                "the source mislabels or corrupts its compressed body (a retry gets the same): fix "
                "the source's Content-Encoding",
            )
        if isinstance(exc, requests.exceptions.SSLError):
            return SyncError(
                f"TLS verification failed for {host}",
                "fix the server's certificate, or point REQUESTS_CA_BUNDLE at the CA bundle that signs it",
            )
        if isinstance(exc, requests.exceptions.Timeout):
            return SyncError(
                f"timed out waiting for {host} (after {self.timeout:g} s)",
                "the source is slow or down: check it, or raise the limit: syncctl edit {name} --timeout 60",
                retryable=True,
            )
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return SyncError(
                f"connection to {host} broke while reading the response",
                with_retry_promise("the source closed the connection mid-body"),
                retryable=True,
            )
        if isinstance(exc, requests.exceptions.ConnectionError):
            if any(
                s in text
                for s in (
                    "NameResolution",
                    "Name or service not known",
                    "nodename nor servname",
                    "getaddrinfo",
                    "No address",
                )
            ):
                return SyncError(
                    f"cannot resolve host {host}",
                    f"check the host name in {the_url} and this machine's DNS",
                    retryable=True,
                )
            if "refused" in text.lower():
                port = urlsplit(url).port or (443 if url.startswith("https") else 80)
                return SyncError(
                    f"connection refused by {bracketed(host)}:{port}",
                    f"is the service running? check the host and port in {the_url}",
                    retryable=True,
                )
            if "reset" in text.lower() or "aborted" in text.lower():
                return SyncError(
                    f"connection to {host} was reset",
                    with_retry_promise("the source dropped the connection"),
                    retryable=True,
                )
            return SyncError(
                f"cannot connect to {host}: {first_line(text)}",
                f"check {the_url} and the network",
                retryable=True,
            )
        return SyncError(
            f"request to {host} failed: {first_line(text)}", f"check {the_url} and the integration's options"
        )

    def status(self, response: requests.Response, excerpt: str = "", retry_after: float | None = None) -> SyncError:
        """An HTTP error status; ``excerpt``, the start of a 4xx body (sources explain
        themselves there); ``retry_after``, its Retry-After in seconds."""
        code = response.status_code
        shown = self.show(response.url)
        what = f"HTTP {code} {response.reason or ''}".rstrip() + f" from {shown}"
        if excerpt:
            what += f" ({excerpt})"
        if code in (401, 403):
            refs = self.references()
            hint = (
                f"check the credentials in {refs} (set in the environment syncctl runs in)"
                if refs
                else "the request sends no credentials: add them, e.g. "
                "--header 'Authorization: Bearer ${API_TOKEN}'"
            )
            return SyncError(f"{what}: the credentials were refused", hint)
        if code == 404:
            return SyncError(what, f"check the URL path ({urlsplit(shown).path or '/'}); fix it with: syncctl edit {{name}} --url URL")
        asked = asked_to_wait(retry_after)
        if code == 429:
            return SyncError(
                f"{what}: rate limited{asked}",
                with_retry_promise("to ask less often: syncctl edit {name} --rate-limit 1/s, or set-interval"),
                retryable=True,
                retry_after=retry_after,
            )
        if code >= 500:
            return SyncError(
                f"{what}: the source failed{asked}",
                with_retry_promise("a remote fault"),
                retryable=code in RETRY_STATUSES,
                retry_after=retry_after,
            )
        asks = "the URL, the --param values and the --body" if self.posts_body else "the URL and the --param values"
        return SyncError(what, f"check {asks}")

    def not_json(self, response: requests.Response, body: bytes, exc: ValueError) -> SyncError:
        ctype = response.headers.get("Content-Type", "no content type")
        # Redact before cutting to the first bytes: a secret straddling the cut would
        # otherwise show half of itself.
        start = self.redact(body[:4096].decode("utf-8", "replace"))
        start = re.sub(r"\s+", " ", start).strip()[:60]
        # Labelled JSON and starting like JSON: malformed or cut short. Anything else (an
        # HTML error page behind a proxy, whatever its label) is shown by its first bytes.
        if "json" in ctype.lower() and re.match(rb'\s*[\[{"\d-]|\s*(true|false|null)\b', body):
            return SyncError(
                f"invalid JSON from {self.show(response.url)} ({ctype}, {len(body)} bytes): "
                f"{first_line(str(exc))}",
                "the body was cut short or malformed; check the source",
            )
        encoding = response.headers.get("Content-Encoding", "").strip()
        if encoding.lower() not in ("", "identity") and binary(body):
            # Binary after decoding by the label (raw deflate decodes almost anything), or
            # left as it came (br, which syncctl does not decode): the label is the culprit.
            return SyncError(
                f"expected JSON from {self.show(response.url)}, got {ctype} "
                f"with Content-Encoding: {encoding}: {start!r}",
                f"check that the source's body really is {encoding} (syncctl decodes gzip and "
                "deflate) and that the URL points at the API",
            )
        return SyncError(
            f"expected JSON from {self.show(response.url)}, got {ctype}: {start!r}",
            "check that the URL points at the API, not a web page or login form",
        )

    def too_deep(self, url: str, depth: int | None) -> SyncError:
        levels = f" ({depth:,} levels)" if depth else ""
        return SyncError(
            f"JSON from {self.show(url)} is nested too deep{levels}",
            "no API nests records this deep (a retry gets the same): check the URL and the source",
        )


def too_large(size: int) -> SyncError:
    return SyncError(
        f"a page of the response exceeds 64 MiB ({size / 1048576:.0f} MiB so far)",
        "fetch smaller pages: syncctl edit {name} --paginate page:page --param per_page=1000",
    )


def asked_to_wait(retry_after: float | None) -> str:
    """", asked to wait 120 s" for a message, or nothing without a Retry-After."""
    if not retry_after:
        return ""
    if retry_after >= MAX_INTERVAL:
        days = MAX_INTERVAL // 86400
        return f", asked to wait {days} days or more (syncctl waits at most {days} days)"
    return f", asked to wait {retry_after:.0f} s"


def binary(body: bytes) -> bool:
    """Does ``body`` start like binary data rather than text (not UTF-8, or NUL bytes)?"""
    head = body[:4096]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # unless only the character cut at 4096 is incomplete
        return len(head) == len(body) or exc.start < len(head) - 3
    return b"\0" in head


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps: causes, contexts, and the ones urllib3 and
    requests carry as arguments (``ProtocolError('Connection aborted.', LineTooLong(…))``)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = (current.__cause__, current.__context__, getattr(current, "reason", None), *current.args)
        todo.extend(x for x in wrapped if isinstance(x, BaseException))


def malformed_head(exc: BaseException) -> str | None:
    """What http.client refused in a response's head ("a header line longer than 64 KiB",
    "more than 100 headers"), or None for any other failure."""
    for cause in causes(exc):
        if isinstance(cause, http.client.LineTooLong):
            # Its only record of which line: "got more than 65536 bytes when reading header line".
            line = str(cause).rpartition("when reading ")[2] or "line"
            line = line if line.endswith("line") else f"{line} line"
            return f"a {line} longer than {getattr(http.client, '_MAXLINE', 65536) // 1024} KiB"
        if type(cause) is http.client.HTTPException and "headers" in str(cause):
            return f"more than {getattr(http.client, '_MAXHEADERS', 100)} headers"
    return None


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # unrolled: linear even unterminated
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = tuple(1 if b in b"[{" else -1 for b in range(256))


def nesting(body: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets in strings skipped);
    only for the message of a body too deep to parse."""
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKET)
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def bracketed(host: str) -> str:
    """An IPv6 address as it is written in a URL: [::1]."""
    return f"[{host}]" if ":" in host else host


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def source_text(text: str, limit: int = 200) -> str:
    """What a source wrote (an error body, a GraphQL or token-endpoint message), fit for one
    line on an operator's terminal: whitespace runs as one space, any other control
    character (an ESC that would clear or recolour the screen, NUL, DEL) as ``?``, cut at
    ``limit`` characters. Redact before: a cut never shows half a secret."""
    text = _CONTROL.sub("?", re.sub(r"\s+", " ", text)).strip()
    return text[:limit] + ("…" if len(text) > limit else "")


def first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else "no detail"
