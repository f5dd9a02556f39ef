"""The typed integration config (:class:`IntegrationConfig`: every setting, each default
once, with its stored JSON form) and the validation of what an admin types into it. Pure
functions; each refusal is a UsageError (exit 2) with a hint."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from syncctl.errors import UsageError
from syncctl.models import dumps
from syncctl.pagination import BODY_PARAM, Pagination
from syncctl.schedule import MAX_INTERVAL, MIN_INTERVAL, parse_duration
from syncctl.secrets import (
    check_references,
    header_problem,
    holds_reference,
    is_credential_name,
    suggested_variable,
)
from syncctl.settings import SETTINGS

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


class Deletes(str, Enum):
    """What a complete full sync does with records the source no longer returns."""

    KEEP = "keep"
    MARK = "mark"
    REMOVE = "remove"


@dataclass(frozen=True)
class RateLimit:
    """``--rate-limit N/s|N/m|N/h``."""

    text: str
    per_second: float

    @staticmethod
    def parse(text: str) -> RateLimit:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*([smh])\s*", text)
        if not match or float(match.group(1)) <= 0:
            raise UsageError(f"invalid rate limit {text!r}", "use N/s, N/m or N/h, e.g. 5/s or 100/m")
        return RateLimit(text.strip().replace(" ", ""), float(match.group(1)) / _RATE_UNITS[match.group(2)])


@dataclass(frozen=True)
class Incremental:
    """``--incremental FIELD:PARAM``: the records' FIELD is the cursor, sent back as PARAM."""

    field: str
    param: str

    @property
    def text(self) -> str:
        return f"{self.field}:{self.param}"

    @staticmethod
    def parse(text: str) -> Incremental:
        field_, sep, param = text.strip().partition(":")
        hint = "use FIELD:PARAM, e.g. --incremental updated_at:since"
        if not sep or not field_.strip() or not param.strip() or any(not p for p in field_.split(".")):
            raise UsageError(f"invalid --incremental {text!r}", hint)
        return Incremental(field_.strip(), param.strip())


# -- authentication and request bodies (spec §16) ---------------------------------------


@dataclass(frozen=True)
class Auth:
    """``--auth basic:USER:PASSWORD`` or ``--auth oauth2`` with its token endpoint and
    client (secrets only as ${VAR})."""

    kind: str  # "basic" | "oauth2"
    user: str = ""
    password: str = ""
    token_url: str = ""
    client_id: str = ""
    client_secret: str = ""
    scopes: tuple[str, ...] = ()
    token_params: tuple[tuple[str, str], ...] = ()
    client_auth: str = "basic"  # basic | body: how the client authenticates to the token endpoint
    refresh_token: str | None = None

    @property
    def text(self) -> str:
        return f"basic:{self.user}:{self.password}" if self.kind == "basic" else "oauth2"

    @property
    def grant(self) -> str:
        return "refresh_token" if self.refresh_token else "client_credentials"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "user": self.user, "password": self.password, "token_url": self.token_url,
            "client_id": self.client_id, "client_secret": self.client_secret, "scopes": list(self.scopes),
            "token_params": [list(p) for p in self.token_params], "client_auth": self.client_auth,
            "refresh_token": self.refresh_token,
        }  # fmt: skip

    @staticmethod
    def from_json(data: dict[str, Any]) -> Auth:
        return Auth(**{**data, "scopes": tuple(data.get("scopes") or ()),
                       "token_params": tuple(tuple(p) for p in data.get("token_params") or ())})  # fmt: skip

    def references(self) -> str:
        """Every text of it that may refer to a ${VAR} (to learn their values)."""
        return " ".join([self.user, self.password, self.client_id, self.client_secret, self.refresh_token or "",
                         *(v for _, v in self.token_params)])  # fmt: skip


# -- the typed integration config -------------------------------------------------------


