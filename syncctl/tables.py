"""Data tables as pure functions (spec §15): how an integration's table and its columns
are named, how records are flattened into columns, which type a column takes from the
values seen and how it widens, and what a page changes. No database: the store applies
what these decide (tests/test_tables.py tests them on plain values).

The naming follows dlt's ``snake_case`` convention (``__`` joins nested names, a clash
takes ``_2``, ``_3``… in the order fields were first seen); the types follow what
sqlite-utils' ``suggest_column_types`` suggests for one batch, plus a widening order
across batches (INTEGER → REAL → TEXT; booleans, timestamps and JSON → TEXT), so a
column is never narrowed.

Pages are handled column by column (one list of values per field), not record by
record: a page of 10,000 records is a few C-level passes per field.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, repeat
from typing import Any

from syncctl.errors import UsageError
from syncctl.models import dumps, dumps_all

KEY_COLUMN = "_key"
SYNCED_COLUMN = "_synced_at"
VALUE_COLUMN = "value"  # a record that is not an object (a bare number, string or array)
MAX_DEPTH = 3  # a__b__c; an object deeper than that is kept as JSON
MAX_NAME = 63  # PostgreSQL's identifier limit (bytes; the names are ASCII)
OFF = "off"  # --table off: no data table
TYPES = ("null", "boolean", "integer", "real", "timestamp", "text", "json")
# What a data table may not be called: syncctl's own tables and views, and what each
# backend reserves.
OWN_TABLES = frozenset({
    "integrations", "sync_logs", "records", "live_records", "notify_targets", "notify_state",
    "notify_outbox", "run_due_ticks", "schema_steps", "syncctl_meta", "data_columns", "oauth_tokens",
})  # fmt: skip
RESERVED_PREFIXES = ("sqlite_", "pg_")
# PostgreSQL's system columns: a field named like one gets ``_2`` as a clash would, on both
# backends, so one integrations file names its columns alike everywhere.
SYSTEM_COLUMNS = frozenset({"tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"})
TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_TABLE_HINT = "use --table NAME with a lowercase SQL name ([a-z_][a-z0-9_]{0,62}), or --table off"

Path = str | tuple[str, ...]  # a top-level field by its name; a nested one by its names


# -- names ---------------------------------------------------------------------------------


def default_table_name(integration: str) -> str:
    """The integration's name with every ``-`` and ``.`` turned into ``_`` (a leading
    digit gets a ``_`` in front: a table name cannot start with one)."""
    name = integration.replace("-", "_").replace(".", "_")
    return ("_" + name if name[:1].isdigit() else name)[:MAX_NAME]


def parse_table(text: str) -> str:
    """``--table`` as given: a lowercase SQL name, or ``off`` (UsageError, exit 2)."""
    name = text.strip()
    if name == OFF:
        return OFF
    if not TABLE_NAME.fullmatch(name):
        raise UsageError(f"invalid --table {text!r}", _TABLE_HINT)
    clash = own_table_clash(name)
    if clash:
        other = unreserved(name)
        raise UsageError(f"--table {name}: {clash}", f"pick another name, e.g. --table {other if other != name else name + '_2'}")
    return name


def unreserved(name: str) -> str:
    """``name`` without a reserved prefix (the store's ``free_table_name`` then steps past
    syncctl's own names and those in use with ``_2``, ``_3``…)."""
    while name.startswith(RESERVED_PREFIXES):
        name = name.split("_", 1)[1] or "data"
    return name


def own_table_clash(name: str) -> str | None:
    """Why ``name`` cannot be a data table of syncctl's (None: it can)."""
    if name in OWN_TABLES:
        return f"{name!r} is one of syncctl's own tables"
    if name.startswith(RESERVED_PREFIXES):
        return f"names starting with {name.split('_')[0]}_ are reserved by the database"
    return None


_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_ACRONYM = re.compile(r"([A-Z]+)([A-Z][a-z])")
_NOT_NAME = re.compile(r"[^a-z0-9_]+")
_UNDERSCORES = re.compile(r"_+")


def snake_case(text: str) -> str:
    """One field name as a column name part: ``createdAt`` → ``created_at``, ``Temp (C)``
    → ``temp_c``, ``température`` → ``temperature``, ``2fa`` → ``_2fa``. A leading ``_``
    is kept (``_id``); runs of ``_`` become one, so ``__`` only ever joins nested names."""
    ascii_ = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    name = _ACRONYM.sub(r"\1_\2", _CAMEL.sub(r"\1_\2", ascii_)).lower()
    name = _UNDERSCORES.sub("_", _NOT_NAME.sub("_", name))
    lead = "_" if ascii_.startswith("_") else ""  # `_id` stays; `@id` is `id`
    name = name.strip("_")
    if not name:
        return "field" if not lead else "_field"
    if name[0].isdigit():
        return "_" + name
    return lead + name


def column_name(path: Path) -> str:
    """The column name a field's path asks for, before clashes: snake_case parts joined
    by ``__``, cut to 63 bytes."""
    parts = (path,) if isinstance(path, str) else path
    return "__".join(snake_case(p) for p in parts)[:MAX_NAME]


def unique_name(wanted: str, taken: Iterable[str]) -> str:
    """``wanted``, or ``wanted_2``, ``wanted_3``… (cut to fit 63 bytes) if it is taken."""
    used = set(taken)
    if wanted not in used:
        return wanted
    n = 2
    while True:
        suffix = f"_{n}"
        candidate = wanted[: MAX_NAME - len(suffix)] + suffix
        if candidate not in used:
            return candidate
        n += 1


# -- types ---------------------------------------------------------------------------------

_LOGICAL = {int: "integer", float: "real", bool: "boolean", str: "text", dict: "json", list: "json"}
# ISO 8601 date-time with an offset or Z (spec §15: timestamptz on PostgreSQL).
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|z|[+-](\d{2})(?::?(\d{2}))?)"
)
_INT64 = (-(2**63), 2**63 - 1)  # what an INTEGER / bigint column holds


