"""HTTP sources on 127.0.0.1 for tests: healthy ones and misbehaving ones.

The one test server of the suite: a real threaded ``http.server`` (Nagle off, optionally
TLS) whose routes are plain functions that write the response themselves, straight to the
socket when they need to misbehave: hang, drip bytes, reset the connection mid-body, lie
about the length, or stream more than 64 MiB. Tests get a started one from the ``source``
fixture (tests/conftest.py), or start more with ``with HTTPSource() as other:``.

    url = source.add("/items", json_body([{"id": 1}]))
    slow = source.add("/slow", drip(b'[{"id": 1}]', every=0.3))

Gates instead of sleeps: ``source.wait_hits(path)`` returns once a request reached
``path``; a route wrapped in ``gated(behaviour, gate)`` answers only once the test calls
``gate.set()`` (``gate = source.gate()``), so "the sync is still running" holds for as
long as the test needs it, however slow the machine.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Behaviour = Callable[["SourceHandler"], None]
GUARD = 120.0  # seconds: a generous guard against hangs, never a timing assertion


class SourceHandler(BaseHTTPRequestHandler):
    """Dispatches each GET to the route registered for its path."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        if hasattr(self.request, "do_handshake"):  # TLS: shake hands in this thread, not the server's
            self.request.do_handshake()
        super().setup()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        source = self.server.source
        with source.seen:
            source.hits[parts.path] += 1
            source.requests.append((parts.path, self.path, dict(self.headers)))
            behaviour = source.routes.get(parts.path)
            source.seen.notify_all()
        if behaviour is None:
            send(self, 404, b'{"error": "no such route"}')
            return
        try:
            behaviour(self)
        except OSError:  # the client went away (timeout, cancel): not the source's problem
            self.close_connection = True

    def do_POST(self) -> None:  # noqa: N802 - webhooks and pings: the body is kept, then routed like a GET
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        source = self.server.source
        with source.lock:
            source.bodies.append((urlsplit(self.path).path, self.path, body))
        self.do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output clean
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    source: HTTPSource

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], OSError):  # a client hanging up is not news
            super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class HTTPSource:
    """A threaded HTTP server on 127.0.0.1 with routes set by the test. With
    ``ssl_context`` (see :func:`self_signed_context`) it speaks HTTPS; with ``host="::1"``
    it listens on the IPv6 loopback (OSError where there is none)."""

    def __init__(self, ssl_context: Any = None, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Behaviour] = {}
        self.hits: Counter[str] = Counter()
        # (path, request target with its query, headers) of each request, in order
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.bodies: list[tuple[str, str, bytes]] = []  # (path, request target, body) of each POST
        self.lock = threading.Lock()
        self.seen = threading.Condition(self.lock)  # notified on every request
        self.stopping = threading.Event()  # misbehaving routes stop stalling when set
        self.gates: list[threading.Event] = []
        self.host = host
        self.server = (_Server6 if ":" in host else _Server)((host, 0), SourceHandler)
        self.server.source = self
        self.scheme = "http"
        if ssl_context is not None:
            # The handshake happens in the handler's thread, on its first read.
            self.server.socket = ssl_context.wrap_socket(
                self.server.socket, server_side=True, do_handshake_on_connect=False
            )
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()

    def url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{path}"

    def add(self, path: str, behaviour: Behaviour) -> str:
        """Serve ``behaviour`` at ``path`` (replacing what was there); returns its URL."""
        with self.lock:
            self.routes[path] = behaviour
        return self.url(path)

    def count(self, path: str) -> int:
        """How many requests reached ``path`` so far."""
        with self.lock:
            return self.hits[path]

    def wait_hits(self, path: str, n: int = 1, guard: float = GUARD) -> None:
        """Return once ``n`` requests have reached ``path`` (an event, not a sleep);
        ``guard`` seconds is a hang guard only."""
        with self.seen:
            if not self.seen.wait_for(lambda: self.hits[path] >= n, timeout=guard):
                raise AssertionError(f"gave up after {guard} s waiting for {n} request(s) to {path}")

    def queries(self, path: str | None = None) -> list[dict[str, str]]:
        """The query of each request (to ``path``, or to any), in order: ``{name: last value}``."""
        with self.lock:
            return [
                {k: v[-1] for k, v in parse_qs(urlsplit(target).query, keep_blank_values=True).items()}
                for seen_path, target, _ in self.requests
                if path is None or seen_path == path
            ]

    def gate(self) -> threading.Event:
        """A gate for :func:`gated`: the route waits until the test calls ``gate.set()``
        (closing the source opens every gate, so nothing is left hanging)."""
        gate = threading.Event()
        with self.lock:
            self.gates.append(gate)
        return gate

    def close(self) -> None:
        self.stopping.set()
        with self.lock:
            for gate in self.gates:
                gate.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> HTTPSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- writing responses -------------------------------------------------------------------