@dataclass(frozen=True)
class IntegrationConfig:
    """Every setting of an integration, each default written once. Built from what an
    admin typed (:func:`build_config`, which validates) or from its stored JSON
    (:meth:`from_json`, which trusts what was validated when it was stored)."""

    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str | list[str]] = field(default_factory=dict)
    records_path: str | None = None
    key: str = "id"
    pagination: Pagination = field(default_factory=Pagination)
    max_pages: int = 1000
    timeout: float = 30.0
    rate_limit: RateLimit | None = None
    max_retries: int = 3
    incremental: Incremental | None = None
    lookback: float = 0.0  # seconds taken off a timestamp cursor
    deletes: Deletes = Deletes.KEEP
    max_delete: float = 50.0  # percent of the live records one sweep may delete
    max_staleness: int | None = None  # seconds; None: the default rule (issue 9)
    min_records: int = 0
    schema: str = "evolve"  # evolve | freeze: may a sync change its data table's columns?
    auth: Auth | None = None
    method: str = "GET"
    body: Any = None  # the JSON body sent (POST), ${VAR} in its strings expanded at sync time

    @classmethod
    def from_json(cls, text: str | dict[str, Any] | None) -> IntegrationConfig:
        """The stored ``integrations.config``; keys an older syncctl did not write take
        their defaults."""
        data = (json.loads(text) if text else {}) if not isinstance(text, dict) else text
        kwargs: dict[str, Any] = {}
        for name in ("headers", "params", "records_path", "max_pages", "timeout", "max_retries",
                     "lookback", "max_delete", "max_staleness", "min_records"):
            if data.get(name) is not None:
                kwargs[name] = data[name]
        if data.get("key"):
            kwargs["key"] = data["key"]
        if data.get("paginate"):
            kwargs["pagination"] = Pagination.parse(data["paginate"])
        rate = data.get("rate_limit")
        if rate:
            kwargs["rate_limit"] = RateLimit(rate["text"], float(rate["per_second"]))
        if data.get("incremental"):
            kwargs["incremental"] = Incremental.parse(data["incremental"])
        if data.get("deletes"):
            kwargs["deletes"] = Deletes(data["deletes"])
        if data.get("schema"):
            kwargs["schema"] = data["schema"]
        if data.get("auth"):
            kwargs["auth"] = Auth.from_json(data["auth"])
        if data.get("method"):
            kwargs["method"] = data["method"]
        if data.get("body") is not None:
            kwargs["body"] = data["body"]
        return cls(**kwargs)

    def to_json(self) -> dict[str, Any]:
        """The JSON stored in ``integrations.config`` (secrets only as ${VAR})."""
        return {
            "headers": dict(self.headers),
            "params": dict(self.params),
            "records_path": self.records_path,
            "key": self.key,
            "paginate": self.pagination.text,
            "max_pages": self.max_pages,
            "timeout": self.timeout,
            "rate_limit": {"text": self.rate_limit.text, "per_second": self.rate_limit.per_second}
            if self.rate_limit
            else None,
            "max_retries": self.max_retries,
            "incremental": self.incremental.text if self.incremental else None,
            "lookback": self.lookback,
            "deletes": self.deletes.value,
            "max_delete": self.max_delete,
            "max_staleness": self.max_staleness,
            "min_records": self.min_records,
            "schema": self.schema,
            "auth": self.auth.to_json() if self.auth else None,
            "method": self.method,
            "body": self.body,
        }

    def to_options(self) -> IntegrationOptions:
        """The options that would build this config again (for ``edit``)."""
        params = [
            f"{name}={value}"
            for name, values in self.params.items()
            for value in (values if isinstance(values, list) else [values])
        ]
        return IntegrationOptions(
            headers=[f"{name}: {value}" for name, value in self.headers.items()],
            params=params,
            records_path=self.records_path,
            key=self.key,
            paginate=self.pagination.text,
            max_pages=self.max_pages,
            timeout=self.timeout,
            rate_limit=self.rate_limit.text if self.rate_limit else None,
            max_retries=self.max_retries,
            incremental=self.incremental.text if self.incremental else None,
            lookback=f"{self.lookback:g}s" if self.lookback else None,
            deletes=self.deletes.value,
            max_delete=self.max_delete,
            max_staleness=f"{self.max_staleness}s" if self.max_staleness is not None else None,
            min_records=self.min_records,
            schema=self.schema,
            auth=self.auth.text if self.auth else None,
            token_url=self.auth.token_url or None if self.auth else None,
            client_id=self.auth.client_id or None if self.auth else None,
            client_secret=self.auth.client_secret or None if self.auth else None,
            scope=list(self.auth.scopes) if self.auth else [],
            token_param=[f"{k}={v}" for k, v in self.auth.token_params] if self.auth else [],
            client_auth=self.auth.client_auth if self.auth and self.auth.client_auth != "basic" else None,  # the default
            refresh_token=self.auth.refresh_token if self.auth else None,
            method=self.method,
            body=dumps(self.body) if self.body is not None else None,
        )