def is_timestamp(text: str) -> bool:
    """An ISO 8601 date-time with an offset, and a real one (no 30 February, no 25:00)."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return False
    year, month, day, hour, minute, second, off_h, off_m = (int(g) if g else 0 for g in match.groups())
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    return off_h < 24 and off_m < 60


def widen(current: str, seen: str | None) -> str:
    """The type of a column of type ``current`` after a value of type ``seen``: never
    narrower. ``null`` (no value yet) takes the first type it meets."""
    if seen is None or seen == current or seen == "null":
        return current
    if current == "null":
        return seen
    if {current, seen} == {"integer", "real"}:
        return "real"
    return "text"


def observed_type(values: list[Any], *, timestamps: bool) -> str | None:
    """The type one batch of a field's values asks for (None: only nulls)."""
    kinds = set(map(type, values))
    kinds.discard(_NONE)
    if not kinds:
        return None
    logical = {_LOGICAL.get(k, "text") for k in kinds}
    if int in kinds:  # beyond 64 bits no INTEGER holds it: TEXT keeps every digit
        ints = [v for v in values if type(v) is int]
        if min(ints) < _INT64[0] or max(ints) > _INT64[1]:
            logical = (logical - {"integer"}) | {"text"}
    if timestamps and kinds == {str} and all(is_timestamp(v) for v in values if v is not None):
        return "timestamp"
    found = "null"
    for kind in sorted(logical):
        found = widen(found, kind)
    return found


def _json(value: Any) -> str:
    return dumps(value)


def column_value(value: Any, logical: str, *, native_booleans: bool = False) -> Any:
    """One value as a column of type ``logical`` holds it: JSON text for arrays and deep
    objects, a value of another type as its JSON text in a TEXT column (``true``, ``5``),
    booleans as 1/0 unless the backend has them."""
    if value is None:
        return None
    kind = type(value)
    if logical == "json":
        return _json(value)
    if logical == "text" and kind is not str:
        return _json(value)
    if kind is bool and not native_booleans:
        return int(value)
    return value


def convert_column(values: list[Any], logical: str, *, native_booleans: bool) -> list[Any]:
    """``column_value`` over a whole column: the list itself when no value needs a change
    (nearly always)."""
    kinds = set(map(type, values))
    kinds.discard(_NONE)
    if logical == "json":
        return dumps_all(values)
    if (logical == "text" and kinds - {str}) or (bool in kinds and not native_booleans):
        return [column_value(v, logical, native_booleans=native_booleans) for v in values]
    return values


# -- columns of a batch of records ---------------------------------------------------------


def as_objects(records: list[Any]) -> list[dict[str, Any]]:
    """Records as objects: one that is not (a bare number, string, array) as its value."""
    if all(type(r) is dict for r in records):
        return records
    return [r if type(r) is dict else {VALUE_COLUMN: r} for r in records]


def flatten_columns(records: list[dict[str, Any]]) -> dict[Path, list[Any]]:
    """Every field of a batch of objects as one list of values (None where a record lacks
    it), nested objects flattened up to three levels; fields in the order first seen."""
    out: dict[Path, list[Any]] = {}
    _walk(records, (), out)
    return out


_MISSING: dict[str, Any] = {}
_NONE = type(None)


def _walk(objects: list[dict[str, Any]], prefix: tuple[str, ...], out: dict[Path, list[Any]]) -> None:
    for name in dict.fromkeys(chain.from_iterable(objects)):
        path = prefix + (name,)
        values = list(map(dict.get, objects, repeat(name)))  # C-level: no Python frame per record
        kinds = set(map(type, values))
        if len(path) < MAX_DEPTH and dict in kinds:
            if kinds == {dict}:  # the usual case: an object in every record
                _walk(values, path, out)
                continue
            scalars = [None if type(v) is dict else v for v in values]
            if set(map(type, scalars)) - {_NONE}:
                out[path if prefix else name] = scalars
            _walk([v if type(v) is dict else _MISSING for v in values], path, out)
        else:
            out[path if prefix else name] = values


