"""What differs between the two backends, in one object a caller asks instead of testing
which backend it has (``store.dialect``): the database's clock and leases, row locks,
whether a lock file exists, identifier quoting, type names, and the DDL of the data
tables (spec §15). The SQL the verbs share is written once in the store; a dialect holds
the fragments and statements that cannot be.

No driver is imported here: ``SQLITE`` and ``POSTGRES`` are plain values, so the CLI,
runner and engine may ask them without loading psycopg.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from syncctl import tables

# The lease and staleness rules, as each dialect writes them. Staleness (spec §10): the
# moment an integration becomes stale, that is its last success (or its creation) plus
# its max_staleness (default three intervals; none for manual-only unless set; at least
# a minute). NULL: never.
_SQLITE_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
_SQLITE_LIMIT = "max(60, coalesce(json_extract(config, '$.max_staleness'), 3 * sync_interval))"
_PG_LIMIT = "coalesce((config::jsonb ->> 'max_staleness')::float8, 3 * sync_interval)"
_PG_STALE_AT = (  # as SQLite's: max(60, NULL) is NULL there, greatest(60, NULL) 60 here
    f"(coalesce(last_success_at, created_at) + CASE WHEN {_PG_LIMIT} IS NULL THEN NULL"
    f" ELSE make_interval(secs => greatest(60, {_PG_LIMIT})) END)"
)


_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")  # a JSON text's \u0000 escape, not an escaped backslash's


def _sqlite_ms(moment: str) -> str:
    """A stored SQLite timestamp as whole milliseconds (its julian day × 86,400,000; exact)."""
    return f"round(julianday({moment}) * 86400000)"


def _sqlite_time(ms: str) -> str:
    """Milliseconds from :func:`_sqlite_ms` as a stored timestamp again."""
    return f"strftime('%Y-%m-%dT%H:%M:%fZ', {ms} / 86400000.0)"


# On SQLite the moment is kept in milliseconds while it is compared or the least is taken,
# and formatted once at the end: strftime on every row of 10,000 costs ~8 ms of a tick.
_SQLITE_STALE_MS = f"({_sqlite_ms('coalesce(last_success_at, created_at)')} + {_SQLITE_LIMIT} * 1000)"


def quote(identifier: str) -> str:
    """An SQL identifier, quoted (the same rule on both backends)."""
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class Dialect:
    """One backend's differences. ``type_names`` maps a logical column type
    (:data:`tables.TYPES`) to what the table declares."""

    name: str  # "sqlite" | "postgres"
    has_lock_file: bool  # run-due's lock file beside the database (one host only)
    leases_decide: bool  # an expired lease is proof of death, even on this host
    text_times: bool  # timestamps come back as the stored text, not as datetimes
    timestamps: bool  # ISO 8601 strings with an offset get a timestamp column (spec §15)
    now_sql: str  # the database's clock, comparable with stored timestamps
    lease_sql: str  # the database's clock plus ``?`` seconds
    stale_at_sql: str  # staleness: when an integration goes stale (NULL: never)
    stale_sql: str  # whether it is stale at ``:now``
    next_stale_sql: str  # the first moment at or after ``?`` that one goes stale (NULL: none)
    lock_sql: str  # ends a read of integrations that locks its row for the transaction
    skip_locked_sql: str  # claim_next_due's row lock, where rows can be locked
    not_in_ids_sql: str  # "id is none of ``?``" (a list of ids, see ``ids_param``)
    # First in a transaction that reads the whole configuration, then writes it (apply):
    # such transactions run one at a time ("": BEGIN IMMEDIATE already serializes writers).
    serialize_sql: str
    type_names: dict[str, str] = field(default_factory=dict)
    # The most columns a data table may have: SQLite's default build allows 2,000, less the
    # rowid sqlite-utils' transform copies when it rebuilds a table to widen a column;
    # PostgreSQL 1,600 (a row of them must still fit a page, see the store's table faults).
    max_columns: int = 1999

    # -- data tables (spec §15) -------------------------------------------------------------

    def type_name(self, logical: str) -> str:
        return self.type_names[logical]

    def create_table_sql(self, table: str, columns: list[tables.Column]) -> str:
        stamp = "TEXT" if self.name == "sqlite" else "timestamptz"
        defs = [f"{quote(tables.KEY_COLUMN)} TEXT PRIMARY KEY", f"{quote(tables.SYNCED_COLUMN)} {stamp} NOT NULL"]
        defs += [f"{quote(c.name)} {self.type_name(c.type)}" for c in columns]
        return f"CREATE TABLE {quote(table)} ({', '.join(defs)})"

    def add_column_sql(self, table: str, column: tables.Column) -> str:
        return f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column.name)} {self.type_name(column.type)}"

    def retype_sql(self, table: str, column: tables.Column) -> list[str]:
        """Statements that change one column's declared type, emptied (its values are
        written again from the records). SQLite has no such statement: its store rebuilds
        the table with sqlite-utils' ``transform`` instead."""
        name, table_ = quote(column.name), quote(table)
        return [f"ALTER TABLE {table_} ALTER COLUMN {name} TYPE {self.type_name(column.type)} USING NULL"]

    def upsert_sql(self, table: str, columns: list[str]) -> str:
        """One row of the data table, as the record is now: every column set (a field the
        record no longer has becomes NULL)."""
        names = [tables.KEY_COLUMN, tables.SYNCED_COLUMN, *columns]
        marks = ", ".join(self.value_marks(columns))
        updates = ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in names[1:])
        return (
            f"INSERT INTO {quote(table)} ({', '.join(quote(n) for n in names)}) VALUES (?, ?{', ' if marks else ''}"
            f"{marks}) ON CONFLICT ({quote(tables.KEY_COLUMN)}) DO UPDATE SET {updates}"
        )

    def value_marks(self, columns: list[str]) -> list[str]:
        return ["?"] * len(columns)

    def table_exists_sql(self) -> str:
        if self.name == "sqlite":
            return "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?"
        return ("SELECT 1 FROM pg_catalog.pg_class WHERE relname = ? AND relkind IN ('r', 'p', 'v', 'm', 'f')"
                " AND relnamespace = current_schema()::regnamespace")  # fmt: skip

    def own_table_sql(self) -> str:
        """Whether ``?`` is a table syncctl made: a table (not a view) with the ``_key`` and
        ``_synced_at`` columns every data table has. Anything else under a data table's
        name is someone else's, never renamed or dropped."""
        if self.name == "sqlite":
            return ("SELECT 1 FROM sqlite_master m WHERE m.type = 'table' AND m.name = ?"
                    " AND (SELECT count(*) FROM pragma_table_info(m.name) WHERE name IN ('_key', '_synced_at')) = 2")  # fmt: skip
        return ("SELECT 1 FROM pg_catalog.pg_class c WHERE c.relname = ? AND c.relkind IN ('r', 'p')"
                " AND c.relnamespace = current_schema()::regnamespace AND (SELECT count(*) FROM pg_catalog.pg_attribute a"
                " WHERE a.attrelid = c.oid AND a.attname IN ('_key', '_synced_at') AND NOT a.attisdropped) = 2")  # fmt: skip

    def name_taken_sql(self) -> str:
        """Whether a new table may not take the name ``?``: a table, view or index has it
        (one namespace on both backends; on PostgreSQL sequences and types too)."""
        if self.name == "sqlite":
            return "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view', 'index') AND name = ?"
        return "SELECT 1 FROM pg_catalog.pg_class WHERE relname = ? AND relnamespace = current_schema()::regnamespace"

    def storable_page(self, records: list[tuple[str, str]], objects: list[Any] | None) -> tuple[list, list | None]:
        """A page's (key, JSON) pairs and parsed records as this backend can store them.
        PostgreSQL's text and jsonb cannot hold the NUL character (U+0000): there each one,
        in a key, a string or a field name, is stored as U+FFFD. SQLite stores it as sent."""
        if self.name != "postgres" or not any("\\u0000" in data or "\x00" in key for key, data in records):
            return records, objects
        import json

        stored, parsed = [], list(objects) if objects is not None else None
        for i, (key, data) in enumerate(records):
            clean = _NUL_ESCAPE.sub(r"\1\\ufffd", data)
            if parsed is not None and clean != data:
                parsed[i] = json.loads(clean)
            stored.append((key.replace("\x00", "\ufffd"), clean))
        return stored, parsed

    def storable(self, value: Any, logical: str) -> Any:
        """A record's value as the driver stores it in a column of type ``logical``."""
        return tables.column_value(value, logical, native_booleans=self.name == "postgres")


