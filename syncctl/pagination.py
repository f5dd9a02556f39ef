"""Pagination (``--paginate``): each mode is a small object that knows the first request
and, from the page just fetched, the next one (or that there is none). Pure: no HTTP,
no database. A PARAM may be ``body:DOTTED.PATH`` (spec §16): the connector sets that
field of the JSON body instead of a query parameter."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urljoin

from syncctl.errors import UsageError
from syncctl.records import lookup

BODY_PARAM = "body:"  # a pagination or incremental PARAM that names a field of the JSON body (spec §16)
PAGINATE_HELP = "none, link, next-url:PATH, cursor:PATH:PARAM or page:PARAM (PARAM may be body:PATH)"


# -- pagination: each mode knows how to produce the next request -----------------------


@dataclass(frozen=True)
class PageRequest:
    """One page to GET: ``url`` None is the integration's own URL with its params (and
    the incremental PARAM); ``params`` are added to it. A followed URL is used as given."""

    url: str | None = None
    params: tuple[tuple[str, Any], ...] = ()  # a body:PATH name sets that field of the JSON body


@dataclass(frozen=True)
class PageSeen:
    """What the next request is decided from: the page just fetched."""

    number: int
    body: Any
    url: str  # the response's URL (after redirects), to resolve relative next links
    links: Mapping[str, Any]  # the parsed Link header (requests' Response.links)
    empty: bool


@dataclass(frozen=True)
class Pagination:
    """``--paginate none``: one request."""

    mode: ClassVar[str] = "none"

    @property
    def text(self) -> str:
        return self.mode

    @property
    def paginated(self) -> bool:
        return self.mode != "none"

    def first(self) -> PageRequest:
        return PageRequest()

    def next(self, page: PageSeen) -> PageRequest | None:
        """The request for the page after ``page``, or None when it was the last."""
        return None

    @staticmethod
    def parse(text: str) -> Pagination:
        mode, _, rest = text.strip().partition(":")
        args = rest.split(":") if rest else []
        # body:DOTTED.PATH names a field of the JSON body where a query PARAM would go.
        for i in range(len(args) - 1):
            if f"{args[i]}:" == BODY_PARAM:
                args[i:i + 2] = [f"{BODY_PARAM}{args[i + 1]}"]
                break
        kind = _PAGINATIONS.get(mode)
        if kind is None or len(args) != kind.arity or not all(a.strip() for a in args):
            raise UsageError(f"invalid --paginate {text!r}", f"use {PAGINATE_HELP}")
        return kind(*args)

    arity: ClassVar[int] = 0


@dataclass(frozen=True)
class LinkPagination(Pagination):
    """``link``: RFC 8288 ``Link: <…>; rel="next"``."""

    mode: ClassVar[str] = "link"

    def next(self, page: PageSeen) -> PageRequest | None:
        target = page.links.get("next", {}).get("url")
        return PageRequest(urljoin(page.url, target)) if target else None


@dataclass(frozen=True)
class NextUrlPagination(Pagination):
    """``next-url:PATH``: a body field holds the next URL."""

    path: str
    mode: ClassVar[str] = "next-url"
    arity: ClassVar[int] = 1

    @property
    def text(self) -> str:
        return f"{self.mode}:{self.path}"

    def next(self, page: PageSeen) -> PageRequest | None:
        target = lookup(page.body, self.path) if isinstance(page.body, dict) else None
        return PageRequest(urljoin(page.url, str(target))) if target else None


@dataclass(frozen=True)
class CursorPagination(Pagination):
    """``cursor:PATH:PARAM``: a body field holds a cursor, sent back as query PARAM."""

    path: str
    param: str
    mode: ClassVar[str] = "cursor"
    arity: ClassVar[int] = 2

    @property
    def text(self) -> str:
        return f"{self.mode}:{self.path}:{self.param}"

    def next(self, page: PageSeen) -> PageRequest | None:
        cursor = lookup(page.body, self.path) if isinstance(page.body, dict) else None
        if cursor is None or cursor is False or cursor == "":  # not `in`: 0 == False, and 0 is a cursor
            return None
        if isinstance(cursor, (dict, list)):  # not a cursor a query could carry: its JSON text
            cursor = json.dumps(cursor, separators=(",", ":"))
        # Sent as it came (a query string makes it text; a JSON body keeps its type).
        return PageRequest(None, ((self.param, cursor),))


@dataclass(frozen=True)
class PagePagination(Pagination):
    """``page:PARAM``: page numbers from 1 until an empty page."""

    param: str
    mode: ClassVar[str] = "page"
    arity: ClassVar[int] = 1

    @property
    def text(self) -> str:
        return f"{self.mode}:{self.param}"

    def first(self) -> PageRequest:
        return PageRequest(None, ((self.param, 1),))

    def next(self, page: PageSeen) -> PageRequest | None:
        return None if page.empty else PageRequest(None, ((self.param, page.number + 1),))


_PAGINATIONS: dict[str, type[Pagination]] = {
    k.mode: k for k in (Pagination, LinkPagination, NextUrlPagination, CursorPagination, PagePagination)
}
