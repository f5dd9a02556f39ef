"""The benchmark's HTTP source, on 127.0.0.1 only. Run as its own process
(``python bench/source.py``); it prints its port on the first line of stdout.

- ``/slow/<n>``: answers after 100 ms (``time.sleep``) with a one-record array.
- ``/records?pages=P&page=N``: page N of P, 10,000 records each, with an RFC 8288
  ``Link: <…>; rel="next"`` header until the last page.
- ``/etag``: 100 records with ``ETag: "bench-1"``; ``304 Not Modified`` (no body) to a
  request whose ``If-None-Match`` names it (the conditional sync of spec §11).
- ``POST /token``: an OAuth2 client-credentials token endpoint (client ``bench`` /
  ``bench-secret`` in HTTP Basic), tokens good for an hour; ``/protected``: the 100
  records for a bearer it issued (401 otherwise), ``/plain`` the same without auth;
  ``/token-count``: how many tokens it issued (spec §18: a held token makes no request).

It does not penalise connection reuse: HTTP/1.1 with Content-Length, and
``disable_nagle_algorithm`` (TCP_NODELAY), because http.server writes the headers and
the body separately and, with Nagle on, every keep-alive request waits ~40 ms for a
delayed ACK. Record pages are rendered from one precomputed template (a single C-level
``%`` per page), so the source is not the bottleneck.
"""

from __future__ import annotations

import base64
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SLOW_SECONDS = 0.1
PAGE_SIZE = 10_000
MAX_PAGES = 1_000

_RECORD = (
    b'{"id":%d,"name":"record %d","status":"%s","score":%d.5,"tags":["alpha","beta"],'
    b'"owner":{"id":%d,"email":"owner@example.com"},"updated_at":"2026-11-22T10:15:00.000Z"}'
)
# Four statuses of one length (the pages stay the same size): a column with few distinct
# values for the dashboard queries' GROUP BY (bench/dashboard.py).
STATUSES = (b"active", b"paused", b"closed", b"queued")
_PAGE = b"[" + b",".join([_RECORD] * PAGE_SIZE) + b"]"
ETAG = '"bench-1"'
_ETAG_BODY = b"[" + b",".join(_RECORD % (n, n, STATUSES[n % 4], n % 1000, n % 97) for n in range(1, 101)) + b"]"


def page_body(page: int) -> bytes:
    first = (page - 1) * PAGE_SIZE + 1
    values = []
    for n in range(first, first + PAGE_SIZE):
        values += (n, n, STATUSES[n % 4], n % 1000, n % 97)
    return _PAGE % tuple(values)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        if parts.path.startswith("/slow/"):
            time.sleep(SLOW_SECONDS)
            n = parts.path.rsplit("/", 1)[1]
            self._send(200, b'[{"id":"%s","value":"ok"}]' % n.encode())
        elif parts.path == "/records":
            query = parse_qs(parts.query)
            pages = min(int(query.get("pages", ["1"])[0]), MAX_PAGES)
            page = int(query.get("page", ["1"])[0])
            if not 1 <= page <= pages:
                self._send(200, b"[]")
                return
            headers = {}
            if page < pages:
                headers["Link"] = f'</records?pages={pages}&page={page + 1}>; rel="next"'
            self._send(200, page_body(page), headers)
        elif parts.path == "/plain":
            self._send(200, _ETAG_BODY)
        elif parts.path == "/protected":
            if self.headers.get("Authorization", "").startswith("Bearer bench-token-"):
                self._send(200, _ETAG_BODY)
            else:
                self._send(401, b'{"error":"invalid_token"}')
        elif parts.path == "/token-count":
            self._send(200, b'{"issued":%d}' % TOKENS["issued"])
        elif parts.path == "/etag":
            if self.headers.get("If-None-Match") == ETAG:
                self.send_response(304)
                self.send_header("ETag", ETAG)
                self.end_headers()
            else:
                self._send(200, _ETAG_BODY, {"ETag": ETAG})
        else:
            self._send(404, b'{"error":"not found"}')


    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", "0") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        if urlsplit(self.path).path != "/token":
            self._send(404, b'{"error":"not found"}')
        elif self.headers.get("Authorization") != "Basic " + base64.b64encode(b"bench:bench-secret").decode():
            self._send(401, b'{"error":"invalid_client"}')
        elif form.get("grant_type") != ["client_credentials"]:
            self._send(400, b'{"error":"unsupported_grant_type"}')
        else:
            TOKENS["issued"] += 1
            body = b'{"access_token":"bench-token-%d","token_type":"Bearer","expires_in":3600}' % TOKENS["issued"]
            self._send(200, body)


TOKENS = {"issued": 0}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # 16 clients connecting at once must never see a full backlog


def main() -> None:
    server = Server(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
    sys.stdout.write(f"{server.server_address[1]}\n")
    sys.stdout.flush()
    server.serve_forever()  # until bench/run.py terminates it


if __name__ == "__main__":
    main()
