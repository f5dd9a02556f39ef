"""Integrations as code (spec §17): a TOML file of ``[integrations.NAME]`` tables and
``[[notify]]`` targets, written by ``export``, compared with the database by ``diff``,
carried out by ``apply``.

Both sides become the same flat form (:func:`integration_form`: every key with its
value, defaults included) so the plan is a pure function of the two (:func:`plan`),
unit-tested without a database. Carrying it out uses the same verbs as ``add``, ``edit``
(:func:`change_integration`), ``set-interval``, ``remove`` and ``notify add/remove``,
inside one transaction.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from syncctl import settings, tables
from syncctl.config import (
    DEFAULTS,
    IntegrationConfig,
    IntegrationOptions,
    build_config,
    validate_name,
    validate_url,
)
from syncctl.errors import UsageError
from syncctl.schedule import format_interval, parse_interval

if TYPE_CHECKING:
    from syncctl.models import Integration
    from syncctl.store import Store

DEFAULT_INTERVAL = "1h"  # add's default
# The keys of an integration's table besides its settings': where, how often, which table.
OWN_KEYS = ("url", "interval", "table")
NOTIFY_KEYS = ("url", "events", "after")


# -- one integration, as the file has it ----------------------------------------------------


@dataclass(frozen=True)
class Desired:
    """An integration as a file (or the database) says it should be."""

    name: str
    url: str
    interval: int | None
    table: str | None  # None: --table off
    config: IntegrationConfig

    def form(self) -> dict[str, Any]:
        return integration_form(self.url, self.interval, self.table, self.name, self.config)


def integration_form(url: str, interval: int | None, table: str | None, name: str,
                     config: IntegrationConfig) -> dict[str, Any]:  # fmt: skip
    """Every key of an integration's file entry with its value, defaults included."""
    return {
        "url": url, "interval": format_interval(interval), "table": table or tables.OFF,
        **settings.to_toml(config.to_options().values()),
    }  # fmt: skip


def _default_form(name: str) -> dict[str, Any]:
    return {
        "interval": DEFAULT_INTERVAL, "table": tables.default_table_name(name),
        **settings.to_toml(DEFAULTS.to_options().values()),
    }  # fmt: skip


def from_database(integration: Integration) -> Desired:
    return Desired(integration.name, integration.url, integration.sync_interval, integration.data_table,
                   integration.config)  # fmt: skip


def entry(desired: Desired) -> dict[str, Any]:
    """What ``export`` writes for one integration: the keys not at their default."""
    defaults, form = _default_form(desired.name), desired.form()
    if form.get("body") is not None:
        defaults["method"] = "POST"  # --body implies POST (spec §16)
    return {k: v for k, v in form.items() if k == "url" or defaults.get(k) != v}


def _desired(name: str, table: Any, where: str) -> Desired:
    """One ``[integrations.NAME]`` table, validated as ``add`` would (UsageError, exit 2,
    naming the table and key)."""
    try:
        validate_name(name)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc.message}", exc.hint) from None
    if not isinstance(table, dict):
        raise UsageError(f"{where} must be a table of settings", "e.g. [integrations.weather] url = \"https://…\"")
    valid = [*OWN_KEYS, *(s.key for s in settings.SETTINGS)]
    for key in table:
        if key not in valid:
            raise settings.unknown_key(key, where, valid)
    if "url" not in table:
        raise UsageError(f"{where} has no url", f"add: url = \"https://…\" under [{where}]")
    try:
        for key in OWN_KEYS:
            if key in table and not isinstance(table[key], str):
                example = {"url": "https://api.example.com/v1/items", "interval": "15m", "table": "weather"}[key]
                raise UsageError(f"{where}.{key} must be text, not {settings.kind(table[key])}", f'e.g. {key} = "{example}"')
        options = IntegrationOptions(**settings.from_toml(table, where))
        config = build_config(options)
        url = validate_url(table["url"])
        interval = parse_interval(table.get("interval", DEFAULT_INTERVAL))
        chosen = tables.parse_table(table["table"]) if "table" in table else tables.default_table_name(name)
    except UsageError as exc:
        message = exc.message if exc.message.startswith(where) else f"{where}: {exc.message}"
        raise UsageError(message, exc.hint) from None
    return Desired(name, url, interval, None if chosen == tables.OFF else chosen, config)


@dataclass(frozen=True)
class Target:
    """A notification target as the file has it."""

    url: str
    events: tuple[str, ...]
    after: int

    def form(self) -> dict[str, Any]:
        return {"events": list(self.events), "after": self.after}