DEFAULTS = IntegrationConfig()


class _Options:
    """``add``/``edit``'s options as typed, before validation; None: not given (the
    default, see :class:`IntegrationConfig`). Its fields are the settings of
    ``settings.SETTINGS``, one each."""

    def merged(self, given: IntegrationOptions) -> IntegrationOptions:
        """These options with each one ``given`` replacing its own; ``''`` (or an empty
        list, or a repeatable option given once as ``''``: ``--header ''`` clears the
        headers) means back to the default."""
        merged = dataclasses.replace(self)
        for f in dataclasses.fields(given):
            value = getattr(given, f.name)
            if value is not None:
                setattr(merged, f.name, None if value in ("", [], [""]) else value)
        if given.auth is not None and given.auth.strip() != "oauth2":  # leaving OAuth2: its settings go with it
            for setting in SETTINGS:
                if setting.part_of == "oauth2" and getattr(given, setting.name) is None:
                    setattr(merged, setting.name, None)
        return merged

    def given(self) -> bool:
        return any(getattr(self, f.name) is not None for f in dataclasses.fields(self))

    def values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


IntegrationOptions = dataclasses.make_dataclass(
    "IntegrationOptions",
    [(s.name, list[str] | None if s.repeatable else s.type | None, dataclasses.field(default=None))
     for s in SETTINGS],
    bases=(_Options,),
)  # fmt: skip


def validate_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise UsageError(
            f"invalid name {name!r}: use 1-64 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            "e.g. weather, crm-contacts, billing.v2",
        )
    return name


def check_text(text: str | None, what: str) -> None:
    """Refuse bytes that are not UTF-8 (Python hands them over as lone surrogates):
    SQLite could not store them and no server would understand them. The message names
    the byte, never the text (it may be a secret)."""
    for i, c in enumerate(text or ""):
        if "\ud800" <= c <= "\udfff":
            raise UsageError(
                f"{what} is not valid UTF-8 text (byte 0x{ord(c) & 0xFF:02x} at character {i + 1})",
                "check the encoding of the terminal or script that runs syncctl (use UTF-8)",
            )


def _refuse_literal_secret(name: str, value: str, what: str) -> None:
    """A credential (by its name, see secrets.is_credential_name) only as a reference:
    a literal value would put a secret in the database."""
    if value and not holds_reference(value) and is_credential_name(name):
        variable = suggested_variable(name)
        if what == "header":
            scheme = value.split()[0] if len(value.split()) > 1 and value.split()[0].isalpha() else ""
            example = f"'{name}: {scheme + ' ' if scheme else ''}${{{variable}}}'"
        elif what == "--body field":
            example = f'"{name}": "${{{variable}}}" in the body (expanded as a JSON string)'
        else:
            example = f"{name}=${{{variable}}}"
        raise UsageError(
            f"{what} {name!r} looks like a credential; syncctl stores secrets only as "
            "${VAR} references, never their values",
            f"export the value in syncctl's environment as {variable} and pass {example}",
        )


def _check_body_params(body: Any, named: list[tuple[str, str | None]]) -> None:
    """A PARAM ``body:DOTTED.PATH`` (spec §16) sets a field of the JSON body: there must be
    a body, a JSON object, whose fields on the way are objects (or absent) — else the page
    number or cursor would go nowhere, or replace what --body says."""
    for flag, param in named:
        if not param or not param.startswith(BODY_PARAM):
            continue
        path = param[len(BODY_PARAM):]
        if not path or any(not part for part in path.split(".")):
            raise UsageError(f"invalid {flag} PARAM {param!r}", "name a field of the body, e.g. body:variables.after")
        if not isinstance(body, dict):
            raise UsageError(
                f"{flag} puts {param!r} in the request body, but "
                + ("there is no --body" if body is None else "--body is not a JSON object"),
                "give the body as a JSON object, e.g. --body '{\"query\": \"…\", \"variables\": {}}'",
            )
        target, parts = body, path.split(".")
        for depth, part in enumerate(parts[:-1]):
            target = target.get(part)
            if target is None:
                break
            if not isinstance(target, dict):
                raise UsageError(
                    f"{flag} puts {param!r} in the request body, but --body's {'.'.join(parts[:depth + 1])!r} is not "
                    "an object",
                    "make it an object in --body, or name another field",
                )


