"""Every setting of an integration, declared once: its flag, its TOML key, its type and
default, its help, whether it may hold secrets, and which commands take it. This table
drives the typer options of ``add``/``edit``/``check`` (:func:`options`), the options
dataclass they fill (``config.IntegrationOptions``), and the TOML of ``export``/``apply``
(:func:`to_toml`, :func:`from_toml`). Validation lives in ``config.build_config`` (each
setting's parser and bounds, the cross-field checks last); a new setting is one line
here, its rule there, and its test.

No typer at import time for the table itself: ``options`` imports it when the CLI builds
its commands.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from syncctl.errors import UsageError


@dataclass(frozen=True)
class Setting:
    """One setting. ``name`` is its field in ``IntegrationOptions`` and its TOML key
    (``toml`` when that differs: the plural of a repeatable one)."""

    name: str
    flag: str
    metavar: str
    help: str
    type: type = str
    repeatable: bool = False  # --header/--param: given many times; a TOML table
    secrets: bool = False  # may hold ${VAR} references (written and shown as such)
    check: bool = False  # `check` takes it too
    short: str | None = None
    toml: str | None = None
    part_of: str | None = None  # "oauth2": meaningful only with --auth oauth2 (dropped by edit --auth basic:…/'')

    @property
    def key(self) -> str:
        return self.toml or self.name


SETTINGS: tuple[Setting, ...] = (
    Setting("headers", "--header", "'NAME: VALUE'", "A header (repeatable); secrets as ${VAR}.", repeatable=True,
            secrets=True, check=True, short="-H"),
    Setting("params", "--param", "KEY=VALUE", "A query parameter (repeatable); secrets as ${VAR}.", repeatable=True,
            secrets=True, check=True, short="-p"),
    Setting("records_path", "--records-path", "PATH", "Dotted path to the array of records, e.g. data.items.",
            check=True),
    Setting("key", "--key", "FIELD", "The record field that identifies it [default: id].", check=True),
    Setting("paginate", "--paginate", "MODE",
            "none, link, next-url:PATH, cursor:PATH:PARAM or page:PARAM [default: none].", check=True),
    Setting("max_pages", "--max-pages", "N", "Never fetch more pages than this [default: 1000].", int, check=True),
    Setting("timeout", "--timeout", "SECONDS", "Seconds per request [default: 30].", float, check=True),
    Setting("rate_limit", "--rate-limit", "RATE", "At most N/s, N/m or N/h requests.", check=True),
    Setting("max_retries", "--max-retries", "N", "Failed scheduled retries before it is disabled [default: 3].", int),
    Setting("incremental", "--incremental", "FIELD:PARAM",
            "Fetch only what changed: send the largest FIELD stored so far as PARAM."),
    Setting("lookback", "--lookback", "DURATION", "Take this off a timestamp cursor (late writes), e.g. 10m."),
    Setting("deletes", "--deletes", "keep|mark|remove", "Records the source no longer returns [default: keep]."),
    Setting("max_delete", "--max-delete", "PCT", "Refuse a sweep deleting more than this % of records [default: 50].",
            float),
    Setting("max_staleness", "--max-staleness", "DURATION", "Stale when not synced for this long [default: three "
            "intervals]."),
    Setting("min_records", "--min-records", "N", "Fail a sync returning fewer records [default: 0].", int),
    Setting("schema", "--schema", "evolve|freeze", "New fields add columns, or fail the sync [default: evolve]."),
    Setting("auth", "--auth", "basic:USER:PASSWORD|oauth2", "HTTP Basic (the password as ${VAR}) or OAuth2.",
            secrets=True, check=True),
    Setting("token_url", "--token-url", "URL", "OAuth2: the token endpoint.", check=True, part_of="oauth2"),
    Setting("client_id", "--client-id", "ID", "OAuth2: the client id.", secrets=True, check=True, part_of="oauth2"),
    Setting("client_secret", "--client-secret", "${VAR}", "OAuth2: the client secret, as ${VAR}.", secrets=True,
            check=True, part_of="oauth2"),
    Setting("scope", "--scope", "SCOPE", "OAuth2: a scope to ask for (repeatable).", repeatable=True, check=True,
            toml="scopes", part_of="oauth2"),
    Setting("token_param", "--token-param", "KEY=VALUE", "OAuth2: a field added to the token request (repeatable).",
            repeatable=True, secrets=True, check=True, toml="token_params", part_of="oauth2"),
    Setting("client_auth", "--client-auth", "basic|body", "OAuth2: client credentials as HTTP Basic or in the "
            "form body [default: basic].", check=True, part_of="oauth2"),
    Setting("refresh_token", "--refresh-token", "${VAR}", "OAuth2: a refresh token, as ${VAR} (the refresh-token "
            "grant; a rotated one is kept, encrypted).", secrets=True, check=True, part_of="oauth2"),
    Setting("method", "--method", "GET|POST", "The request method [default: GET; POST with --body].", check=True),
    Setting("body", "--body", "JSON|@FILE", "A JSON body to POST (read from FILE with @); ${VAR} in its strings.",
            secrets=True, check=True),
)  # fmt: skip
BY_NAME = {s.name: s for s in SETTINGS}
DURATIONS = ("lookback", "max_staleness")  # seconds stored, written back as 10m, 1h…


def options(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the options of every setting it takes (all for add and edit, those
    marked ``check`` for check): the command receives them as one ``options`` argument
    (``config.IntegrationOptions``, None for what was not given)."""
    import typer

    from syncctl.config import IntegrationOptions

    chosen = [s for s in SETTINGS if command != "check" or s.check]

    def decorate(command_function: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command_function, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.name != "options"]
        added, annotations = [], {p.name: p.annotation for p in kept}
        for s in chosen:
            names = (s.flag, s.short) if s.short else (s.flag,)
            kind = list[str] if s.repeatable else s.type | None
            annotation = Annotated[kind, typer.Option(*names, metavar=s.metavar, help=s.help, show_default=False)]
            added.append(inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=[] if s.repeatable else None,
                                           annotation=annotation))  # fmt: skip
            annotations[s.name] = annotation

        @functools.wraps(command_function)
        def command_with_settings(*args: Any, **kwargs: Any) -> Any:
            given = {s.name: kwargs.pop(s.name) for s in chosen}
            given = {k: (v or None) if BY_NAME[k].repeatable else v for k, v in given.items()}
            return command_function(*args, options=IntegrationOptions(**given), **kwargs)

        del command_with_settings.__wrapped__  # typer must read the signature below, not the original's
        command_with_settings.__signature__ = signature.replace(parameters=_ordered(kept + added))
        command_with_settings.__annotations__ = annotations
        return command_with_settings

    return decorate