def _target(item: Any, where: str) -> Target:
    from syncctl.notify import DEFAULT_EVENTS, parse_events, validate_target

    if not isinstance(item, dict):
        raise UsageError(f"{where} must be a table", "e.g. [[notify]] url = \"json://hooks.example.com/x\"")
    for key in item:
        if key not in NOTIFY_KEYS:
            raise settings.unknown_key(key, where, list(NOTIFY_KEYS))
    url, events, after = item.get("url"), item.get("events"), item.get("after", 1)
    if not isinstance(url, str):
        raise UsageError(f"{where} needs url = \"…\" (an Apprise URL)", "e.g. url = \"json://hooks.example.com/x\"")
    if events is not None and (not isinstance(events, list) or not all(isinstance(e, str) for e in events)):
        raise UsageError(f"{where}.events must be a list of events", "e.g. events = [\"failing\", \"disabled\"]")
    if isinstance(after, bool) or not isinstance(after, int):
        raise UsageError(f"{where}.after must be a whole number", "e.g. after = 3")
    try:
        chosen = parse_events(",".join(events)) if events is not None else list(DEFAULT_EVENTS)
        validate_target(url, after)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc.message}", exc.hint) from None
    return Target(url, tuple(chosen), after)


def check_tables(document: Document, *, kept: dict[str, str | None]) -> None:
    """Every data table of the state the file asks for has one owner: two entries may not
    name the same table, nor may an entry take the table of an integration that stays
    outside the file (``kept``: name -> its table; those not in the file, without
    --prune). UsageError (exit 2), before anything is changed."""
    owners = {table: name for name, table in kept.items() if table and name not in document.integrations}
    for name in sorted(document.integrations):
        table = document.integrations[name].table
        if table is None:
            continue
        other = owners.setdefault(table, name)
        if other == name:
            continue
        if other in document.integrations:
            raise UsageError(
                f"integrations.{name}: table {table!r} is also the table of integrations.{other}",
                f'give one of them another name: table = "{table}_2" (or "off")',
            )
        raise UsageError(
            f"integrations.{name}: table {table!r} is the data table of {other}, which the file does not list",
            f"give {name} another (table = \"…\"), or add {other} to the file, or remove it with apply --prune",
        )


@dataclass
class Document:
    """A whole file: integrations by name, notification targets by URL."""

    integrations: dict[str, Desired] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)