def shown_url(url: str) -> str:
    """A URL as a refusal may show it: whatever stands between ``//`` (or the start) and
    its last ``@``, a user and maybe a literal password, cut out. Made for URLs that do
    not parse, so it cuts by text, and rather too much than too little."""
    start = url.find("//") + 2 if "//" in url else 0
    at = url.rfind("@")
    return url if at < start else f"{url[:start]}…{url[at:]}"


def validate_url(url: str) -> str:
    check_text(url, "the URL")
    check_references(url, "URL")
    hint = "give a full http(s) URL, e.g. https://api.example.com/v1/items"
    shown = shown_url(url)
    if any(c.isspace() for c in url) or len(url) > 4096:
        raise UsageError(f"invalid URL {shown!r}", hint)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise UsageError(f"invalid URL {shown!r}: {exc}", hint) from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"invalid URL {shown!r}: the scheme must be http or https", hint)
    if not parts.hostname or holds_reference(parts.netloc.split("@")[-1]):
        raise UsageError(f"invalid URL {shown!r}: no host", hint)
    if parts.password and not holds_reference(parts.password):
        raise UsageError(
            "the URL holds a password; syncctl stores secrets only as ${VAR} references",
            "write it as https://user:${API_PASSWORD}@host/… or use a header",
        )
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        _refuse_literal_secret(key, value, "query parameter")
    return url


def _parse_lookback(text: str) -> float:
    seconds = parse_duration(text)
    if seconds is None or not 0 <= seconds <= MAX_INTERVAL:
        raise UsageError(f"invalid --lookback {text!r}", "use a duration such as 10m, 1h or 1d")
    return seconds


def _parse_staleness(text: str) -> int:
    seconds = parse_duration(text)
    hint = "use a duration of at least 1 minute, e.g. 3h or 1d"
    if seconds is None or seconds > MAX_INTERVAL:
        raise UsageError(f"invalid --max-staleness {text!r}", hint)
    if seconds < MIN_INTERVAL:
        raise UsageError(f"invalid --max-staleness {text!r}: the smallest is 1 minute", hint)
    return int(seconds)


def _parse_deletes(text: str) -> Deletes:
    try:
        return Deletes(text.strip().lower())
    except ValueError:
        raise UsageError(f"invalid --deletes {text!r}", "use keep, mark or remove") from None


MAX_BODY_DEPTH = 64  # levels of arrays and objects a --body may have (each is expanded recursively)


def _depth(value: Any) -> int:
    """How many levels of arrays and objects ``value`` nests (without recursing)."""
    deepest, level = 0, [(value, 0)]
    while level:
        item, depth = level.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth + 1)
            if depth + 1 <= MAX_BODY_DEPTH:  # enough to know it is too deep
                level.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _parse_body(text: str) -> Any:
    """``--body JSON`` or ``--body @FILE`` (read now, stored in the config)."""
    source = "--body"
    if text.startswith("@"):
        path = text[1:]
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise UsageError(f"cannot read --body @{path}: {reason}", "pass a JSON file: --body @query.json") from None
        source = f"--body @{path}"
    too_deep = UsageError(f"{source} is nested more than {MAX_BODY_DEPTH} levels deep",
                          "a request body needs a few levels: check the JSON")  # fmt: skip
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{source} is not valid JSON: {exc}", "e.g. --body '{\"query\": \"{ items { id } }\"}'") from None
    except RecursionError:
        raise too_deep from None
    if _depth(body) > MAX_BODY_DEPTH:
        raise too_deep
    if isinstance(body, str):
        check_references(body, "--body")
    else:
        check_references(json.dumps(body), "--body")
    level = [body]  # a field named like a credential holds a ${VAR}, as a header or param must
    while level:
        item = level.pop()
        if isinstance(item, dict):
            for name, value in item.items():
                if isinstance(value, str):
                    _refuse_literal_secret(name, value, "--body field")
                else:
                    level.append(value)
        elif isinstance(item, list):
            level.extend(item)
    return body


