"""The store's records aggregate: each integration's records (``records``, the
``live_records`` view) and its data table (spec §15), written together in one
transaction per page, swept together, removed together. A mixin of
``syncctl.store.Store``: the same connection and transactions."""

from __future__ import annotations


import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from syncctl import tables
from syncctl.dialect import quote
from syncctl.errors import SyncError, UsageError
from syncctl.models import dumps
from syncctl.sql import UNFINISHED, UPSERT_RECORD_SQL
from syncctl.tables import Change, Column, Layout
from syncctl.timeutil import format_ts, parse_ts

KEEP: Any = object()  # upsert_records: leave the cursor as it is
_CHUNK = 5000  # stored records read at a time when a data table is built from them


def cursor_json(cursor: Any) -> str | None:
    return None if cursor is None else dumps(cursor)


@dataclass
class TableWrite:
    """One sync's writes to its integration's data table: whether it may change the
    table's columns (``freeze``: a page that would is refused), and what it changed so
    far (its log carries them: ``schema_changes``, and the hint)."""

    integration: str
    log_id: int | None
    freeze: bool = False
    changes: list[Change] = field(default_factory=list)
    stamp: str = ""  # the page being written: when its changes happened
    created: bool = False  # this sync made the table (its columns are "added", not news)
    table: str = ""  # the table's name, as the last page found it

    def frozen_error(self, changes: list[Change], type_name: Any) -> SyncError:
        fields = ", ".join(
            f"{tables.dotted(c.path)} ({type_name(c.type)}"
            + (f", was {type_name(c.before)})" if c.before else ")")
            for c in changes
        )
        return SyncError(
            f"the records would change the frozen schema of the data table: {fields}; nothing of this "
            "page was stored",
            "if the new fields are expected, let the table follow them: syncctl edit {name} --schema evolve",
        )