# -- a table's columns and what a batch changes --------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of a data table: its name, logical type, the field it holds, and when
    it was added."""

    name: str
    type: str
    path: Path
    added_at: str | None = None

    @property
    def dotted(self) -> str:
        return dotted(self.path)


def dotted(path: Path) -> str:
    """A field's path as ``schema`` shows it: ``station.name``; a ``.`` or ``\\`` inside a
    field's own name is escaped with ``\\`` (``a\\.b`` is the field "a.b", ``a.b`` the
    field b of a), so no two columns show the same path."""
    parts = (path,) if isinstance(path, str) else path
    return ".".join(p.replace("\\", "\\\\").replace(".", "\\.") for p in parts)


@dataclass(frozen=True)
class Change:
    """A column added, or its type widened (``typed``: a column that held only nulls got
    its first type)."""

    column: str
    change: str  # added | widened | typed
    type: str
    before: str | None = None
    path: Path = ""

    def to_json(self, type_name: Callable[[str], str]) -> dict[str, Any]:
        return {
            "column": self.column, "change": self.change, "type": type_name(self.type),
            "from": type_name(self.before) if self.before else None,
        }  # fmt: skip


@dataclass
class Layout:
    """A data table's columns by field path (as stored in ``data_columns``)."""

    columns: dict[Path, Column] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns.values()]

    def plan(self, batch: dict[Path, list[Any]], *, timestamps: bool) -> list[Change]:
        """What storing ``batch`` (see :func:`flatten_columns`) changes: new columns (named
        now, in the order their fields were first seen) and widened ones."""
        changes: list[Change] = []
        taken = {KEY_COLUMN, SYNCED_COLUMN, *SYSTEM_COLUMNS, *self.names}
        for path, values in batch.items():
            seen = observed_type(values, timestamps=timestamps)
            column = self.columns.get(path)
            if column is None:
                name = unique_name(column_name(path), taken)
                taken.add(name)
                changes.append(Change(name, "added", seen or "null", None, path))
                continue
            wider = widen(column.type, seen)
            if wider != column.type:
                kind = "typed" if column.type == "null" else "widened"
                changes.append(Change(column.name, kind, wider, column.type, path))
        return changes

    def apply(self, changes: list[Change], added_at: str) -> None:
        for change in changes:
            old = self.columns.get(change.path)
            self.columns[change.path] = Column(
                change.column, change.type, change.path, old.added_at if old else added_at
            )


def seen_by_readers(changes: list[Change], type_name: Callable[[str], str]) -> list[Change]:
    """The changes a dashboard sees: columns added, or whose declared type changes. A
    column of only nulls that gets text, or a JSON column that gets a string, keeps its
    declared TEXT on SQLite: its logical type is remembered, and nothing is reported,
    refused by ``freeze`` or rebuilt."""
    return [c for c in changes if c.change == "added" or type_name(c.type) != type_name(c.before or "null")]


def refused_when_frozen(visible: list[Change], layout: Layout) -> list[Change]:
    """The changes ``--schema freeze`` refuses of a table laid out as ``layout``: columns
    added or widened. A column of only nulls taking its first type holds no value to
    narrow (spec §15: null never decides a type), and a table with no data columns yet
    (its first sync saw no records) takes them from the first sync that brings records,
    as that first sync would have: both are reported, neither refused."""
    if not layout.columns:
        return []
    return [c for c in visible if c.change != "typed"]


def describe(changes: list[Change], type_name: Callable[[str], str]) -> str:
    """A sync's schema changes as its log's warning: ``new columns: humidity INTEGER;
    temp_c widened INTEGER → REAL``."""
    added = [f"{c.column} {type_name(c.type)}" for c in changes if c.change == "added"]
    parts = [f"new columns: {', '.join(added)}"] if added else []
    parts += [
        f"{c.column} widened {type_name(c.before or 'null')} → {type_name(c.type)}"
        if c.change == "widened" else f"{c.column} typed {type_name(c.type)}"
        for c in changes if c.change != "added"
    ]  # fmt: skip
    return "; ".join(parts)


def path_to_json(path: Path) -> str:
    """A field path as stored in ``data_columns.path`` (a JSON array of names; ASCII with
    escapes, so a key holding a lone surrogate is storable text)."""
    return json.dumps([path] if isinstance(path, str) else list(path), separators=(",", ":"))


def path_from_json(text: str) -> Path:
    parts = json.loads(text)
    return parts[0] if len(parts) == 1 else tuple(parts)