def send(
    handler: SourceHandler,
    status: int,
    body: bytes,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> None:
    """A complete, well-formed response."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


def send_json(handler: SourceHandler, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
    """A complete JSON response (for routes that compute theirs)."""
    send(handler, status, json.dumps(value).encode(), headers=headers)


def stall(handler: SourceHandler, seconds: float) -> None:
    """Wait, but give up as soon as the source closes."""
    handler.server.source.stopping.wait(seconds)


def hard_close(handler: SourceHandler) -> None:
    """Close with SO_LINGER 0: the peer gets a TCP RST, not an orderly FIN."""
    handler.wfile.flush()
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()
    handler.close_connection = True


# -- healthy behaviours -------------------------------------------------------------------


def json_body(
    value: Any, status: int = 200, headers: dict[str, str] | None = None, delay: float = 0.0
) -> Behaviour:
    """Answer ``value`` as JSON (after ``delay`` seconds)."""
    body = json.dumps(value).encode()

    def behave(handler: SourceHandler) -> None:
        if delay:
            stall(handler, delay)
        send(handler, status, body, headers=headers)

    return behave


def raw_body(
    body: bytes, status: int = 200, content_type: str = "application/json", headers: dict[str, str] | None = None
) -> Behaviour:
    """Answer exactly these bytes (which need not be valid JSON)."""

    def behave(handler: SourceHandler) -> None:
        send(handler, status, body, content_type, headers)

    return behave


def text_body(text: str, status: int = 200, headers: dict[str, str] | None = None) -> Behaviour:
    """Answer plain text (an error page, say)."""
    return raw_body(text.encode(), status, "text/plain; charset=utf-8", headers)


def dynamic(make: Callable[[SourceHandler], tuple[int, Any]], delay: Callable[[], float] | None = None) -> Behaviour:
    """Answer JSON computed per request: ``make(handler) -> (status, value)``."""

    def behave(handler: SourceHandler) -> None:
        if delay:
            stall(handler, delay())
        status, value = make(handler)
        send(handler, status, json.dumps(value).encode())

    return behave


def sequence(*behaviours: Behaviour) -> Behaviour:
    """Answer with ``behaviours`` in turn, then keep repeating the last. The returned
    behaviour's ``arrived`` list holds when each request came (``time.monotonic()``)."""
    arrived: list[float] = []
    lock = threading.Lock()

    def behave(handler: SourceHandler) -> None:
        with lock:
            arrived.append(time.monotonic())
            turn = len(arrived)
        behaviours[min(turn, len(behaviours)) - 1](handler)

    behave.arrived = arrived  # type: ignore[attr-defined]
    return behave


def gated(behaviour: Behaviour, gate: threading.Event) -> Behaviour:
    """Hold each request until the test opens ``gate`` (from ``source.gate()``), then
    ``behaviour``: the sync stays in flight for exactly as long as the test needs."""

    def behave(handler: SourceHandler) -> None:
        gate.wait(3600)
        behaviour(handler)

    return behave


# -- misbehaving behaviours ---------------------------------------------------------------


def hang(seconds: float = 3600.0) -> Behaviour:
    """Accept the request and never answer (until the source closes)."""

    def behave(handler: SourceHandler) -> None:
        stall(handler, seconds)
        handler.close_connection = True

    return behave


def start_body(handler: SourceHandler, declared: int, sent: bytes) -> None:
    """A 200 whose headers declare ``declared`` bytes of JSON, and the first ``sent`` of them."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(declared))
    handler.end_headers()
    handler.wfile.write(sent)
    handler.wfile.flush()


def hang_mid_body(declared: int = 1_000_000, sent: bytes = b'[{"id": 1}, ') -> Behaviour:
    """Send headers declaring ``declared`` bytes and the start of the body, then nothing
    more until the source closes."""

    def behave(handler: SourceHandler) -> None:
        start_body(handler, declared, sent)
        stall(handler, 3600)
        handler.close_connection = True

    return behave


def drip(body: bytes, every: float = 0.3, headers_too: bool = False, pad: int = 0) -> Behaviour:
    """Send the response one byte every ``every`` seconds: each read succeeds, so no
    per-read timeout ever fires. With ``headers_too`` the status line and headers drip as
    well (``pad`` adds that many bytes of an extra header to drip through)."""

    def behave(handler: SourceHandler) -> None:
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            + (f"X-Pad: {'a' * pad}\r\n" if pad else "")
            + "\r\n"
        ).encode()
        handler.close_connection = True
        if not headers_too:
            handler.wfile.write(head)
            handler.wfile.flush()
            head = b""
        for i in range(len(head + body)):
            if handler.server.source.stopping.wait(every):
                return
            handler.wfile.write((head + body)[i : i + 1])
            handler.wfile.flush()

    return behave


def reset_mid_body(declared: int = 100_000, sent: bytes = b'[{"id": 1}, {"id": 2}, ') -> Behaviour:
    """Send headers declaring ``declared`` bytes, part of the body, then a TCP reset."""

    def behave(handler: SourceHandler) -> None:
        start_body(handler, declared, sent)
        time.sleep(0.05)  # let the client start reading the body before the reset
        hard_close(handler)

    return behave


def huge_body(size: int = 65 * 1024 * 1024 + 1, declare_length: bool = False) -> Behaviour:
    """A JSON array bigger than syncctl's 64 MiB page limit, streamed without (or with)
    a Content-Length. Stops quietly when the client hangs up."""
    chunk = b'{"id": 0, "pad": "' + b"x" * 65_000 + b'"},'

    def behave(handler: SourceHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if declare_length:
            handler.send_header("Content-Length", str(size))
        else:
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        handler.wfile.write(b"[")
        written = 1
        while written < size and not handler.server.source.stopping.is_set():
            handler.wfile.write(chunk)
            written += len(chunk)

    return behave


def echo(status: int, content_type: str = "application/json", prefix: str = "") -> Behaviour:
    """Answer with the request line, its headers and its query echoed back in the body
    (as servers' error pages often do), so anything secret in the request is in the body."""

    def behave(handler: SourceHandler) -> None:
        text = prefix + f"{handler.command} {handler.path}\n" + "".join(
            f"{k}: {v}\n" for k, v in handler.headers.items()
        )
        if "json" in content_type:
            text = json.dumps({"error": "echo", "request": text, "query": handler.query})
        send(handler, status, text.encode(), content_type)

    return behave


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def self_signed_context(folder: Any, host: str = "127.0.0.1") -> Any:
    """A server-side ``ssl.SSLContext`` with a fresh self-signed certificate for ``host``
    (an IP address), written to ``folder``: TLS that no client verification accepts."""
    import datetime
    import ipaddress
    import ssl
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = Path(folder) / "cert.pem", Path(folder) / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


def gzip_bomb(expanded_mib: int = 128) -> Behaviour:
    """A few hundred KiB on the wire, ``Content-Encoding: gzip``, that inflate to
    ``expanded_mib`` MiB: the 64 MiB page limit must count the decoded body."""
    import zlib

    packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # 31: a gzip header
    spaces = b" " * (1024 * 1024)
    blob = packer.compress(b"[") + b"".join(packer.compress(spaces) for _ in range(expanded_mib)) + packer.flush()

    def behave(handler: SourceHandler) -> None:
        send(handler, 200, blob, headers={"Content-Encoding": "gzip"})

    return behave


# -- malformed responses (spec §9: a source's faults) ------------------------------------------


def raw_response(head: bytes, body: bytes = b"") -> Behaviour:
    """Write exactly these bytes, status line and headers included, then close: for
    responses http.server would never produce. Stops quietly when the client hangs up."""

    def behave(handler: SourceHandler) -> None:
        handler.close_connection = True
        handler.wfile.write(head + body)
        handler.wfile.flush()

    return behave


def long_header(size: int = 1024 * 1024) -> Behaviour:
    """A 200 whose one header line is ``size`` bytes long."""
    return raw_response(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Big: " + b"a" * size
        + b"\r\nContent-Length: 2\r\n\r\n",
        b"[]",
    )


def many_headers(count: int = 5000) -> Behaviour:
    """A 200 with ``count`` headers."""
    return raw_response(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + b"".join(b"X-Header-%d: v\r\n" % i for i in range(count))
        + b"Content-Length: 2\r\n\r\n",
        b"[]",
    )


def redirect_without_location(status: int = 302) -> Behaviour:
    """A redirect status that does not say where to."""
    return raw_response(b"HTTP/1.1 %d Redirect\r\nContent-Length: 0\r\n\r\n" % status)


def lying_encoding(encoding: str = "gzip", body: bytes = b' [{"id": 1}]') -> Behaviour:
    """Plain JSON labelled ``Content-Encoding: encoding``. (The leading space makes the
    bytes invalid raw deflate too, which a deflate decoder falls back to.)"""
    return raw_response(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: "
        + encoding.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body),
        body,
    )


def nested_json(depth: int, opening: bytes = b"[", closing: bytes = b"]", inner: bytes = b"") -> Behaviour:
    """Valid JSON nested ``depth`` levels deep, e.g. ``[[[…]]]`` or ``{"a":{"a":…1}}``."""
    return raw_body(opening * depth + inner + closing * depth)
