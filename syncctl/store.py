"""The database: domain verbs over SQL, and the only layer that speaks SQL.

``Store`` holds the verbs and the SQL both backends share; its dialects differ in what is
not portable and nothing else (huey's ``storage.py`` shape):

- ``store_sqlite.SqliteStore``: a file, ``BEGIN IMMEDIATE`` (a writer waits for another
  under the busy timeout), ``json_group_array``, timestamps as ISO 8601 text;
- ``store_postgres.PostgresStore``: a ``postgresql://`` URL (psycopg 3, imported only for
  one), ``BEGIN`` plus row locks taken in one order, ``FOR UPDATE SKIP LOCKED`` claims,
  ``json_agg``, ``timestamptz`` and ``jsonb``.

Opening, pragmas and migrations live in the dialects. Every state transition (a log row,
the integration's counters and its next due time) happens in one transaction. Driver
errors never leave a public verb raw: each dialect's ``_fault`` names the environment's
faults (exit 3); what it does not name is a bug.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import inspect
import json
import os
import re
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from syncctl import liveness
from syncctl.config import IntegrationConfig
from syncctl.dialect import Dialect, quote
from syncctl.errors import DatabaseError, SyncError, UsageError
from syncctl.models import UNFINISHED_STATUSES, Integration, Status, SyncLog, Trigger, dumps
from syncctl.schedule import Plan, first_slot
from syncctl.sql import DUE
from syncctl.sql import UNFINISHED as _UNFINISHED
from syncctl.store_notify import NotifyStore
from syncctl.store_records import RecordStore
from syncctl.store_tokens import TokenStore
from syncctl.timeutil import format_ts, parse_ts

DATA_TABLES_STEP = 7  # the schema step that brought data tables (spec §15)
DISABLED_HINT_STEP = 8  # the one that stores a disabled integration's hint
APPLICATION_ID = 0x53594E43  # "SYNC" in the file header: marks a syncctl database
BUSY_TIMEOUT = 120.0  # seconds a write waits for another writer before it gives up


def busy_timeout() -> float:
    """The busy timeout in seconds: 120, or ``SYNCCTL_BUSY_TIMEOUT`` (for tests that hold a
    lock past it; an operator has no reason to change it)."""
    try:
        return max(0.0, float(os.environ.get("SYNCCTL_BUSY_TIMEOUT", BUSY_TIMEOUT)))
    except ValueError:
        return BUSY_TIMEOUT
_STEP = re.compile(r"^-- step (\d+)\s*$", re.MULTILINE)
SCHEMA_FILES = {"sqlite": "schema.sql", "postgres": "schema_postgres.sql"}


def default_db_path() -> Path:
    """``$XDG_DATA_HOME/syncctl/syncctl.db`` (``~/.local/share/syncctl/syncctl.db``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "syncctl" / "syncctl.db"


def is_url(target: str | os.PathLike[str]) -> bool:
    """Does ``--db`` name a PostgreSQL database rather than a file?"""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def schema_steps(backend: str = "sqlite") -> list[tuple[int, str]]:
    """The numbered steps of ``schema.sql`` (or ``schema_postgres.sql``), found in the
    installed package or the checkout. Both files number their steps alike: schema version
    N means the same tables and columns on both backends."""
    name = SCHEMA_FILES[backend]
    packaged = resources.files("syncctl") / name
    if packaged.is_file():
        text = packaged.read_text(encoding="utf-8")
    else:  # a source checkout or an editable install: the file at the top of the repository
        text = (Path(__file__).resolve().parent.parent / name).read_text(encoding="utf-8")
    parts = _STEP.split(text)
    # In order of their numbers, whatever order branches appended them in (a step number
    # may be reserved and land later: a gap is fine).
    return sorted((int(parts[i]), parts[i + 1]) for i in range(1, len(parts), 2))


def newer_schema(where: str, version: int, known: int) -> DatabaseError:
    return DatabaseError(
        f"{where} was written by a newer syncctl (schema version {version}; "
        f"this syncctl knows up to {known})",
        "upgrade syncctl: pip install --upgrade syncctl",
    )


# The state an admin sees, defined once: Integration.state and the JSON output both read it.
STATE_SQL = (
    "CASE WHEN sync_enabled = 0 THEN"
    " CASE WHEN disabled_reason = 'failures' THEN 'disabled' ELSE 'paused' END"
    " WHEN sync_interval IS NULL THEN 'manual' ELSE 'active' END"
)


# The hint that applies to an integration's state: a disabled one's is how to turn it
# back on (health.resume_hint, stored when it was disabled), never its last sync's
# "will retry". list --json's last_hint and Integration.hint both read it.
HINT_SQL = (
    "CASE WHEN disabled_reason = 'failures' AND sync_enabled = 0 THEN coalesce(disabled_hint, last_hint)"
    " ELSE last_hint END"
)
# When the sync running now started (NULL: none runs): an index probe per integration.
RUNNING_SINCE_SQL = (
    f"(SELECT min(started_at) FROM sync_logs l WHERE l.integration_id = integrations.id AND l.{_UNFINISHED})"
)


def integrations_sql(stale_at_sql: str) -> str:
    """Integration rows with what the store derives: state, stale_at, running_since."""
    return (
        f"SELECT integrations.*, {STATE_SQL} AS state, {HINT_SQL} AS hint, {stale_at_sql} AS stale_at,"
        f" {RUNNING_SINCE_SQL} AS running_since FROM integrations"
    )


def summary_rows_sql(stale_sql: str, where: str) -> str:
    """The rows ``list --json`` is built from (each dialect's ``_summaries_sql``)."""
    return f"SELECT *, {stale_sql} AS is_stale, {RUNNING_SINCE_SQL} AS running_since FROM integrations {where}"


_LOGS = "SELECT l.*, i.name FROM sync_logs l JOIN integrations i ON i.id = l.integration_id"
# What a finished sync changes on its integration (Store.finish_sync): its outcome, the
# schedule ``plan`` decided, the counters and freshness of spec §10, and the validators a
# full response brought (conditional requests).
_RECORD_OUTCOME = (
    "UPDATE integrations SET last_sync_at = :now, last_status = :status, last_error = :last_error,"
    " last_hint = :last_hint, consecutive_failures = :failures, next_sync_at = :next, slot_at = :slot,"
    " records_count = (SELECT COUNT(*) FROM records WHERE integration_id = :iid AND deleted_at IS NULL),"
    " sync_enabled = CASE WHEN :disable = 1 THEN 0 ELSE sync_enabled END,"
    " disabled_reason = CASE WHEN :disable = 1 THEN 'failures' ELSE disabled_reason END,"
    " disable_notice = CASE WHEN :disable = 1 THEN 1 ELSE disable_notice END,"
    " disabled_at = CASE WHEN :disable = 1 THEN :now ELSE disabled_at END,"
    " disabled_hint = CASE WHEN :disable = 1 THEN :disabled_hint ELSE disabled_hint END,"
    " last_success_at = CASE WHEN :ok = 1 THEN :now ELSE last_success_at END,"
    " failing_since = CASE WHEN :failures = 0 THEN NULL ELSE coalesce(failing_since, :now) END,"
    " syncs_succeeded = syncs_succeeded + :ok, syncs_failed = syncs_failed + 1 - :ok,"
    " last_duration_ms = :duration, last_records_count = :records,"
    " etag = CASE WHEN :validate = 1 THEN :etag ELSE etag END,"
    " last_modified = CASE WHEN :validate = 1 THEN :modified ELSE last_modified END,"
    " updated_at = :now WHERE id = :iid"
)
# How a sync's log ends (Store.finish_sync); {duration}: its length in milliseconds.
_END_LOG = (
    "UPDATE sync_logs SET status = :status, completed_at = :now, duration_ms = {duration}, records_count = :records,"
    " error_message = :error, error_hint = :hint, not_modified = :not_modified, records_deleted = :deleted"
)
# claim_next_due's pick: the oldest due integration without an unfinished log. Its
# dialect fills in how ids are passed over and how the row is locked.
_NEXT_DUE = (  # after integrations_sql(...): the row claim_next_due starts
    f" WHERE {DUE} AND {{not_skipped}}"
    " AND NOT EXISTS (SELECT 1 FROM sync_logs l WHERE l.integration_id = integrations.id"
    f" AND l.{_UNFINISHED}) ORDER BY next_sync_at LIMIT 1{{lock}}"
)


def ended_log(log: SyncLog, values: dict[str, Any]) -> SyncLog:
    """``log`` as ``_END_LOG`` with ``values`` leaves it. Its duration: whole milliseconds,
    truncated, never negative (PostgreSQL's one-statement end computes the same in SQL)."""
    done = parse_ts(values["now"])
    return dataclasses.replace(
        log, status=values["status"], completed_at=done,
        duration_ms=max(0, int((done - log.started_at).total_seconds() * 1000)), records_count=values["records"],
        error_message=values["error"], error_hint=values["hint"], not_modified=bool(values["not_modified"]),
        records_deleted=values["deleted"],
    )  # fmt: skip


def _scheduled_trigger(integration: Integration) -> Trigger:
    return Trigger.RETRY if integration.consecutive_failures else Trigger.SCHEDULE


SCHEDULED_TRIGGER_SQL = "CASE WHEN consecutive_failures > 0 THEN 'retry' ELSE 'schedule' END"  # the same, in SQL
# One element of `list --json` (spec §5), in order: (key, SQL expression, kind). Each
# dialect builds the JSON in SQL from it (``_summaries_sql``); kind "time" is a timestamp,
# "bool" a 1/0 column shown as true/false. A new field is one line here.
SUMMARY_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("name", "name", "text"),
    ("url", "url", "text"),
    ("state", STATE_SQL, "text"),
    ("interval_seconds", "sync_interval", "int"),
    ("sync_enabled", "sync_enabled <> 0", "bool"),
    # null unless active: a paused, disabled or manual-only integration has no next sync
    # (the column keeps the schedule a resume returns to)
    ("next_sync_at", f"CASE WHEN ({STATE_SQL}) = 'active' THEN next_sync_at END", "time"),
    # A sync running now shows as RUNNING since it started (spec §5: is it syncing?).
    ("last_sync_at", "coalesce(running_since, last_sync_at)", "time"),
    ("last_status", "CASE WHEN running_since IS NOT NULL THEN 'RUNNING' ELSE last_status END", "text"),
    ("consecutive_failures", "consecutive_failures", "int"),
    ("records_count", "records_count", "int"),
    ("last_error", "last_error", "text"),
    ("last_hint", HINT_SQL, "text"),
    ("stale", "is_stale", "bool"),  # the dialect's stale_sql at :now, the caller's clock
    ("last_success_at", "last_success_at", "time"),
)