def _parse_auth(options: IntegrationOptions) -> Auth | None:
    """``--auth`` and the options that go with it (spec §16); secrets only as ${VAR}."""
    oauth_options = {
        "--token-url": options.token_url, "--client-id": options.client_id, "--client-secret": options.client_secret,
        "--scope": options.scope, "--token-param": options.token_param, "--client-auth": options.client_auth,
        "--refresh-token": options.refresh_token,
    }  # fmt: skip
    given = [flag for flag, value in oauth_options.items() if value]
    text = (options.auth or "").strip()
    if not text:
        if given:
            raise UsageError(f"{given[0]} needs --auth oauth2", "add --auth oauth2 (with --token-url, --client-id …)")
        return None
    if text.startswith("basic:"):
        if given:
            raise UsageError(f"{given[0]} goes with --auth oauth2, not basic", "leave it out, or use --auth oauth2")
        user, sep, password = text[len("basic:"):].partition(":")
        if not sep or not user or not password:
            raise UsageError(f"invalid --auth {_shown_auth(text)}", "use basic:USER:PASSWORD, e.g. basic:alice:${API_PASSWORD}")
        check_references(user, "--auth's user")
        check_references(password, "--auth's password")
        if not holds_reference(password):
            raise UsageError(
                "--auth basic: the password is written out; syncctl stores secrets only as ${VAR} references",
                "export it in syncctl's environment and pass basic:USER:${API_PASSWORD}",
            )
        return Auth("basic", user=user, password=password)
    if text != "oauth2":
        raise UsageError(f"invalid --auth {_shown_auth(text)}", "use basic:USER:${PASSWORD} or oauth2")
    for flag in ("--token-url", "--client-id", "--client-secret"):
        if not oauth_options[flag]:
            raise UsageError(f"--auth oauth2 needs {flag}",
                             "e.g. --token-url https://login.example.com/oauth2/token --client-id ID "
                             "--client-secret '${CLIENT_SECRET}'")  # fmt: skip
    token_url = validate_url(options.token_url)
    for flag in ("--client-secret", "--refresh-token"):
        value = oauth_options[flag]
        if value:
            check_references(value, flag)
            if not only_one_reference(value):
                raise UsageError(
                    f"{flag} must be a ${{VAR}} reference: syncctl stores secrets only as references",
                    f"export the value in syncctl's environment and pass {flag} '${{{suggested_variable(flag.strip('-'))}}}'",
                )
    check_references(options.client_id, "--client-id")
    client_auth = (options.client_auth or "basic").strip().lower()
    if client_auth not in ("basic", "body"):
        raise UsageError(f"invalid --client-auth {options.client_auth!r}", "use basic (the default) or body")
    params = []
    for raw in options.token_param or []:
        name, sep, value = raw.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"invalid --token-param {raw!r}", "write it as key=value, e.g. --token-param audience=api")
        check_references(value, f"--token-param {name}")
        _refuse_literal_secret(name.strip(), value, "--token-param")
        params.append((name.strip(), value))
    scopes = tuple(s for raw in options.scope or [] for s in raw.split())
    return Auth("oauth2", token_url=token_url, client_id=options.client_id, client_secret=options.client_secret,
                scopes=scopes, token_params=tuple(params), client_auth=client_auth,
                refresh_token=options.refresh_token or None)  # fmt: skip


def _shown_auth(text: str) -> str:
    """``--auth`` as a message may show it: a password written out is not repeated."""
    kind, _, rest = text.partition(":")
    return f"{kind}:…" if rest else repr(text)


def only_one_reference(text: str) -> bool:
    from syncctl.secrets import only_references

    return only_references(text.strip())


SCHEMA_MODES = ("evolve", "freeze")


def _parse_schema(text: str) -> str:
    mode = text.strip().lower()
    if mode not in SCHEMA_MODES:
        raise UsageError(
            f"invalid --schema {text!r}",
            "use evolve (a new field adds a column, a wider value widens one) or freeze (such a sync fails)",
        )
    return mode