def parse(text: str, source: str) -> Document:
    """Parse and validate a file (``source`` names it in messages); any problem is one
    UsageError (exit 2), before anything is changed."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: invalid TOML: {exc}", "fix the file at that line (TOML: https://toml.io)") from None
    except RecursionError:  # the parser recurses per level of arrays and inline tables
        raise UsageError(f"{source}: invalid TOML: arrays or inline tables nested too deeply",
                         "an integrations file needs a few levels at most: fix the file") from None  # fmt: skip
    for key in data:
        if key not in ("integrations", "notify"):
            raise settings.unknown_key(key, source, ["integrations", "notify"])
    integrations = data.get("integrations", {})
    if not isinstance(integrations, dict):
        raise UsageError(f"{source}: integrations must be tables", "write each as [integrations.NAME]")
    notify = data.get("notify", [])
    if not isinstance(notify, list):
        raise UsageError(f"{source}: notify must be an array of tables", "write each as [[notify]]")
    document = Document()
    for name, table in integrations.items():
        document.integrations[name] = _desired(name, table, f"integrations.{name}")
    check_tables(document, kept={})
    for i, item in enumerate(notify, 1):
        target = _target(item, f"notify #{i}")
        if target.url in document.targets:
            raise UsageError(f"notify #{i}: {target.url} is listed twice", "keep one [[notify]] entry per URL")
        document.targets[target.url] = target
    return document


def export(integrations: list[Integration], targets: list[dict[str, Any]]) -> str:
    """The TOML ``export`` writes: integrations by name, then the notification targets;
    defaults left out, secrets as their ``${VAR}``. The same database gives the same text."""
    import tomli_w

    from syncctl.notify import DEFAULT_EVENTS

    document: dict[str, Any] = {}
    if integrations:
        document["integrations"] = {i.name: entry(from_database(i)) for i in sorted(integrations, key=lambda i: i.name)}
    text = tomli_w.dumps(document)
    # [[notify]] entries, one table each (tomli-w would write short ones inline), one per
    # URL: targets are matched by URL, so a duplicate added by hand is the same target.
    for target in sorted(_targets_by_url(targets).values(), key=lambda t: t["url"]):
        item: dict[str, Any] = {"url": target["url"]}
        if tuple(target["events"]) != DEFAULT_EVENTS:
            item["events"] = list(target["events"])
        if target["after"] != 1:
            item["after"] = target["after"]
        text += ("\n" if text else "") + "[[notify]]\n" + tomli_w.dumps(item)
    return text


# -- the plan (pure) ------------------------------------------------------------------------


@dataclass
class Plan:
    """What ``apply`` does: integrations created, settings changed (name, key, old, new),
    integrations removed (with --prune), how many already match; and the same for
    notification targets (by URL)."""

    create: list[str] = field(default_factory=list)
    change: list[tuple[str, str, Any, Any]] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    unchanged: int = 0
    extra: list[str] = field(default_factory=list)  # in the database, not the file (kept without --prune)
    notify_create: list[str] = field(default_factory=list)
    notify_change: list[tuple[str, str, Any, Any]] = field(default_factory=list)
    notify_remove: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.change or self.remove or self.notify_create or self.notify_change
                    or self.notify_remove)  # fmt: skip

    def lines(self) -> list[str]:
        out = [f"+ {name}" for name in self.create]
        out += [f"~ {name}: {key} {_shown(old)} → {_shown(new)}" for name, key, old, new in self.change]
        out += [f"- {name}" for name in self.remove]
        out += [f"+ notify {url}" for url in self.notify_create]
        out += [f"~ notify {url}: {key} {_shown(old)} → {_shown(new)}" for url, key, old, new in self.notify_change]
        out += [f"- notify {url}" for url in self.notify_remove]
        out.append(f"{self.unchanged} unchanged")
        if self.extra:
            shown = ", ".join(self.extra[:10]) + (f" and {len(self.extra) - 10} more" if len(self.extra) > 10 else "")
            out.append(f"{len(self.extra)} not in the file, kept (apply --prune removes them): {shown}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "create": self.create,
            "change": [{"name": n, "key": k, "old": o, "new": v} for n, k, o, v in self.change],
            "remove": self.remove,
            "unchanged": self.unchanged,
            "notify": {
                "create": self.notify_create,
                "change": [{"url": u, "key": k, "old": o, "new": v} for u, k, o, v in self.notify_change],
                "remove": self.notify_remove,
            },
        }


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def plan(database: dict[str, dict[str, Any]], wanted: dict[str, dict[str, Any]], *, prune: bool,
         db_targets: dict[str, dict[str, Any]] | None = None,
         file_targets: dict[str, dict[str, Any]] | None = None) -> Plan:  # fmt: skip
    """The changes that make ``database`` (integration name -> its form) match ``wanted``;
    those only in the database are removed with ``prune``, else listed as ``extra``.
    Targets alike, by URL."""
    result = Plan()
    result.create = sorted(set(wanted) - set(database))
    only_here = sorted(set(database) - set(wanted))
    result.remove, result.extra = (only_here, []) if prune else ([], only_here)
    for name in sorted(set(wanted) & set(database)):
        differences = _differences(database[name], wanted[name])
        result.change += [(name, *d) for d in differences]
        result.unchanged += not differences
    db_targets, file_targets = db_targets or {}, file_targets or {}
    result.notify_create = sorted(set(file_targets) - set(db_targets))
    result.notify_remove = sorted(set(db_targets) - set(file_targets)) if prune else []
    for url in sorted(set(file_targets) & set(db_targets)):
        result.notify_change += [(url, *d) for d in _differences(db_targets[url], file_targets[url])]
    return result


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    order = [*OWN_KEYS, *(s.key for s in settings.SETTINGS), *NOTIFY_KEYS]
    keys = sorted(set(old) | set(new), key=lambda k: order.index(k) if k in order else len(order))
    return [(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)]


def plan_for(store: Store, document: Document, *, prune: bool) -> Plan:
    """The plan for this database. Without ``prune`` only the integrations the file
    names are read in full (a file of 1,000 on a database of 10,000 reads 1,000); the
    others are listed by name."""
    tables_now = store.data_tables()
    names = list(tables_now)
    check_tables(document, kept={} if prune else tables_now)
    claimed = {t for t in tables_now.values() if t}  # moved or freed within the plan, if need be
    for name, desired in sorted(document.integrations.items()):
        if desired.table and desired.table != tables_now.get(name) and desired.table not in claimed:
            problem = store.table_name_problem(desired.table)  # syncctl's own, or someone else's
            if problem:
                raise UsageError(f"integrations.{name}: table {desired.table}: {problem}",
                                 'give it another name: table = "…" (or "off")')  # fmt: skip
    chosen = names if prune else [n for n in names if n in document.integrations]
    database = {i.name: from_database(i).form() for i in store.integrations_named(chosen)}
    if not prune:  # listed as kept, not read
        database.update({n: {} for n in names if n not in document.integrations})
    db_targets = _targets_by_url(store.notify_targets())
    return plan(
        database, {n: d.form() for n, d in document.integrations.items()}, prune=prune,
        db_targets={u: {"events": t["events"], "after": t["after"]} for u, t in db_targets.items()},
        file_targets={u: t.form() for u, t in document.targets.items()},
    )  # fmt: skip


def _targets_by_url(targets: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for target in sorted(targets, key=lambda t: t["id"]):
        found.setdefault(target["url"], target)  # the first of duplicates added by hand
    return found


# -- carrying it out ------------------------------------------------------------------------


def change_integration(store: Store, integration: Integration, *, url: str, config: IntegrationConfig,
                       table: str | None, now: datetime, interval: Any = ...) -> None:  # fmt: skip
    """Change an integration as ``edit`` (and ``set-interval``) would: the data table
    renamed, dropped or built; the URL and settings replaced, the incremental cursor
    seeded or forgotten when --incremental changes; an interval change rescheduled."""
    from syncctl.schedule import plan_on_new_interval

    if table != integration.data_table:
        store.set_data_table(integration.id, table, now)
    if url != integration.url or config != integration.config:
        store.update_integration(
            integration.id, url=url, config=config, now=now,
            cursor=cursor_rule(store, integration.id, integration.config, config),
        )
    if interval is not ... and interval != integration.sync_interval:
        store.set_interval(integration.id, interval, plan_on_new_interval(interval, integration.last_sync_at, now), now)


def cursor_rule(store: Store, integration_id: int, old: IntegrationConfig, new: IntegrationConfig):  # noqa: ANN201
    """How a change of settings changes the incremental cursor: seeded from the stored
    records when --incremental is added (or its FIELD changes), forgotten when it is
    removed, else kept (None)."""
    before = old.incremental.field if old.incremental else None
    after = new.incremental.field if new.incremental else None
    if before == after:
        return None
    if after is None:
        return lambda: None
    from syncctl.records import max_cursor

    return lambda: max_cursor(store.record_field_values(integration_id, after))


def carry_out(store: Store, document: Document, confirmed: Plan, *, prune: bool, now: datetime) -> Plan:
    """Make the database match ``document`` in one transaction, and return the plan
    carried out. The plan is made again inside it (another apply or edit may have run
    since ``confirmed`` was shown); one that would now remove more than was confirmed
    changes nothing. Removals go first, then data tables move in two steps (each moving
    table steps aside under a temporary name, then takes its new one: entries may swap
    tables, or take one a removed integration freed), then changes, then creations. A
    refusal half way (an integration syncing right now) changes nothing."""
    from syncctl.errors import BusyError
    from syncctl.models import SyncLog

    with store.transaction():
        store.serialize()
        result = plan_for(store, document, prune=prune)
        unconfirmed = sorted(set(result.remove) - set(confirmed.remove))
        if unconfirmed:
            raise BusyError(
                f"the database changed since the plan was made: {', '.join(unconfirmed)} would now be removed too;"
                " nothing was applied",
                "check the plan again with --dry-run, then apply",
            )
        if result.empty:
            return result
        touched = sorted({c[0] for c in result.change} | set(result.remove))
        existing = {i.name: i for i in store.integrations_named(touched)}
        gone = [name for name in touched if name not in existing]
        if gone:  # PostgreSQL: a `remove` on another host committed since the plan was read
            raise BusyError(f"{', '.join(gone)} was removed while apply ran; nothing was applied", "apply again")
        for name in result.remove:
            removed = store.remove_integration(existing[name].id)
            if isinstance(removed, SyncLog):
                from syncctl.engine import holder_text

                raise BusyError(
                    f"{name} is being synced right now ({holder_text(removed)}); nothing was applied",
                    "apply again when it finishes",
                )
        changed = sorted({c[0] for c in result.change})
        moving = [n for n in changed if existing[n].data_table and document.integrations[n].table
                  and existing[n].data_table != document.integrations[n].table]  # fmt: skip
        for name in moving:
            store.set_data_table(existing[name].id, f"syncctl_moving_{existing[name].id}", now)
        for name in changed:
            d = document.integrations[name]
            change_integration(store, existing[name], url=d.url, config=d.config, table=d.table, now=now,
                               interval=d.interval)  # fmt: skip
        for name in result.create:
            d = document.integrations[name]
            store.add_integration(name=name, url=d.url, config=d.config, interval=d.interval, now=now, table=d.table)
        targets = _targets_by_url(store.notify_targets())
        for url in result.notify_create:
            t = document.targets[url]
            store.add_notify_target(url, list(t.events), t.after, now)
        for url in sorted({c[0] for c in result.notify_change}):
            t = document.targets[url]
            store.update_notify_target(targets[url]["id"], list(t.events), t.after)
        for url in result.notify_remove:
            for target in store.notify_targets():
                if target["url"] == url:
                    store.remove_notify_target(target["id"])
    return result