def _row_to_integration(row: dict[str, Any]) -> Integration:
    return Integration(
        id=row["id"],
        name=row["name"],
        url=row["url"],
        config=IntegrationConfig.from_json(row["config"]),
        sync_interval=row["sync_interval"],
        sync_enabled=bool(row["sync_enabled"]),
        disabled_reason=row["disabled_reason"],
        next_sync_at=parse_ts(row["next_sync_at"]),
        slot_at=parse_ts(row["slot_at"]),
        last_sync_at=parse_ts(row["last_sync_at"]),
        last_status=row["last_status"],
        last_error=row["last_error"],
        last_hint=row["last_hint"],
        hint=row.get("hint"),
        consecutive_failures=row["consecutive_failures"],
        records_count=row["records_count"],
        created_at=parse_ts(row["created_at"]),
        updated_at=parse_ts(row["updated_at"]),
        state=row["state"],
        running_since=parse_ts(row["running_since"]),
        last_success_at=parse_ts(row["last_success_at"]),
        stale_at=parse_ts(row["stale_at"]),
        failing_since=parse_ts(row["failing_since"]),
        disabled_at=parse_ts(row["disabled_at"]),
        cursor=json.loads(row["cursor"]) if row.get("cursor") is not None else None,
        etag=row.get("etag"),
        last_modified=row.get("last_modified"),
        data_table=row.get("data_table"),
    )