def _ordered(parameters: list[inspect.Parameter]) -> list[inspect.Parameter]:
    """Positional parameters first, as Python requires (the command's own keyword-only
    ones, e.g. --json, keep their place after the settings)."""
    positional = [p for p in parameters if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    keyword = [p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return positional + keyword


# -- TOML (spec §17) -----------------------------------------------------------------------


def to_toml(values: dict[str, Any]) -> dict[str, Any]:
    """``config.IntegrationOptions`` values (as ``to_options`` gives them) in the file's
    form: repeatable ones as tables (``headers = {Authorization = "Bearer ${T}"}``;
    a parameter given twice as a list), numbers as numbers, durations as typed."""
    from syncctl.schedule import format_interval

    out: dict[str, Any] = {}
    for s in SETTINGS:
        value = values.get(s.name)
        if value is None or value == []:
            continue
        if s.name == "headers":
            out[s.key] = {n.strip(): v.strip() for n, _, v in (h.partition(":") for h in value)}
        elif s.name == "params":
            table: dict[str, Any] = {}
            for n, _, v in (p.partition("=") for p in value):
                table[n] = [*table[n], v] if isinstance(table.get(n), list) else ([table[n], v] if n in table else v)
            out[s.key] = table
        elif s.name == "scope":
            out[s.key] = list(value)
        elif s.name == "token_param":
            out[s.key] = {n: v for n, _, v in (p.partition("=") for p in value)}
        elif s.name in DURATIONS:
            from syncctl.schedule import parse_duration

            out[s.key] = format_interval(int(parse_duration(value) or 0))
        else:
            out[s.key] = value
    return out


def from_toml(entry: dict[str, Any], where: str) -> dict[str, Any]:
    """One ``[integrations.NAME]`` table's settings as ``IntegrationOptions`` values
    (strings and numbers as the options take them). UsageError for an unknown key (with
    the closest valid one) or a value of the wrong kind; ``where`` names the table."""
    known = {s.key: s for s in SETTINGS}
    values: dict[str, Any] = {}
    for key, value in entry.items():
        s = known.get(key)
        if s is None:
            continue  # the caller's keys (url, interval, table) are checked by the caller
        values[s.name] = _option_value(s, value, f"{where}.{key}")
    return values


def unknown_key(key: str, where: str, valid: list[str]) -> UsageError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return UsageError(
        f"unknown key {key!r} in {where}" + (f"; did you mean {close[0]!r}?" if close else ""),
        f"the keys are {', '.join(sorted(valid))} (add's options, with _ for -)",
    )


def kind(value: Any) -> str:
    """What a TOML value is, in words: a refusal names the kind, never the value (it may
    be a secret)."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        odd = next((k for k, v in value.items() if not isinstance(v, str)), None)
        return f"a table whose {odd} is {kind(value[odd])}" if odd is not None else "a table"
    return "a date or time"


def _names_without(value: dict[str, Any], separator: str, where: str, what: str) -> None:
    """A name the CLI form splits at ``separator`` cannot hold it: refused, not reinterpreted."""
    for name in value:
        if separator in name:
            raise UsageError(f"{where}: the {what} name {name!r} holds {separator!r}",
                             f"a {what} name cannot hold {separator!r}; check the key's quoting")  # fmt: skip


def _option_value(s: Setting, value: Any, where: str) -> Any:
    def wrong(wanted: str) -> UsageError:
        return UsageError(f"{where} must be {wanted}, not {kind(value)}", f"see: syncctl add --help ({s.flag})")

    if s.name == "headers":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise wrong("a table of header names and text values, e.g. headers = {Accept = \"application/json\"}")
        _names_without(value, ":", where, "header")
        return [f"{n}: {v}" for n, v in value.items()]
    if s.name == "scope":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong("a list of scopes, e.g. scopes = [\"read\"]")
        return value
    if s.name == "token_param":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise wrong("a table of text values, e.g. token_params = {audience = \"api\"}")
        _names_without(value, "=", where, "parameter")
        return [f"{n}={v}" for n, v in value.items()]
    if s.name == "params":
        if not isinstance(value, dict):
            raise wrong("a table of parameters, e.g. params = {limit = \"100\"}")
        _names_without(value, "=", where, "parameter")
        out = []
        for n, v in value.items():
            for item in v if isinstance(v, list) else [v]:
                if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                    raise wrong("a table of text (or number) values")
                out.append(f"{n}={item}")
        return out
    if s.type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("a whole number")
        return value
    if s.type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong("a number")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise wrong("text")
    return str(value)
