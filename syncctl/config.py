"""Validating what an admin types into the integration's stored form. Pure functions;
each refusal is a UsageError (exit 2) with a hint."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from syncctl.errors import UsageError
from syncctl.secrets import check_references, header_problem, is_credential_name, suggested_variable

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
PAGINATE_HELP = "none, link, next-url:PATH, cursor:PATH:PARAM or page:PARAM"


@dataclass
class IntegrationOptions:
    """``add``'s options as typed, before validation."""

    headers: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    records_path: str | None = None
    key: str | None = None
    paginate: str = "none"
    max_pages: int = 1000
    timeout: float = 30.0
    rate_limit: str | None = None
    max_retries: int = 3

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> IntegrationOptions:
        """The options that would build ``config`` again (for ``edit``)."""
        params = [
            f"{name}={value}"
            for name, values in config.get("params", {}).items()
            for value in (values if isinstance(values, list) else [values])
        ]
        rate = config.get("rate_limit")
        return cls(
            headers=[f"{name}: {value}" for name, value in config.get("headers", {}).items()],
            params=params,
            records_path=config.get("records_path"),
            key=config.get("key"),
            paginate=config.get("paginate", "none"),
            max_pages=config.get("max_pages", 1000),
            timeout=config.get("timeout", 30.0),
            rate_limit=rate["text"] if rate else None,
            max_retries=config.get("max_retries", 3),
        )


def validate_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise UsageError(
            f"invalid name {name!r}: use 1-64 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            "e.g. weather, crm-contacts, billing.v2",
        )
    return name


def _check_text(text: str | None, what: str) -> None:
    """Refuse bytes that are not UTF-8 (Python hands them over as lone surrogates):
    SQLite could not store them and no server would understand them."""
    if text is not None and any("\ud800" <= c <= "\udfff" for c in text):
        raise UsageError(
            f"{what} is not valid UTF-8 text: {text!r}",
            "check the encoding of the terminal or script that runs syncctl (use UTF-8)",
        )


def _refuse_literal_secret(name: str, value: str, what: str) -> None:
    """A credential (by its name, see secrets.is_credential_name) only as a reference:
    a literal value would put a secret in the database."""
    if value and "${" not in value and is_credential_name(name):
        variable = suggested_variable(name)
        if what == "header":
            scheme = value.split()[0] if len(value.split()) > 1 and value.split()[0].isalpha() else ""
            example = f"'{name}: {scheme + ' ' if scheme else ''}${{{variable}}}'"
        else:
            example = f"{name}=${{{variable}}}"
        raise UsageError(
            f"{what} {name!r} looks like a credential; syncctl stores secrets only as "
            "${VAR} references, never their values",
            f"export the value in syncctl's environment as {variable} and pass {example}",
        )


def validate_url(url: str) -> str:
    _check_text(url, "the URL")
    check_references(url, "URL")
    hint = "give a full http(s) URL, e.g. https://api.example.com/v1/items"
    if any(c.isspace() for c in url) or len(url) > 4096:
        raise UsageError(f"invalid URL {url!r}", hint)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise UsageError(f"invalid URL {url!r}: {exc}", hint) from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"invalid URL {url!r}: the scheme must be http or https", hint)
    if not parts.hostname or "${" in parts.netloc.split("@")[-1]:
        raise UsageError(f"invalid URL {url!r}: no host", hint)
    if parts.password and "${" not in parts.password:
        raise UsageError(
            "the URL holds a password; syncctl stores secrets only as ${VAR} references",
            "write it as https://user:${API_PASSWORD}@host/… or use a header",
        )
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        _refuse_literal_secret(key, value, "query parameter")
    return url


def parse_rate(text: str) -> dict[str, Any]:
    """``10/s``, ``100/m``, ``1000/h`` -> {"text": ..., "per_second": ...}."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*([smh])\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"invalid rate limit {text!r}", "use N/s, N/m or N/h, e.g. 5/s or 100/m")
    per_second = float(match.group(1)) / _RATE_UNITS[match.group(2)]
    return {"text": text.strip().replace(" ", ""), "per_second": per_second}


def parse_paginate(text: str) -> str:
    mode, _, rest = text.partition(":")
    args = rest.split(":") if rest else []
    shapes = {"none": 0, "link": 0, "next-url": 1, "page": 1, "cursor": 2}
    if mode not in shapes or len(args) != shapes[mode] or not all(a.strip() for a in args):
        raise UsageError(f"invalid pagination {text!r}", f"use {PAGINATE_HELP}")
    return text


def build_config(options: IntegrationOptions) -> dict[str, Any]:
    """The JSON stored in ``integrations.config``."""
    for what, texts in (
        ("--header", options.headers),
        ("--param", options.params),
        ("--records-path", [options.records_path]),
        ("--key", [options.key]),
        ("--paginate", [options.paginate]),
        ("--rate-limit", [options.rate_limit]),
    ):
        for text in texts:
            _check_text(text, what)
    headers: dict[str, str] = {}
    for raw in options.headers:
        name, sep, value = raw.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not _HEADER_NAME.fullmatch(name):
            raise UsageError(
                f"invalid header {raw!r}",
                "write it as 'Name: value', e.g. --header 'Accept: application/json'",
            )
        problem = header_problem(value)
        if problem:  # it would fail every sync
            raise UsageError(f"invalid header {name!r}: the value {problem[0]}: {value!r}", problem[1])
        check_references(value, f"header {name!r}")
        _refuse_literal_secret(name, value, "header")
        headers[name] = value
    params: dict[str, Any] = {}
    for raw in options.params:
        name, sep, value = raw.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"invalid parameter {raw!r}", "write it as key=value, e.g. --param limit=100")
        check_references(value, f"parameter {name!r}")
        _refuse_literal_secret(name, value, "parameter")
        if name in params:  # repeated: sent as key=a&key=b
            previous = params[name]
            params[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            params[name] = value
    for what, path in (("--records-path", options.records_path), ("--key", options.key)):
        if path is not None and (not path.strip() or any(not p for p in path.split("."))):
            raise UsageError(f"invalid {what} {path!r}", "use a dotted path, e.g. data.items")
    if not 1 <= options.max_pages <= 1_000_000:
        raise UsageError(f"invalid --max-pages {options.max_pages}", "use 1 to 1000000")
    if not 0 < options.timeout <= 3600:
        raise UsageError(f"invalid --timeout {options.timeout:g}", "use seconds from 0.1 to 3600")
    if not 0 <= options.max_retries <= 100:
        raise UsageError(f"invalid --max-retries {options.max_retries}", "use 0 to 100")
    return {
        "headers": headers,
        "params": params,
        "records_path": options.records_path,
        "key": options.key or "id",
        "paginate": parse_paginate(options.paginate),
        "max_pages": options.max_pages,
        "timeout": options.timeout,
        "rate_limit": parse_rate(options.rate_limit) if options.rate_limit else None,
        "max_retries": options.max_retries,
    }