def _row_to_log(row: dict[str, Any]) -> SyncLog:
    return SyncLog(
        id=row["id"],
        integration_id=row["integration_id"],
        integration=row["name"],
        trigger=row["trigger"],
        status=row["status"],
        attempt=row["attempt"],
        started_at=parse_ts(row["started_at"]),
        completed_at=parse_ts(row["completed_at"]),
        duration_ms=row["duration_ms"],
        records_count=row["records_count"],
        error_message=row["error_message"],
        error_hint=row["error_hint"],
        pid=row["pid"],
        owner=row["owner"],
        lease_expired=bool(row.get("lease_expired")),
        not_modified=bool(row.get("not_modified")),
        records_deleted=row.get("records_deleted") or 0,
        schema_changes=json.loads(row["schema_changes"]) if row.get("schema_changes") else [],
    )


class Store(RecordStore, NotifyStore, TokenStore):
    """A connection to one syncctl database, SQLite or PostgreSQL (``Store.open``). Not
    shared between threads: use ``reopen``.

    What differs between the backends is asked of ``self.dialect`` (``syncctl.dialect``:
    the database's clock, leases, row locks, types and the data tables' DDL). The hooks a
    backend class provides besides: ``transaction``, ``reopen``, ``close``, ``_fault`` (a
    driver error named, or None), ``_insert_id``, ``_summaries_sql`` and ``_ids_param``.
    Shared SQL uses ``?``, ``?N`` or ``:name`` placeholders, as sqlite3 does.
    """

    dialect: Dialect
    INTEGRATIONS = ""  # integrations_sql(dialect.stale_at_sql), set by each backend class
    path: Path | None = None  # the SQLite file (its lock file sits beside it); None otherwise
    label = "?"  # how messages name the database (never with a password)

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        # What opening the database did that its user should hear of once (a migration's
        # choices); the CLI prints them.
        self.notices: list[str] = []
        # Asked between busy-wait slices: True makes a waiting write give up at once (a
        # run that was told to stop). Shared by the connections ``reopen`` makes.
        self.give_up: Callable[[], bool] = lambda: False

    @classmethod
    def open(cls, target: str | os.PathLike[str], *, create: bool = True) -> Store:
        """The database ``--db`` names: a ``postgresql://`` URL or a file (created with its
        folder when ``create``). Opened, checked and migrated forward."""
        if is_url(target):
            from syncctl.store_postgres import PostgresStore

            return PostgresStore.open_url(str(target))
        from syncctl.store_sqlite import SqliteStore

        return SqliteStore.open_path(Path(target), create=create)

    def _query(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> Iterator[dict[str, Any]]:
        """Rows as dicts, as ``sqlite_utils.Database.query`` yields them."""
        cursor = self.conn.execute(sql, params if isinstance(params, Mapping) else tuple(params))
        keys = [d[0] for d in cursor.description]
        for row in cursor:
            yield dict(zip(keys, row, strict=True))

    # -- the dialect -----------------------------------------------------------------------

    def reopen(self) -> Store:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def _fault(self, exc: BaseException) -> DatabaseError | None:
        raise NotImplementedError

    def _insert_id(self, sql: str, params: tuple[Any, ...]) -> int | None:
        """Run an INSERT (maybe ``ON CONFLICT … DO NOTHING``): the new row's id, or None."""
        raise NotImplementedError

    def _summaries_sql(self, where: str) -> str:
        """``list --json`` in one query, from SUMMARY_FIELDS; parameters ``:now``, ``:name``."""
        raise NotImplementedError

    def _json_field_values(self, integration_id: int, field: str) -> Iterator[Any]:
        """The ``field`` (dotted) of every live stored record, as JSON values."""
        raise NotImplementedError

    def _lock_integration(self, integration_id: int, *, skip_locked: bool = False) -> bool:
        """Lock one integration's row for this transaction; False when it is gone, or, with
        ``skip_locked``, held by another transaction. Row locks are always taken in one
        order, the integration before its logs, so two writers never deadlock."""
        lock = self.dialect.skip_locked_sql if skip_locked else self.dialect.lock_sql
        row = self.conn.execute(f"SELECT 1 FROM integrations WHERE id = ?{lock}", (integration_id,))
        return row.fetchone() is not None

    def _ids_param(self, ids: list[int]) -> Any:
        """``ids`` as the one parameter of ``dialect.not_in_ids_sql``."""
        raise NotImplementedError

    def _durably(self) -> contextlib.AbstractContextManager[None]:
        """Around a transaction whose commit must survive a power cut (a rotated refresh
        token): the backend's durable commit. PostgreSQL's commits are."""
        return contextlib.nullcontext()

    def _after_step(self, number: int) -> None:
        """What a schema step needs besides its SQL, in its transaction."""
        if number == DATA_TABLES_STEP:
            self._adopt_data_tables()
        elif number == DISABLED_HINT_STEP:  # integrations disabled before it: their hint now
            from syncctl.health import resume_hint

            for integration_id, name, hint in self.conn.execute(
                "SELECT id, name, last_hint FROM integrations WHERE disabled_reason = 'failures'"
            ).fetchall():
                self.conn.execute(
                    "UPDATE integrations SET disabled_hint = ? WHERE id = ?", (resume_hint(name, hint), integration_id)
                )

    def _adopt_data_tables(self) -> None:
        """A database from before data tables: each integration gets its table (the
        default name, or with ``_2``, ``_3``… when that is taken, said once), built from
        the records it has."""
        from syncctl import tables
        from syncctl.timeutil import utcnow

        now = format_ts(utcnow())
        for integration_id, name in self.conn.execute("SELECT id, name FROM integrations ORDER BY id").fetchall():
            wanted = tables.default_table_name(name)
            table = self.free_table_name(wanted)  # the tables given so far are taken too
            if table != wanted:
                self.notices.append(
                    f"the records of {name} are now also in table {table} ({wanted} was taken); "
                    f"another name: syncctl edit {name} --table NAME"
                )
            self.conn.execute("UPDATE integrations SET data_table = ? WHERE id = ?", (table, integration_id))
            if self.conn.execute("SELECT 1 FROM records WHERE integration_id = ? LIMIT 1", [integration_id]).fetchone():
                try:
                    self._build_table(integration_id, table, created_at=now)
                except SyncError as exc:  # too wide for a table: its records stay, without one
                    self.conn.execute("UPDATE integrations SET data_table = NULL WHERE id = ?", [integration_id])
                    self.notices.append(f"{name} keeps no data table: {exc.message}")

    # -- integrations ----------------------------------------------------------------------

    def add_integration(
        self, *, name: str, url: str, config: IntegrationConfig, interval: int | None, now: datetime,
        table: str | None = None,
    ) -> Integration:
        """Create an integration; the first sync is due at once (NULL for manual only).
        ``table``: its data table's name (None: none); its first sync creates it."""
        due = format_ts(first_slot(now)) if interval is not None else None
        with self.transaction():
            if self._find_row(name) is None and table is not None:
                problem = self.table_name_problem(table)
                if problem:
                    raise UsageError(
                        f"cannot keep {name}'s records in table {table}: {problem}",
                        "pick another name with --table NAME (or --table off): "
                        f"syncctl add {name} … --table {self.free_table_name(table)}",
                    )
            added = self._insert_id(
                "INSERT INTO integrations (name, url, config, sync_interval, sync_enabled,"
                " next_sync_at, slot_at, created_at, updated_at, data_table) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (name, url, dumps(config.to_json()), interval, due, due, format_ts(now), format_ts(now), table),
            )
            if added is None:
                raise UsageError(
                    f"integration {name!r} already exists",
                    f"pick another name, or see it with: syncctl show {name}",
                )
        return self.get(name)

    def update_integration(
        self, integration_id: int, *, url: str, config: IntegrationConfig, now: datetime,
        cursor: Callable[[], Any] | None = None,
    ) -> None:
        """Replace the URL and config; logs, records and schedule stay. The validators of
        conditional requests are forgotten (the same response may now hold other
        records), and so are OAuth2 tokens the change outdates (``auth.outdated_tokens``); ``cursor``, when given, decides the new incremental cursor from the
        records as they are in this transaction (None forgets it)."""
        with self.transaction():
            before = self.get_by_id(integration_id, lock=True)
            if before is not None and before.config.auth is not None:
                from syncctl.auth import outdated_tokens

                self.forget_tokens(integration_id, outdated_tokens(before.url, before.config.auth, url, config.auth))
            self.conn.execute(
                "UPDATE integrations SET url = ?, config = ?, etag = NULL, last_modified = NULL,"
                " updated_at = ? WHERE id = ?",
                (url, dumps(config.to_json()), format_ts(now), integration_id),
            )
            if cursor is not None:
                self._set_cursor(integration_id, cursor())

    def _find_row(self, name: str) -> dict[str, Any] | None:
        if not name.isascii():  # names are ASCII slugs; undecodable bytes SQLite cannot bind
            return None
        rows = list(self._query(f"{self.INTEGRATIONS} WHERE name = ?", [name]))
        return rows[0] if rows else None

    def get(self, name: str) -> Integration:
        """The integration called ``name``; UsageError (exit 2) naming the closest one."""
        row = self._find_row(name)
        if row is None:
            raise self._unknown(name)
        return _row_to_integration(row)

    def get_by_id(self, integration_id: int, *, lock: bool = False) -> Integration | None:
        """The integration, or None when it is gone. With ``lock``, read and row-locked for
        this transaction in one statement (``dialect.lock_sql``; SQLite's transactions lock it all)."""
        lock_sql = self.dialect.lock_sql if lock else ""
        rows = list(self._query(f"{self.INTEGRATIONS} WHERE id = ?{lock_sql}", [integration_id]))
        return _row_to_integration(rows[0]) if rows else None

    def _unknown(self, name: str) -> UsageError:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        if close:
            return UsageError(
                f"unknown integration {name!r}; did you mean {close[0]!r}?",
                "see all names with: syncctl list",
            )
        if names:
            return UsageError(f"unknown integration {name!r}", "see all names with: syncctl list")
        return UsageError(
            f"unknown integration {name!r}: there are no integrations yet",
            "add one with: syncctl add NAME --url URL",
        )

    def names(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM integrations ORDER BY name")]

    def data_tables(self) -> dict[str, str | None]:
        """Every integration's data table (None: --table off), by name, in name order."""
        return dict(self.conn.execute("SELECT name, data_table FROM integrations ORDER BY name").fetchall())

    def serialize(self) -> None:
        """Inside a transaction that reads the whole configuration and then writes it
        (``apply``): wait until no other such transaction runs."""
        if self.dialect.serialize_sql:
            self.conn.execute(self.dialect.serialize_sql)

    def resolve(self, names: Iterable[str], all_: bool) -> list[Integration]:
        """The integrations named (each must exist), or all of them with ``all_``."""
        if all_:
            return self.list_integrations()
        return [self.get(name) for name in dict.fromkeys(names)]

    def integrations_named(self, names: list[str]) -> list[Integration]:
        """The integrations called ``names`` (those that exist), by name."""
        found: list[Integration] = []
        for start in range(0, len(names), 500):  # within every backend's parameter limit
            chunk = names[start:start + 500]
            marks = ", ".join("?" * len(chunk))
            found += [_row_to_integration(r) for r in self._query(f"{self.INTEGRATIONS} WHERE name IN ({marks})", chunk)]
        return sorted(found, key=lambda i: i.name)

    def list_integrations(self) -> list[Integration]:
        return [_row_to_integration(r) for r in self._query(f"{self.INTEGRATIONS} ORDER BY name")]

    def take_disable_notices(self) -> list[Integration]:
        """The integrations auto-disabled since the last call, each returned once."""
        # Asked on every tick: a read first, so an idle tick takes no write lock for it.
        if self.conn.execute("SELECT 1 FROM integrations WHERE disable_notice = 1 LIMIT 1").fetchone() is None:
            return []
        with self.transaction():
            for (integration_id,) in self.conn.execute(
                "SELECT id FROM integrations WHERE disable_notice = 1 ORDER BY id"
            ).fetchall():
                self._lock_integration(integration_id)  # two hosts never announce one twice
            pending = [
                _row_to_integration(r)
                for r in self._query(f"{self.INTEGRATIONS} WHERE disable_notice = 1 ORDER BY name")
            ]
            self.conn.execute("UPDATE integrations SET disable_notice = 0 WHERE disable_notice = 1")
        return pending

    def summaries_json(self, name: str | None = None, *, now: datetime) -> str:
        """``list --json`` (spec §5, §10) as JSON text: every integration by name, or one."""
        where = "WHERE name = :name" if name is not None else ""
        return self.conn.execute(self._summaries_sql(where), {"now": format_ts(now), "name": name}).fetchone()[0]

    def remove_integration(self, integration_id: int) -> tuple[int, int] | SyncLog:
        """Delete an integration with its logs, records and data table; returns (logs, records) removed,
        or, changing nothing, the running log of whoever is syncing it. One transaction: a
        claim either comes before (and is returned) or after (and finds nothing to sync)."""
        with self.transaction():
            if not self._lock_integration(integration_id):
                return 0, 0  # removed meanwhile
            running = self.unfinished_logs(integration_id)
            if running:
                return running[0]
            logs = self.conn.execute(
                "DELETE FROM sync_logs WHERE integration_id = ?", [integration_id]
            ).rowcount
            records = self.conn.execute(
                "DELETE FROM records WHERE integration_id = ?", [integration_id]
            ).rowcount
            table = self.data_table(integration_id)
            if table is not None and self._table_is_ours(table):  # never a view or table someone put in its place
                self.conn.execute(f"DROP TABLE {quote(table)}")
            self.conn.execute("DELETE FROM data_columns WHERE integration_id = ?", [integration_id])
            self.conn.execute("DELETE FROM integrations WHERE id = ?", [integration_id])
        return logs, records

    def set_interval(
        self, integration_id: int, interval: int | None, next_sync_at: datetime | None, now: datetime
    ) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE integrations SET sync_interval = ?, next_sync_at = ?, slot_at = ?,"
                " updated_at = ? WHERE id = ?",
                (interval, format_ts(next_sync_at), format_ts(next_sync_at), format_ts(now), integration_id),
            )

    def pause(self, integration_ids: list[int], now: datetime) -> None:
        with self.transaction():
            self.conn.executemany(
                "UPDATE integrations SET sync_enabled = 0, disabled_reason = 'paused',"
                " disabled_at = coalesce(disabled_at, ?2), updated_at = ?2 WHERE id = ?1",
                [(i, format_ts(now)) for i in integration_ids],
            )

    def resume(
        self,
        integration_ids: list[int],
        now: datetime,
        plan: Callable[[Integration], datetime | None],
    ) -> list[Integration]:
        """Enable again (also an auto-disabled one), clear the failure streak, and set the
        next sync to ``plan(integration)``."""
        with self.transaction():
            for integration_id in integration_ids:
                integration = self.get_by_id(integration_id, lock=True)
                if integration is None:
                    continue
                self.conn.execute(
                    "UPDATE integrations SET sync_enabled = 1, disabled_reason = NULL, disable_notice = 0, disabled_hint = NULL,"
                    " consecutive_failures = 0, failing_since = NULL, disabled_at = NULL,"
                    " next_sync_at = ?, updated_at = ? WHERE id = ?",
                    (format_ts(plan(integration)), format_ts(now), integration_id),
                )
        return [i for i in (self.get_by_id(x) for x in integration_ids) if i is not None]

    # -- scheduling ------------------------------------------------------------------------

    def reschedule_after_clock_set_back(
        self, now: datetime, rule: Callable[[Integration, datetime], datetime | None]
    ) -> list[Integration]:
        """Integrations written "in the future" (the clock has been set back since) get the
        slot ``rule`` gives, and are stamped now so this happens once. Returns those moved."""
        moved = []
        stamp = format_ts(now)
        # A scan of integrations: cheap beside a tick (10,000 rows take about a millisecond).
        candidates = [r[0] for r in self.conn.execute("SELECT id FROM integrations WHERE updated_at > ?", [stamp])]
        if not candidates:
            return moved
        with self.transaction():
            for integration_id in candidates:
                integration = self.get_by_id(integration_id, lock=True)
                if integration is None or integration.updated_at <= now:
                    continue  # gone, or moved by another host meanwhile
                slot = rule(integration, now)
                if slot is not None:
                    self.conn.execute(
                        "UPDATE integrations SET next_sync_at = ?, slot_at = ? WHERE id = ?",
                        (format_ts(slot), format_ts(slot), integration_id),
                    )
                    moved.append(integration)
                self.conn.execute("UPDATE integrations SET updated_at = ? WHERE id = ?", (stamp, integration_id))
        return moved

    def due_integrations(self, now: datetime) -> list[Integration]:
        """Enabled, scheduled and ``next_sync_at <= now``: oldest slot first (index-only)."""
        rows = self._query(
            f"{self.INTEGRATIONS} WHERE {DUE} ORDER BY next_sync_at",
            [format_ts(now)],
        )
        return [_row_to_integration(r) for r in rows]

    def claim(
        self,
        integration_id: int,
        *,
        manual: bool,
        now: datetime,
        pid: int,
        owner: str,
    ) -> tuple[int, Integration, str] | SyncLog | None:
        """Start a sync: insert its RUNNING log, unless someone else is syncing it.

        Returns (log id, integration, trigger); the running SyncLog of whoever holds it;
        or None when there is nothing to do (deleted, or a scheduled sync no longer due).
        The schema allows one unfinished log per integration (sync_logs_one_running), so
        the insert itself decides who holds it. Callers reap dead owners first, so every
        unfinished row here belongs to a live one. A scheduled claim skips an integration
        another host is claiming this instant (``FOR UPDATE SKIP LOCKED`` on PostgreSQL):
        no host waits for another. The log's lease runs on the database's clock.

        A read comes first: an integration someone is syncing is answered from it without
        waiting for the write lock, which that someone may hold (a run-due stopped by
        SIGSTOP mid-transaction: ``sync NAME`` still says busy at once, exit 75).
        """
        held = self.unfinished_logs(integration_id)
        if held:
            return held[0]
        with self.transaction():
            if not self._lock_integration(integration_id, skip_locked=not manual):
                return None
            integration = self.get_by_id(integration_id)
            if integration is None:
                return None
            if not manual and self.conn.execute(
                f"SELECT 1 FROM integrations WHERE id = ? AND {DUE}", (integration_id, format_ts(now))
            ).fetchone() is None:
                return None  # no longer due (another run synced it, an admin paused it)
            trigger = Trigger.MANUAL if manual else _scheduled_trigger(integration)
            log_id = self._insert_running_log(integration, trigger, now=now, pid=pid, owner=owner)
            if log_id is None:
                return self.unfinished_logs(integration_id)[0]
            return log_id, integration, trigger.value

    def claim_next_due(
        self,
        now: datetime,
        *,
        pid: int,
        owner: str,
        due_by: datetime | None = None,
        skip: Container[int] = (),
    ) -> tuple[int, Integration, str] | None:
        """Start the scheduled sync of the oldest integration due by ``due_by`` (default
        ``now``) that nobody holds and that is not in ``skip``: insert its RUNNING log.
        Returns (log id, integration, trigger), or None when there is none left.

        One transaction, the way Postgres job queues dequeue (huey's ``_dequeue``): on
        PostgreSQL the pick is ``FOR UPDATE SKIP LOCKED`` (a row another host is claiming
        this instant is passed over, nobody waits), on SQLite ``BEGIN IMMEDIATE`` makes
        pick and insert one step. A row whose log another host committed after this
        statement's snapshot loses at the unique index, and the next one is tried.
        """
        cutoff = format_ts(due_by or now)
        passed: list[int] = []  # sent to the database: only those met, so a long run's skip costs nothing
        while True:
            claimed = self._claim_due(cutoff, passed, now=now, pid=pid, owner=owner)
            if claimed is None:
                return None
            log_id, integration = claimed
            if log_id is not None and integration.id in skip:  # rare: due again within this run
                with self.transaction():
                    self.conn.execute("DELETE FROM sync_logs WHERE id = ?", [log_id])  # taken back
                log_id = None
            if log_id is not None:
                return log_id, integration, _scheduled_trigger(integration).value
            passed.append(integration.id)

    def _claim_due(
        self, cutoff: str, passed: list[int], *, now: datetime, pid: int, owner: str
    ) -> tuple[int | None, Integration] | None:
        """Insert the RUNNING log of the oldest integration due by ``cutoff`` that nobody
        holds and that is not in ``passed``: (the log's id, or None when another host's
        log won the unique index; the integration), or None when none is left. One
        transaction here; a dialect may do it in one statement."""
        with self.transaction():
            rows = list(self._query(
                self.INTEGRATIONS + _NEXT_DUE.format(not_skipped=self.dialect.not_in_ids_sql, lock=self.dialect.skip_locked_sql),
                (cutoff, self._ids_param(passed)),
            ))
            if not rows:
                return None
            integration = _row_to_integration(rows[0])
            trigger = _scheduled_trigger(integration)
            return self._insert_running_log(integration, trigger, now=now, pid=pid, owner=owner), integration

    def _insert_running_log(
        self, integration: Integration, trigger: Trigger, *, now: datetime, pid: int, owner: str
    ) -> int | None:
        """The RUNNING log of a claim, its lease on the database's clock; None when the
        integration already has an unfinished one (the unique index decides)."""
        return self._insert_id(
            "INSERT INTO sync_logs (integration_id, trigger, status, attempt, started_at,"
            f" pid, owner, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, {self.dialect.lease_sql})"
            f" ON CONFLICT (integration_id) WHERE {_UNFINISHED} DO NOTHING",
            (
                integration.id,
                trigger.value,
                Status.RUNNING.value,
                integration.consecutive_failures + 1,
                format_ts(now),
                pid,
                owner,
                liveness.lease_seconds(),
            ),
        )

    def has_due(self, now: datetime) -> bool:
        """Is anything due? One index probe: what an idle tick asks before starting a pool."""
        return self.conn.execute(
            f"SELECT 1 FROM integrations WHERE {DUE} LIMIT 1",
            [format_ts(now)],
        ).fetchone() is not None

    def renew_leases(self, owner: str) -> int:
        """Extend the lease of every unfinished log ``owner`` holds (the heartbeat of a
        process that is syncing); returns how many."""
        with self.transaction():
            return self.conn.execute(
                f"UPDATE sync_logs SET lease_until = {self.dialect.lease_sql} WHERE {_UNFINISHED} AND owner = ?",
                (liveness.lease_seconds(), owner),
            ).rowcount

    def unfinished_logs(self, integration_id: int | None = None) -> list[SyncLog]:
        """PENDING or RUNNING logs (of one integration, or all), each knowing whether its
        lease has expired on the database's clock."""
        sql = (
            f"SELECT l.*, i.name, l.lease_until < {self.dialect.now_sql} AS lease_expired FROM sync_logs l"
            f" JOIN integrations i ON i.id = l.integration_id WHERE l.{_UNFINISHED}"
        )
        params: list[Any] = []
        if integration_id is not None:
            sql += " AND l.integration_id = ?"
            params.append(integration_id)
        # "+l.id": order after the lookup, so the partial index on unfinished rows is used
        # (ordering by id would make SQLite walk all of sync_logs in rowid order instead).
        return [_row_to_log(r) for r in self._query(sql + " ORDER BY +l.id", params)]

    def finish_sync(
        self,
        log_id: int,
        *,
        integration_id: int,
        status: Status,
        now: datetime,
        records_count: int | None,
        error_message: str | None,
        error_hint: str | None,
        plan: Callable[[Integration, SyncLog], Plan],
        not_modified: bool = False,
        records_deleted: int = 0,
        validators: tuple[str | None, str | None] | None = None,
        disabled_hint: str | None = None,
    ) -> SyncLog | None:
        """End a RUNNING log and move its integration's schedule, in one transaction: the
        log's status and what it tells (a 304, records deleted), the integration's outcome,
        counters and freshness (spec §10), and with ``validators`` (a full response's ETag
        and Last-Modified) what the next conditional request sends.

        ``plan`` decides the schedule from the integration as it is now (an admin may
        have paused it meanwhile). Returns the finished log, or None if it was already
        finished by someone else (crash recovery, a signal handler), and then changes nothing.
        """
        values = {
            "status": status.value, "now": format_ts(now), "records": records_count, "error": error_message,
            "hint": error_hint, "not_modified": int(not_modified), "deleted": records_deleted, "id": log_id,
        }  # fmt: skip

        def outcome(integration: Integration, log: SyncLog) -> dict[str, Any]:
            """The parameters of ``_RECORD_OUTCOME``, once ``plan`` has decided."""
            decided = plan(integration, log)
            succeeded = status is Status.SUCCESS
            return {
                **values, "ok": int(succeeded), "last_error": None if succeeded else error_message,
                "last_hint": None if succeeded else error_hint, "failures": decided.consecutive_failures,
                "next": format_ts(decided.next_sync_at), "slot": format_ts(decided.slot_at),
                "disable": int(decided.disable), "duration": log.duration_ms, "validate": int(validators is not None),
                "etag": validators[0] if validators else None, "modified": validators[1] if validators else None,
                "iid": integration_id, "disabled_hint": disabled_hint,
            }  # fmt: skip

        done = self._finish_unchanged(log_id, integration_id, values, outcome)
        if done is not None:
            return done
        with self.transaction():
            # The integration's row lock first (every writer of its logs takes it), then
            # the log as whoever held that lock before us left it.
            integration = self.get_by_id(integration_id, lock=True)
            log = None if integration is None else self._end_log(log_id, values)
            if log is None:
                return None
            self.conn.execute(_RECORD_OUTCOME, outcome(integration, log))
        return log

    def _finish_unchanged(
        self, log_id: int, integration_id: int, values: dict[str, Any],
        outcome: Callable[[Integration, SyncLog], dict[str, Any]],
    ) -> SyncLog | None:
        """``finish_sync`` in one statement, when the integration is still as this
        connection claimed it: the finished log, or None to take the locked way. A dialect
        with row versions may provide it."""
        return None

    def _end_log(self, log_id: int, values: dict[str, Any]) -> SyncLog | None:
        """Finish a log that is still unfinished (``_END_LOG`` with ``values``); the log as
        finished, or None when it was already finished and nothing changed. A read and a
        write here; a dialect may do it in one statement."""
        log = self.history_entry(log_id)
        if log is None or log.status not in UNFINISHED_STATUSES:
            return None
        ended = ended_log(log, values)
        self.conn.execute(_END_LOG.format(duration=":duration") + " WHERE id = :id",
                          {**values, "duration": ended.duration_ms})  # fmt: skip
        return ended

    # -- logs ------------------------------------------------------------------------------

    def history(
        self,
        *,
        integration_id: int | None = None,
        limit: int = 20,
        status: str | None = None,
        since: datetime | None = None,
    ) -> list[SyncLog]:
        """Sync logs, newest first."""
        where, params = [], []
        if integration_id is not None:
            where.append("l.integration_id = ?")
            params.append(integration_id)
        if status is not None:
            where.append("l.status = ?")
            params.append(status)
        if since is not None:
            where.append("l.started_at >= ?")
            params.append(format_ts(since))
        sql = _LOGS
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY l.id DESC LIMIT ?"
        params.append(limit)
        return [_row_to_log(r) for r in self._query(sql, params)]

    def history_entry(self, log_id: int) -> SyncLog | None:
        rows = list(
            self._query(
                f"{_LOGS} WHERE l.id = ?",
                [log_id],
            )
        )
        return _row_to_log(rows[0]) if rows else None

    def prune(self, cutoff: datetime, keep: int = 10) -> dict[str, int]:
        """Delete finished logs started before ``cutoff``, keeping each integration's
        newest ``keep``. Returns {integration name: logs removed}."""
        removed: dict[str, int] = {}
        stamp = format_ts(cutoff)
        with self.transaction():
            candidates = self.conn.execute(
                "SELECT DISTINCT integration_id FROM sync_logs WHERE started_at < ?", [stamp]
            ).fetchall()
            for (integration_id,) in candidates:
                count = self.conn.execute(
                    "DELETE FROM sync_logs WHERE integration_id = ? AND started_at < ?"
                    f" AND NOT ({_UNFINISHED}) AND id NOT IN"
                    " (SELECT id FROM sync_logs WHERE integration_id = ? ORDER BY id DESC LIMIT ?)",
                    (integration_id, stamp, integration_id, keep),
                ).rowcount
                if count:
                    name = self.conn.execute(
                        "SELECT name FROM integrations WHERE id = ?", [integration_id]
                    ).fetchone()
                    removed[name[0] if name else f"#{integration_id}"] = count
        return removed


def _translating(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            fault = self._fault(exc)
            if fault is None:
                raise  # ours or a bug: "internal error" above, with the traceback on request
            raise fault from None

    return wrapper


# Every public storage verb (not the transaction context manager, which translates as the
# verbs using it unwind, nor ``open``, which does it itself).
for _klass in (Store, RecordStore, NotifyStore, TokenStore):
    for _name, _member in list(vars(_klass).items()):
        if not _name.startswith("_") and inspect.isfunction(_member) and _name not in (
            "transaction", "reopen", "close"
        ):
            setattr(Store, _name, _translating(_member))


def split_sql(script: str) -> list[str]:
    """Split a schema step into statements (it holds no triggers or string semicolons)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    text = "\n".join(line.split(" --")[0] for line in lines)
    return [s.strip() for s in text.split(";")]