SQLITE = Dialect(
    name="sqlite",
    has_lock_file=True,
    leases_decide=False,
    text_times=True,
    timestamps=False,
    now_sql=_SQLITE_NOW,
    lease_sql="strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || ? || ' seconds')",
    stale_at_sql=_sqlite_time(_SQLITE_STALE_MS),
    stale_sql=f"{_SQLITE_STALE_MS} < {_sqlite_ms(':now')}",
    next_stale_sql=(
        f"SELECT {_sqlite_time('min(stale_ms)')} FROM (SELECT {_SQLITE_STALE_MS} AS stale_ms FROM integrations) AS s"
        f" WHERE stale_ms >= {_sqlite_ms('?')}"
    ),
    lock_sql="",  # BEGIN IMMEDIATE locks the database: no row locks
    skip_locked_sql="",
    not_in_ids_sql="id NOT IN (SELECT value FROM json_each(?))",
    serialize_sql="",
    type_names={
        "integer": "INTEGER", "real": "REAL", "boolean": "INTEGER", "text": "TEXT",
        "timestamp": "TEXT", "json": "TEXT", "null": "TEXT",
    },  # fmt: skip
)

POSTGRES = Dialect(
    name="postgres",
    has_lock_file=False,  # hosts coordinate through the database alone
    leases_decide=True,
    text_times=False,
    timestamps=True,
    now_sql="now()",
    lease_sql="now() + make_interval(secs => ?)",
    stale_at_sql=_PG_STALE_AT,
    stale_sql=f"{_PG_STALE_AT} < :now",
    next_stale_sql=f"SELECT min(stale_at) FROM (SELECT {_PG_STALE_AT} AS stale_at FROM integrations) AS s WHERE stale_at >= ?",
    lock_sql=" FOR UPDATE OF integrations",
    skip_locked_sql=" FOR UPDATE OF integrations SKIP LOCKED",
    not_in_ids_sql="id <> ALL(?::bigint[])",
    serialize_sql="SELECT pg_advisory_xact_lock(1398361668)",  # 0x53594E44; the schema's is 0x53594E43
    type_names={
        "integer": "bigint", "real": "double precision", "boolean": "boolean", "text": "text",
        "timestamp": "timestamptz", "json": "jsonb", "null": "text",
    },  # fmt: skip
    max_columns=1600,
)
