"""The PostgreSQL dialect of the store (``--db postgresql://…``, psycopg 3 from the
``syncctl[postgres]`` extra, imported only here): connecting, migrations from
``schema_postgres.sql`` under an advisory lock, ``BEGIN`` with row locks taken in one order
(an integration before its logs), ``FOR UPDATE SKIP LOCKED`` claims, ``json_agg``, and
naming psycopg's errors in one line (never with the password).

Several hosts share one database: they coordinate only through it. The domain verbs are
the base class's (``syncctl.store.Store``); their ``?`` placeholders become ``%s`` here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg.rows import dict_row
    from psycopg.types.string import TextLoader
except ImportError:  # the extra is not installed: say how to get it (exit 3, one line)
    psycopg = None

from syncctl import errors, liveness
from syncctl import store as base
from syncctl.dialect import POSTGRES
from syncctl.errors import DatabaseError, UsageError
from syncctl.models import Integration, SyncLog, dumps
from syncctl.secrets import only_references
from syncctl.sql import UNFINISHED, UPSERT_RECORD_SQL
from syncctl.store_records import KEEP, cursor_json
from syncctl.timeutil import format_ts, parse_ts

ADVISORY_LOCK = 0x53594E43  # "SYNC": held while one host migrates the schema
CONNECT_TIMEOUT = 10  # seconds to reach the server, unless the URL says otherwise
IDLE_IN_TRANSACTION = "60s"  # a host stopped inside a transaction releases its row locks
_TIME = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_NUMBERED = re.compile(r"\?(\d+)")


@functools.lru_cache(maxsize=512)
def _placeholders(sql: str, named: bool) -> str:
    """The shared SQL's placeholders (sqlite3's ``?``, ``?N``, ``:name``) as psycopg's
    ``%s`` and ``%(name)s`` (the shared SQL holds none of them, nor ``%``, in literals)."""
    sql = sql.replace("%", "%%")
    if named:
        return _NAMED.sub(r"%(\1)s", sql)
    if _NUMBERED.search(sql):
        return _NUMBERED.sub(r"%(p\1)s", sql)
    return sql.replace("?", "%s")


def _converted(sql: str, params: Iterable[Any] | Mapping[str, Any]) -> tuple[str, Any]:
    """A statement and its parameters in psycopg's style."""
    if isinstance(params, Mapping):
        return _placeholders(sql, True), params
    converted = _placeholders(sql, False)
    values = tuple(params)
    if "%(p" in converted:  # ?1, ?2: numbered, as sqlite3 allows
        return converted, {f"p{i}": v for i, v in enumerate(values, 1)}
    return converted, values