def build_config(options: IntegrationOptions) -> IntegrationConfig:
    """Validate ``add``/``edit``'s options into the typed config (UsageError, exit 2, for
    anything wrong); options not given take the defaults of :class:`IntegrationConfig`."""
    for what, texts in (
        ("--header", options.headers or []),
        ("--param", options.params or []),
        ("--records-path", [options.records_path]),
        ("--key", [options.key]),
        ("--paginate", [options.paginate]),
        ("--rate-limit", [options.rate_limit]),
        ("--incremental", [options.incremental]),
        ("--lookback", [options.lookback]),
        ("--deletes", [options.deletes]),
        ("--max-staleness", [options.max_staleness]),
        ("--schema", [options.schema]),
    ):
        for text in texts:
            check_text(text, what)
    headers: dict[str, str] = {}
    for raw in options.headers or []:
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
    for raw in options.params or []:
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
    d = DEFAULTS
    max_pages = d.max_pages if options.max_pages is None else options.max_pages
    timeout = d.timeout if options.timeout is None else options.timeout
    max_retries = d.max_retries if options.max_retries is None else options.max_retries
    max_delete = d.max_delete if options.max_delete is None else options.max_delete
    min_records = d.min_records if options.min_records is None else options.min_records
    if not 1 <= max_pages <= 1_000_000:
        raise UsageError(f"invalid --max-pages {max_pages}", "use 1 to 1000000")
    if not 0 < timeout <= 3600:
        raise UsageError(f"invalid --timeout {timeout:g}", "use seconds from 0.1 to 3600")
    if not 0 <= max_retries <= 100:
        raise UsageError(f"invalid --max-retries {max_retries}", "use 0 to 100")
    if not 0 <= max_delete <= 100:
        raise UsageError(f"invalid --max-delete {max_delete:g}", "use a percentage from 0 to 100, e.g. 50")
    if not 0 <= min_records <= 1_000_000_000:
        raise UsageError(f"invalid --min-records {min_records}", "use 0 or more, e.g. 1")
    incremental = Incremental.parse(options.incremental) if options.incremental else None
    body = _parse_body(options.body) if options.body else None
    method = (options.method or ("POST" if body is not None else d.method)).strip().upper()
    if method not in ("GET", "POST"):
        raise UsageError(f"invalid --method {options.method!r}", "use GET or POST")
    if body is not None and method == "GET":
        raise UsageError("--body needs POST: a GET sends no body", "leave out --method (a body implies POST)")
    lookback = _parse_lookback(options.lookback) if options.lookback else d.lookback
    if lookback and incremental is None:
        raise UsageError("--lookback needs --incremental", "e.g. --incremental updated_at:since --lookback 10m")
    pagination = Pagination.parse(options.paginate) if options.paginate else d.pagination
    _check_body_params(body, [("--paginate", getattr(pagination, "param", None)),
                              ("--incremental", incremental.param if incremental else None)])  # fmt: skip
    auth = _parse_auth(options)
    if auth is not None and any(name.lower() == "authorization" for name in headers):
        raise UsageError(
            f"--auth {auth.kind} and an Authorization header would both say who is asking; one would be dropped",
            "keep one: leave out the Authorization header (in edit, --header replaces all headers; --header '' "
            "clears them), or --auth ''",
        )
    return IntegrationConfig(
        headers=headers,
        params=params,
        records_path=options.records_path or d.records_path,
        key=options.key or d.key,
        pagination=pagination,
        max_pages=max_pages,
        timeout=float(timeout),
        rate_limit=RateLimit.parse(options.rate_limit) if options.rate_limit else d.rate_limit,
        max_retries=max_retries,
        incremental=incremental,
        lookback=lookback,
        deletes=_parse_deletes(options.deletes) if options.deletes else d.deletes,
        max_delete=float(max_delete),
        max_staleness=_parse_staleness(options.max_staleness) if options.max_staleness else d.max_staleness,
        min_records=min_records,
        schema=_parse_schema(options.schema) if options.schema else d.schema,
        auth=auth,
        method=method,
        body=body,
    )