class RecordStore:
    """Records and data tables."""

    # -- records ---------------------------------------------------------------------------

    def upsert_records(
        self, integration_id: int, records: list[tuple[str, str]], now: datetime, *, cursor: Any = KEEP,
        objects: list[Any] | None = None, table: TableWrite | None = None,
    ) -> None:
        """Insert or update (key, JSON) pairs; a second sync adds no duplicates, and a
        record seen again is no longer marked deleted. ``cursor`` (the incremental
        cursor these records advance it to) is stored in the same transaction, so a
        failure on a later page resumes after the pages committed.

        With ``table``, the integration's data table gets the same rows in the same
        transaction (``objects``: the records as parsed, in the order of ``records``)."""
        stamp = format_ts(now)
        records, objects = self.dialect.storable_page(records, objects)
        if table is None:
            self._upsert(integration_id, records, stamp, cursor)
            return
        noted, created = list(table.changes), table.created
        try:
            with self.transaction():
                self._upsert(integration_id, records, stamp, cursor)
                if objects is None:
                    objects = [json.loads(data) for _, data in records]
                try:
                    self._write_table(integration_id, table, [k for k, _ in records], objects, stamp)
                except SyncError:
                    raise
                except Exception as exc:
                    fault = self._table_fault(exc)
                    if fault is None:
                        raise
                    raise _table_error(table.table, *fault) from None  # no query: PostgreSQL's transaction is aborted
        except BaseException:
            table.changes[:] = noted  # rolled back: this page changed no column, made no table
            table.created = created
            raise

    # -- data tables (spec §15) ------------------------------------------------------------

    def _table_fault(self, exc: BaseException) -> tuple[bool, str] | None:
        """A driver error writing a data table that the data or the table itself caused,
        not the environment: (whether a limit of the backend was met, its first line); None
        for anything else. Each backend's store knows its errors."""
        raise NotImplementedError

    def data_table(self, integration_id: int) -> str | None:
        """The name of the integration's data table (None: ``--table off``)."""
        row = self.conn.execute("SELECT data_table FROM integrations WHERE id = ?", [integration_id]).fetchone()
        return row[0] if row else None

    def table_schema(self, integration_id: int) -> tuple[str | None, list[Column], bool]:
        """(the data table's name, its columns, whether it exists yet)."""
        name = self.data_table(integration_id)
        if name is None:
            return None, [], False
        return name, list(self._layout(integration_id).columns.values()), self._table_exists(name)

    def table_name_problem(self, name: str, integration_id: int | None = None) -> str | None:
        """Why ``name`` cannot be this integration's data table (None: it can): one of
        syncctl's own, another integration's, or a table of someone else's."""
        clash = tables.own_table_clash(name)
        if clash:
            return clash
        row = self.conn.execute(
            "SELECT name FROM integrations WHERE data_table = ? AND id <> ?", (name, integration_id or 0)
        ).fetchone()
        if row:
            return f"{name!r} is already the data table of integration {row[0]}"
        if self._name_taken(name) and self.data_table(integration_id or 0) != name:
            return f"a table, view or index named {name!r} already exists in the database"
        return None

    def free_table_name(self, wanted: str) -> str:
        """A name like ``wanted`` that a data table may take (no :meth:`table_name_problem`):
        :func:`tables.unreserved`, then ``_2``, ``_3``… (cut to fit 63 bytes)."""
        base = tables.unreserved(wanted)
        candidate, n = base, 1
        while self.table_name_problem(candidate) is not None:
            n += 1
            candidate = base[: tables.MAX_NAME - len(f"_{n}")] + f"_{n}"
        return candidate

    def set_data_table(self, integration_id: int, name: str | None, now: datetime) -> None:
        """Rename the data table (``name``), or drop it (None); one made for records
        stored already is built from them, all in one transaction."""
        with self.transaction():
            old = self.data_table(integration_id)
            if old == name:
                return
            if name is not None:
                problem = self.table_name_problem(name, integration_id)
                if problem:
                    raise UsageError(f"--table {name}: {problem}", f"pick another name, e.g. --table {self.free_table_name(name)}")
            exists = old is not None and self._table_is_ours(old)  # a view or table put in its place stays
            if old is not None and name is not None and exists:
                self.conn.execute(f"ALTER TABLE {quote(old)} RENAME TO {quote(name)}")
            elif exists:  # its columns stay remembered: made again, it names them alike
                self.conn.execute(f"DROP TABLE {quote(old)}")
            self.conn.execute("UPDATE integrations SET data_table = ? WHERE id = ?", (name, integration_id))
            if name is not None and not self._table_exists(name):
                self._build_table(integration_id, name, created_at=format_ts(now))

    def _check_width(self, fields: int) -> None:
        """A data table holds at most the backend's columns, ``_key`` and ``_synced_at``
        among them: records with more fields fail the page (nothing stored) with the fix."""
        room = self.dialect.max_columns - 2
        if fields > room:
            raise SyncError(
                f"the records have {fields} fields, more than a data table's {room} columns "
                f"({self.dialect.name.replace('sqlite', 'SQLite').replace('postgres', 'PostgreSQL')}'s limit)",
                "keep them without a data table with --table off, or point --records-path at a narrower array",
            )

    def _name_taken(self, name: str) -> bool:
        return self.conn.execute(self.dialect.name_taken_sql(), [name]).fetchone() is not None

    def _table_is_ours(self, name: str) -> bool:
        return self.conn.execute(self.dialect.own_table_sql(), [name]).fetchone() is not None

    def _table_exists(self, name: str) -> bool:
        return self.conn.execute(self.dialect.table_exists_sql(), [name]).fetchone() is not None

    def _layout(self, integration_id: int) -> Layout:
        layout = Layout()
        for name, type_, path, added_at in self.conn.execute(
            "SELECT name, type, path, added_at FROM data_columns WHERE integration_id = ? ORDER BY position",
            [integration_id],
        ):
            stamp = added_at if isinstance(added_at, str) else format_ts(added_at)
            column = Column(name, type_, tables.path_from_json(path), stamp)
            layout.columns[column.path] = column
        return layout

    def _write_table(
        self, integration_id: int, write: TableWrite, keys: list[str], objects: list[Any], stamp: str
    ) -> None:
        """A page's rows in the data table (inside the page's transaction), after what
        they change of its columns: new columns, wider types; a frozen schema refuses."""
        name = self.data_table(integration_id)
        if name is None:
            return
        write.stamp, write.table = stamp, name
        if not self._table_exists(name):  # the first write, or records stored before it existed
            # Columns in the order the source sent the fields (jsonb keeps its own order).
            first = tables.flatten_columns(tables.as_objects(objects))
            changes = self._build_table(integration_id, name, created_at=stamp, seen=first)
            self._upsert_rows(name, self._layout(integration_id), keys, first, stamp, len(objects))
            write.created = True
            self._note_changes(integration_id, write, changes, news=False)
            return
        layout = self._layout(integration_id)
        batch = tables.flatten_columns(tables.as_objects(objects))
        changes = layout.plan(batch, timestamps=self.dialect.timestamps)
        self._check_width(len(layout.columns) + sum(c.change == "added" for c in changes))
        visible = tables.seen_by_readers(changes, self.dialect.type_name)
        if write.freeze and not write.created:  # the sync that makes the table makes it whole
            refused = tables.refused_when_frozen(visible, layout)
            if refused:
                raise write.frozen_error(refused, self.dialect.type_name)
        retyped = self._change_columns(integration_id, name, layout, changes, stamp)
        if retyped:  # values written under the old type are written again from the records
            self._fill_table(integration_id, name, layout)
        else:
            self._upsert_rows(name, layout, keys, batch, stamp, len(objects))
        self._note_changes(integration_id, write, visible, news=not write.created)

    def _change_columns(
        self, integration_id: int, table: str, layout: Layout, changes: list[Change], stamp: str
    ) -> bool:
        """Add and widen columns as ``changes`` say, and remember them (``data_columns``).
        Returns whether a column's type changed."""
        if not changes:
            return False
        before = dict(layout.columns)
        layout.apply(changes, stamp)
        declared = tables.seen_by_readers(changes, self.dialect.type_name)
        retyped = [layout.columns[c.path] for c in declared if c.change != "added"]
        for change in changes:
            if change.change == "added":
                self.conn.execute(self.dialect.add_column_sql(table, layout.columns[change.path]))
        if retyped:
            self._retype(table, retyped)
        position = len(before)
        for change in changes:
            column = layout.columns[change.path]
            if change.change == "added":
                self.conn.execute(
                    "INSERT INTO data_columns (integration_id, name, type, path, position, added_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (integration_id, column.name, column.type, tables.path_to_json(column.path), position, stamp),
                )
                position += 1
            else:
                self.conn.execute(
                    "UPDATE data_columns SET type = ? WHERE integration_id = ? AND name = ?",
                    (column.type, integration_id, column.name),
                )
        return bool(retyped)

    def _retype(self, table: str, columns: list[Column]) -> None:
        """Change columns' declared types (their values are written again afterwards)."""
        for column in columns:
            for statement in self.dialect.retype_sql(table, column):
                self.conn.execute(statement)

    def _build_table(
        self, integration_id: int, table: str, *, created_at: str, seen: dict | None = None
    ) -> list[Change]:
        """Create the data table from the integration's live records (backfill): the
        columns every stored record asks for (those of ``seen`` first), then their rows.
        A table made again (``--table off``, then on) keeps the names its columns had, so
        clashing fields are named as the first sync named them (PostgreSQL's jsonb does
        not keep the source's key order). Returns its columns as changes ("added")."""
        remembered = self._layout(integration_id)
        layout = Layout({path: Column(c.name, "null", path) for path, c in remembered.columns.items()})
        planned = []
        if seen is not None:  # a page being written: its rows are the caller's to write
            planned.append(seen)
        skip = created_at if seen is not None else None
        for batch in planned:
            layout.apply(layout.plan(batch, timestamps=self.dialect.timestamps), created_at)
        for _keys, objects, _stamps in self._stored_batches(integration_id, skip):
            batch = tables.flatten_columns(tables.as_objects(objects))
            layout.apply(layout.plan(batch, timestamps=self.dialect.timestamps), created_at)
        changes = [Change(c.name, "added", c.type, None, c.path) for c in layout.columns.values()]
        self._check_width(len(changes))
        layout = Layout()
        layout.apply(changes, created_at)
        self.conn.execute("DELETE FROM data_columns WHERE integration_id = ?", [integration_id])
        self.conn.execute(self.dialect.create_table_sql(table, list(layout.columns.values())))
        self.conn.executemany(
            "INSERT INTO data_columns (integration_id, name, type, path, position, added_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(integration_id, c.name, c.type, tables.path_to_json(c.path), i, created_at)
             for i, c in enumerate(layout.columns.values())],
        )
        self._fill_table(integration_id, table, layout, skip)
        return changes

    def _fill_table(self, integration_id: int, table: str, layout: Layout, skip: str | None = None) -> None:
        """Write every live record's row again (each with its own ``_synced_at``), but
        those stamped ``skip``."""
        for keys, objects, stamps in self._stored_batches(integration_id, skip):
            batch = tables.flatten_columns(tables.as_objects(objects))
            self._upsert_rows(table, layout, keys, batch, stamps, len(objects))

    def _stored_batches(
        self, integration_id: int, skip: str | None = None
    ) -> Iterator[tuple[list[str], list[Any], list[Any]]]:
        """The live records (but those stamped ``skip``) in chunks: keys, objects, stamps."""
        cursor = self.conn.execute(
            "SELECT key, data, synced_at FROM records WHERE integration_id = ? AND deleted_at IS NULL"
            + (" AND synced_at <> ?" if skip else "") + " ORDER BY key",
            [integration_id, skip] if skip else [integration_id],
        )
        rows = cursor.fetchall()  # read whole before writing on the same connection
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start:start + _CHUNK]
            yield ([r[0] for r in chunk], [json.loads(r[1]) for r in chunk],
                   [r[2] if isinstance(r[2], str) else format_ts(r[2]) for r in chunk])  # fmt: skip

    def _upsert_rows(
        self, table: str, layout: Layout, keys: list[str], batch: dict[Any, list[Any]], stamps: Any, count: int
    ) -> None:
        columns = list(layout.columns.values())
        native = self.dialect.name == "postgres"
        values = [
            tables.convert_column(batch[c.path], c.type, native_booleans=native) if c.path in batch else None
            for c in columns
        ]
        nothing = [None] * count
        values = [v if v is not None else nothing for v in values]
        stamp_column = stamps if isinstance(stamps, list) else [stamps] * count
        sql = self.dialect.upsert_sql(table, [c.name for c in columns])
        rows = list(zip(keys, stamp_column, *values, strict=True))
        try:
            self.conn.executemany(sql, rows)
        except UnicodeEncodeError:  # a lone surrogate ("\ud800" in the JSON): store it escaped
            self.conn.executemany(sql, [tuple(_storable(v) for v in row) for row in rows])

    def _note_changes(self, integration_id: int, write: TableWrite, changes: list[Change], *, news: bool) -> None:
        """Keep a page's schema changes on its sync's log (``schema_changes``), and queue
        them for the targets subscribed to ``schema`` (not a table's creation)."""
        if not changes:
            return
        for change in changes:  # one entry per column for the whole sync: how it began, its final type
            earlier = next((i for i, c in enumerate(write.changes) if c.column == change.column), None)
            if earlier is None:
                write.changes.append(change)
            else:
                write.changes[earlier] = replace(write.changes[earlier], type=change.type)
        if write.log_id is not None:
            listed = [c.to_json(self.dialect.type_name) for c in write.changes]
            self.conn.execute("UPDATE sync_logs SET schema_changes = ? WHERE id = ?", (dumps(listed), write.log_id))
        if not news:
            return
        text = tables.describe(changes, self.dialect.type_name)
        table = self.data_table(integration_id)
        for target in self.notify_targets():
            if "schema" in target["events"]:
                self.queue_notification(
                    target["id"], "schema", f"syncctl: {write.integration}'s table {table} changed",
                    f"The data table {table} of {write.integration} changed: {text}.\n"
                    f"See its columns with: syncctl schema {write.integration}",
                    now=parse_ts(write.stamp),
                )


    def _upsert(self, integration_id: int, records: list[tuple[str, str]], stamp: str, cursor: Any) -> None:
        """``upsert_records``: one transaction here; a dialect may do it in one statement."""
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO records (integration_id, key, data, synced_at) VALUES (?, ?, ?, ?)"
                f" {UPSERT_RECORD_SQL}",
                ((integration_id, key, data, stamp) for key, data in records),
            )
            if cursor is not KEEP:
                self._set_cursor(integration_id, cursor)

    def _set_cursor(self, integration_id: int, cursor: Any) -> None:
        self.conn.execute("UPDATE integrations SET cursor = ? WHERE id = ?", (cursor_json(cursor), integration_id))

    def record_field_values(self, integration_id: int, field: str) -> Iterator[Any]:
        """The ``field`` (dotted) of every live stored record: what seeds a new cursor."""
        return self._json_field_values(integration_id, field)

    def reset_sync_state(self, integration_id: int, now: datetime) -> None:
        """Forget the incremental cursor and the conditional-request validators: the next
        sync is a full one. Records stay."""
        with self.transaction():
            self.conn.execute(
                "UPDATE integrations SET cursor = NULL, etag = NULL, last_modified = NULL, updated_at = ?"
                " WHERE id = ?",
                (format_ts(now), integration_id),
            )

    def unseen_records(self, integration_id: int, stamp: datetime) -> tuple[int, int]:
        """(live records a sync stamped ``stamp`` did not see, live records): what a
        deletion sweep would take, and out of how many."""
        row = self.conn.execute(
            "SELECT count(*), coalesce(sum(CASE WHEN synced_at <> ? THEN 1 ELSE 0 END), 0) FROM records"
            " WHERE integration_id = ? AND deleted_at IS NULL",
            (format_ts(stamp), integration_id),
        ).fetchone()
        return row[1], row[0]

    def sweep_records(
        self, integration_id: int, stamp: datetime, *, remove: bool, now: datetime, log_id: int | None = None
    ) -> int:
        """Mark (or remove) the records a complete sync stamped ``stamp`` did not see, and
        remove their rows from the data table; returns how many were newly marked or removed. With ``log_id``, only while that
        sync still holds the integration: one reaped meanwhile (its lease expired: another
        host may be syncing it now) deletes nothing."""
        with self.transaction():
            if log_id is not None and self._lock_integration(integration_id) and self.conn.execute(
                f"SELECT 1 FROM sync_logs WHERE id = ? AND {UNFINISHED}", (log_id,)
            ).fetchone() is None:
                return 0
            table = self.data_table(integration_id)
            if table is not None and self._table_exists(table):  # the same rows leave the data table
                self.conn.execute(
                    f"DELETE FROM {quote(table)} WHERE {quote(tables.KEY_COLUMN)} IN (SELECT key FROM records"
                    " WHERE integration_id = ? AND synced_at != ?)",
                    (integration_id, format_ts(stamp)),
                )
            if remove:
                return self.conn.execute(
                    "DELETE FROM records WHERE integration_id = ? AND synced_at != ?",
                    (integration_id, format_ts(stamp)),
                ).rowcount
            return self.conn.execute(
                "UPDATE records SET deleted_at = ? WHERE integration_id = ? AND synced_at != ?"
                " AND deleted_at IS NULL",
                (format_ts(now), integration_id, format_ts(stamp)),
            ).rowcount

    def stored_records(self, integration_id: int, *, limit: int, include_deleted: bool) -> list[dict[str, Any]]:
        """The records' data objects, most recently synced first."""
        where = "" if include_deleted else " AND deleted_at IS NULL"
        rows = self.conn.execute(
            f"SELECT data FROM records WHERE integration_id = ?{where} ORDER BY synced_at DESC, key LIMIT ?",
            (integration_id, limit),
        )
        return [json.loads(row[0]) for row in rows]

    def records(self, integration_id: int) -> dict[str, Any]:
        """Every stored record of one integration, by key (for tests and ``show``)."""
        return {
            r["key"]: json.loads(r["data"])
            for r in self._query(
                "SELECT key, data FROM records WHERE integration_id = ? ORDER BY key", [integration_id]
            )
        }


def _storable(value: Any) -> Any:
    """Text as valid UTF-8: lone surrogates become their ``\\udXXX`` escapes."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _table_error(table: str, limit: bool, reason: str) -> SyncError:
    """A page its data table cannot take: too wide for the backend, or a table changed
    (or made) outside syncctl. The page fails whole; the stored records are untouched."""
    if limit:
        return SyncError(
            f"the records do not fit data table {table}: {reason}",
            "keep them without a data table with --table off, or point --records-path at a narrower array",
        )
    return SyncError(
        f"cannot write data table {table}: {reason} (was it changed outside syncctl?)",
        f"drop {table} (the next sync builds it again from the stored records), or keep them in another "
        "table: syncctl edit {name} --table NAME",
    )
