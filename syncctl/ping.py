"""Dead-man's-switch pings (Healthchecks.io / Cronitor protocol, spec section 10):
``URL/start?rid=…`` when run-due starts syncing, ``URL?rid=…`` when all succeeded (idle
ticks too), ``URL/fail?rid=…`` with the failure lines as the body. One rid per tick. A
ping that fails never fails the run. Standard library only (urllib): an idle tick with a
ping stays cheap."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from syncctl.errors import SyncError
from syncctl.secrets import Secrets

TIMEOUT = 10.0
MAX_BODY = 100_000


class Pinger:
    """The pings of one run-due tick."""

    def __init__(self, url: str, env: Mapping[str, str], timeout: float = TIMEOUT) -> None:
        self.template = url
        self.secrets = Secrets(env)
        self.secrets.learn(url)
        self.rid = str(uuid.uuid4())
        self.timeout = timeout
        self.errors: list[str] = []  # redacted, for -v

    def start(self) -> None:
        self._send("/start")

    def success(self) -> None:
        self._send("")

    def fail(self, lines: list[str]) -> None:
        body = "\n".join(lines).encode("utf-8")
        if len(body) > MAX_BODY:
            body = body[:MAX_BODY].decode("utf-8", "ignore").encode("utf-8")
        self._send("/fail", body)

    def _url(self, suffix: str) -> str:
        parts = urlsplit(self.secrets.expand_url(self.template))
        query = f"{parts.query}&rid={self.rid}" if parts.query else f"rid={self.rid}"
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + suffix, query, ""))

    def _send(self, suffix: str, body: bytes | None = None) -> None:
        import http.client
        import urllib.request

        try:
            request = urllib.request.Request(
                self._url(suffix), data=body, method="POST" if body is not None else "GET",
                headers={"User-Agent": "syncctl", "Content-Type": "text/plain; charset=utf-8"},
            )
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) only
                response.read(10_000)
        except SyncError as exc:
            self.errors.append(self.secrets.redact(f"ping{suffix or ' success'}: {exc.message}"))
        except (OSError, ValueError, http.client.HTTPException) as exc:
            self.errors.append(self.secrets.redact(f"ping{suffix or ' success'} failed: {exc}"))