class _Connection:
    """psycopg's connection with the part of sqlite3's interface the verbs use."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> Any:
        return self.raw.execute(*_converted(sql, params))

    def query(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> Iterator[dict[str, Any]]:
        """Rows as dicts: psycopg's dict rows name the columns straight from the result,
        without the ``description`` objects (most of a small query's cost on the client)."""
        return self.raw.cursor(row_factory=dict_row).execute(*_converted(sql, params))

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> Any:
        cursor = self.raw.cursor()
        converted = [_converted(sql, row) for row in rows]
        if converted:
            cursor.executemany(converted[0][0], [params for _, params in converted])
        return cursor


class Target:
    """What a ``postgresql://`` URL names, for messages (never the password), and the
    URL with its ``${VAR}`` references expanded, for libpq alone."""

    def __init__(self, url: str, env: Mapping[str, str]) -> None:
        parts = urlsplit(url)
        self.user = unquote(parts.username or "") or env.get("PGUSER") or _os_user()
        host = parts.hostname or ""
        query = dict(p.partition("=")[::2] for p in parts.query.split("&") if p)
        if not host:
            host = unquote(query.get("host", "")) or env.get("PGHOST") or "localhost"
        self.host = host
        try:
            port = parts.port
        except ValueError:
            port = None
        self.port = str(port or query.get("port") or env.get("PGPORT") or 5432)
        self.dbname = unquote(parts.path.lstrip("/")) or query.get("dbname") or env.get("PGDATABASE") or self.user
        self.label = f"{self.user}@{self.host}:{self.port}/{self.dbname}"
        literal = parts.password is not None and not only_references(parts.password)
        if literal or "password" in query:
            raise UsageError(
                f"the database URL {self.label} holds a password in plain text (refused: it would "
                "sit in crontabs, shell history and ps)",
                "write it as ${VAR} in the URL (postgresql://user:${PGPASS_SYNCCTL}@host/db, with the "
                "variable exported), or use libpq's PGPASSWORD or ~/.pgpass",
            )
        from syncctl.secrets import Secrets

        self.secrets = Secrets(env)
        try:
            self.conninfo = self.secrets.expand_url(url)
        except errors.SyncError as exc:  # an unset or unusable variable
            raise DatabaseError(
                f"cannot connect to PostgreSQL {self.label}: {exc.message}",
                (exc.hint or "").replace("; no request was sent", ""),
            ) from None


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "?"


class PostgresStore(base.Store):
    """One connection to a syncctl database on a PostgreSQL server."""

    dialect = POSTGRES
    INTEGRATIONS = base.integrations_sql(POSTGRES.stale_at_sql)

    def __init__(self, conn: Any, target: Target) -> None:
        super().__init__(_Connection(conn))
        self.target = target
        self.label = target.label
        # Claims this connection made and has not finished: log id -> (the integration
        # row's version as read, the integration, the log), for _finish_unchanged.
        self._claimed: dict[int, tuple[str, Integration, SyncLog]] = {}

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open_url(cls, url: str) -> PostgresStore:
        """Connect, check and migrate; every failure is one line (exit 3, or 2 for a URL
        that holds a literal password)."""
        target = Target(url, os.environ)
        if psycopg is None:
            raise DatabaseError(
                f"cannot use PostgreSQL {target.label}: psycopg is not installed",
                "install the extra: pip install 'syncctl[postgres]'",
            )
        store = cls._connect(target)
        try:
            store._check_and_migrate()
        except psycopg.Error as exc:
            store.close()
            raise store._fault(exc) or DatabaseError(
                f"cannot use PostgreSQL {target.label}: {_first_line(exc, target)}",
                "check the database and this user's privileges on it",
            ) from None
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def _connect(cls, target: Target) -> PostgresStore:
        given = psycopg.conninfo.conninfo_to_dict(target.conninfo)
        options: dict[str, Any] = {"application_name": "syncctl"}
        if "connect_timeout" not in given:
            options["connect_timeout"] = CONNECT_TIMEOUT
        if "keepalives_idle" not in given:  # notice a cut network within about a minute
            options.update(keepalives=1, keepalives_idle=15, keepalives_interval=5, keepalives_count=4)
        try:
            conn = psycopg.connect(target.conninfo, autocommit=True, **options)
            conn.adapters.register_loader("jsonb", TextLoader)  # JSON as text, as SQLite has it
            conn.adapters.register_loader("json", TextLoader)
            conn.execute(
                "SELECT set_config('lock_timeout', %s, false),"
                " set_config('idle_in_transaction_session_timeout', %s, false)",
                (f"{int(base.busy_timeout() * 1000)}ms", IDLE_IN_TRANSACTION),
            )
        except psycopg.Error as exc:
            raise _classify(exc, target) or DatabaseError(
                f"cannot connect to PostgreSQL {target.label}: {_first_line(exc, target)}",
                "check the URL in --db / SYNCCTL_DB",
            ) from None
        return cls(conn, target)

    def reopen(self) -> PostgresStore:
        store = self._connect(self.target)
        store.give_up = self.give_up
        return store

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.raw.close()

    def _applied(self) -> tuple[int, set[int]] | None:
        """(schema version, steps applied), or None for a database syncctl never used.
        Steps are numbered as they are reserved, not as they are released: the set, not
        the version, says which ran."""
        try:
            rows = dict(self.conn.execute("SELECT key, value FROM syncctl_meta").fetchall())
        except pg_errors.UndefinedTable:
            return None
        version = int(rows.get("schema_version", 0))
        steps = {int(n) for n in rows.get("steps", "").split(",") if n}
        return version, steps

    def _check_and_migrate(self) -> None:
        steps = base.schema_steps("postgres")
        known = steps[-1][0]
        found = self._applied()
        if found is not None:
            version, applied = found
            if version > known:
                raise base.newer_schema(f"PostgreSQL {self.label}", version, known)
            if {n for n, _ in steps} <= applied:
                return
        # Two hosts upgrading at once: the second waits here, then finds nothing to do.
        with self.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(?)", (ADVISORY_LOCK,))
            version, applied = self._applied_locked()
            if version > known:
                raise base.newer_schema(f"PostgreSQL {self.label}", version, known)
            for number, sql in steps:
                if number not in applied:
                    for statement in base.split_sql(sql):
                        if statement:
                            self.conn.execute(statement)
                    self._after_step(number)
                    applied.add(number)
            self.conn.execute(
                "INSERT INTO syncctl_meta (key, value) VALUES ('schema_version', ?), ('steps', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(max(version, known)), ",".join(str(n) for n in sorted(applied))),
            )

    def _applied_locked(self) -> tuple[int, set[int]]:
        found = self._applied() if self.conn.execute("SELECT to_regclass('syncctl_meta') IS NOT NULL").fetchone()[0] \
            else None
        if found is not None:
            return found
        ours = [t for t in ("integrations", "sync_logs", "records")
                if self.conn.execute("SELECT to_regclass(?) IS NOT NULL", (t,)).fetchone()[0]]
        if ours:
            raise DatabaseError(
                f"PostgreSQL {self.label} is not a syncctl database (it holds tables {', '.join(ours)} "
                "of another program)",
                "use a database of its own, or a schema: add ?options=-csearch_path%3Dsyncctl to the URL "
                "(after CREATE SCHEMA syncctl)",
            )
        self.conn.execute("CREATE TABLE syncctl_meta (key text PRIMARY KEY, value text NOT NULL)")
        return 0, set()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN`` … ``COMMIT`` (a savepoint when nested). Writers lock the rows they
        read before writing (``dialect.lock_sql``, ``_lock_integration``), not the database."""
        with self.conn.raw.transaction():
            yield

    # -- dialect ---------------------------------------------------------------------------

    def _fault(self, exc: BaseException) -> DatabaseError | None:
        if psycopg is None or not isinstance(exc, psycopg.Error):
            return None
        return _classify(exc, self.target)

    def _table_fault(self, exc: BaseException) -> tuple[bool, str] | None:
        # SQLSTATE classes: 22 data exception, 23 integrity, 42 a column or table missing or
        # of another kind (a view), 54 a limit (a row too big); the rest is not the table's.
        state = getattr(exc, "sqlstate", None) or ""
        if psycopg is None or not isinstance(exc, psycopg.Error) or state[:2] not in ("22", "23", "42", "54"):
            return None
        return state.startswith("54"), _first_line(exc, self.target)

    def _insert_id(self, sql: str, params: tuple[Any, ...]) -> int | None:
        row = self.conn.execute(sql + " RETURNING id", params).fetchone()
        return row[0] if row else None

    def _ids_param(self, ids: list[int]) -> list[int]:
        return ids

    def _query(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> Iterator[dict[str, Any]]:
        return self.conn.query(sql, params)

    def _claim_due(
        self, cutoff: str, passed: list[int], *, now: datetime, pid: int, owner: str
    ) -> tuple[int | None, Integration] | None:
        # One statement, so one transaction without BEGIN and COMMIT: pick (skipping rows
        # another host is claiming this instant), insert the log, read the row back.
        rows = list(self._query(
            "WITH picked AS (SELECT id, consecutive_failures FROM integrations"
            + base._NEXT_DUE.format(not_skipped=self.dialect.not_in_ids_sql, lock=self.dialect.skip_locked_sql) + "),"
            " claimed AS (INSERT INTO sync_logs (integration_id, trigger, status, attempt, started_at, pid,"
            f" owner, lease_until) SELECT id, {base.SCHEDULED_TRIGGER_SQL}, 'RUNNING', consecutive_failures + 1,"
            f" ?::timestamptz, ?, ?, {self.dialect.lease_sql} FROM picked"
            f" ON CONFLICT (integration_id) WHERE {UNFINISHED} DO NOTHING RETURNING id)"
            f" SELECT claimed.id AS log_id, i.*, (SELECT xmin::text FROM integrations x WHERE x.id = picked.id)"
            f" AS row_version FROM picked JOIN ({self.INTEGRATIONS}) i ON i.id = picked.id LEFT JOIN claimed ON true",
            (cutoff, passed, format_ts(now), pid, owner, liveness.lease_seconds()),
        ))
        if not rows:
            return None
        row = rows[0]
        integration = base._row_to_integration(row)
        if row["log_id"] is not None:  # what _finish_unchanged needs: the row's version, and the log
            self._claimed[row["log_id"]] = (row["row_version"], integration, SyncLog(
                id=row["log_id"], integration_id=integration.id, integration=integration.name,
                trigger=base._scheduled_trigger(integration).value, status=base.Status.RUNNING.value,
                attempt=integration.consecutive_failures + 1, started_at=parse_ts(format_ts(now)),
                completed_at=None, duration_ms=None, records_count=None, error_message=None, error_hint=None,
                pid=pid, owner=owner,
            ))  # fmt: skip
        return row["log_id"], integration

    def _finish_unchanged(
        self, log_id: int, integration_id: int, values: dict[str, Any],
        outcome: Callable[[Integration, SyncLog], dict[str, Any]],
    ) -> SyncLog | None:
        # Optimistic: the schedule is decided on the row this connection claimed, and the
        # statement applies only while the row is that version (its xmin; any write since,
        # an admin's or this sync's own cursor, makes a new one) and the log is unfinished.
        # Else nothing changes and finish_sync takes the locked way. One round trip
        # instead of five, for nearly every sync.
        claimed = self._claimed.pop(log_id, None)
        if claimed is None or claimed[1].id != integration_id:
            return None
        version, integration, log = claimed
        finished = base.ended_log(log, values)
        params = {**outcome(integration, finished), "version": version}
        row = self.conn.execute(
            "WITH unchanged AS (SELECT id FROM integrations WHERE id = :iid AND xmin = :version::xid FOR UPDATE),"
            f" ended AS ({base._END_LOG.format(duration=':duration')} FROM unchanged WHERE sync_logs.id = :id"
            f" AND sync_logs.integration_id = unchanged.id AND sync_logs.{UNFINISHED}"
            f" RETURNING sync_logs.id) {base._RECORD_OUTCOME} AND EXISTS (SELECT 1 FROM ended) RETURNING id",
            params,
        ).fetchone()
        return finished if row is not None else None

    def _upsert(self, integration_id: int, records: list[tuple[str, str]], stamp: str, cursor: Any) -> None:
        # One statement, so one transaction without BEGIN and COMMIT: the page as two
        # arrays, and the cursor in the same statement. A key twice in one page: the last
        # wins, as stored row by row (one statement may not update a row twice).
        latest = dict(records)
        self.conn.execute(
            "WITH moved AS (UPDATE integrations SET cursor = ?3 WHERE id = ?1 AND ?4)"
            " INSERT INTO records (integration_id, key, data, synced_at)"
            " SELECT ?1, page.key, page.data::jsonb, ?2::timestamptz FROM unnest(?5::text[], ?6::text[])"
            f" AS page (key, data) {UPSERT_RECORD_SQL}",
            (integration_id, stamp, None if cursor is KEEP else cursor_json(cursor),
             cursor is not KEEP, list(latest), list(latest.values())),
        )

    def _end_log(self, log_id: int, values: dict[str, Any]) -> SyncLog | None:
        # One statement; the duration as ``base.ended_log`` counts it: whole milliseconds,
        # truncated, never negative.
        duration = "greatest(0, floor(extract(epoch FROM (:now::timestamptz - started_at)) * 1000))::bigint"
        rows = list(self._query(
            base._END_LOG.format(duration=duration) + " FROM integrations i WHERE sync_logs.id = :id"
            f" AND i.id = sync_logs.integration_id AND sync_logs.{UNFINISHED}"
            " RETURNING sync_logs.*, i.name",
            values,
        ))
        return base._row_to_log(rows[0]) if rows else None

    def _summaries_sql(self, where: str) -> str:
        pairs = []
        for key, expression, kind in base.SUMMARY_FIELDS:
            if kind == "time":
                expression = _TIME.format(expression)
            elif kind == "bool":  # NULL is false, as SQLite's CASE makes it
                expression = f"coalesce({expression}, false)"
            pairs.append(f"'{key}', {expression}")
        return (
            f"SELECT coalesce(json_agg(json_build_object({', '.join(pairs)}) ORDER BY name), '[]')"
            f" FROM ({base.summary_rows_sql(POSTGRES.stale_sql, where)}) i"
        )

    def _json_field_values(self, integration_id: int, field: str) -> Iterator[Any]:
        rows = self.conn.execute(
            "SELECT data #> ? FROM records WHERE integration_id = ? AND deleted_at IS NULL",
            (field.split("."), integration_id),
        )
        for (text,) in rows:  # as SQLite's json_extract: scalars as values, the rest as JSON text
            value = None if text is None else json.loads(text)
            yield text if isinstance(value, (dict, list)) else value

    def summaries_json(self, name: str | None = None, *, now: datetime) -> str:
        # json_build_object writes '{"a" : 1}': the same text as SQLite's, compact.
        return dumps(json.loads(super().summaries_json(name, now=now)))


def _first_line(exc: BaseException, target: Target) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^connection failed: ", "", text)
    return target.secrets.redact(text)


_LOST = ("server closed the connection", "terminating connection", "consuming input failed",
         "connection is closed", "connection is lost", "ssl syscall", "could not receive data",
         "could not send data", "connection reset", "broken pipe", "the database system is")


def _classify(exc: BaseException, target: Target) -> DatabaseError | None:
    """The one place a psycopg error becomes what the operator must know, in one line
    naming the server (``user@host:port/db``) and the fix; None for a bug (a constraint, a
    bad statement)."""
    state = getattr(exc, "sqlstate", None) or ""
    text = _first_line(exc, target)
    low = str(exc).lower()
    where = target.label
    if state == "28P01" or "password authentication failed" in low:
        return DatabaseError(
            f"PostgreSQL {where} refused the password of user {target.user}",
            "check the password: the ${VAR} in the URL, PGPASSWORD or ~/.pgpass",
        )
    if "no password supplied" in low or "password is required" in low:
        return DatabaseError(
            f"PostgreSQL {where} asks for a password and none was given",
            "write it as ${VAR} in the URL (postgresql://user:${VAR}@host/db), or use PGPASSWORD or ~/.pgpass",
        )
    if state == "3D000" or (f'database "{target.dbname}" does not exist' in low):
        return DatabaseError(
            f"no database {target.dbname} on PostgreSQL {target.user}@{target.host}:{target.port}",
            f"create it (createdb -h {target.host} -p {target.port} -O {target.user} {target.dbname}), "
            "or check the URL in --db / SYNCCTL_DB",
        )
    if state in ("28000", "42501") or "no pg_hba.conf entry" in low or (
        "role" in low and "does not exist" in low
    ):
        return DatabaseError(
            f"PostgreSQL {where} refused user {target.user}: {text}",
            "check the user in the URL, its privileges, and the server's pg_hba.conf",
        )
    if state == "53100":
        return errors.EnvironmentFault(
            f"PostgreSQL {where} is out of disk space: {text}",
            "free space on the database server; syncctl tries again at the next run",
            kind="disk full",
        )
    if state == "25006":
        return errors.EnvironmentFault(
            f"PostgreSQL {where} is read-only (a standby?)",
            "point --db / SYNCCTL_DB at the primary server",
            kind="read-only",
        )
    if state in ("55P03", "57014", "40P01"):
        return errors.EnvironmentFault(
            f"PostgreSQL {where}: {text}",
            "another program holds rows syncctl needs; syncctl tries again at the next run",
            kind="locked",
        )
    unreachable = isinstance(exc, psycopg.OperationalError) or state.startswith(("08", "57P")) or (
        isinstance(exc, psycopg.InterfaceError) and "closed" in low
    ) or state == "53300"
    if unreachable:
        if "refused" in low:
            cause = "connection refused"
        elif "timeout" in low or "timed out" in low:
            cause = "timed out"
        elif "could not translate host name" in low or "name or service not known" in low:
            cause = f"unknown host {target.host}"
        elif any(marker in low for marker in _LOST):
            cause = f"lost the connection ({text})"
        else:
            cause = text
        return errors.EnvironmentFault(
            f"cannot reach PostgreSQL {where}: {cause}",
            f"check that the server runs and this host reaches it (pg_isready -h {target.host} "
            f"-p {target.port}); syncctl tries again at the next run",
            kind="unreachable",
        )
    return None
