"""The SQLite dialect of the store: opening the file, pragmas, WAL, migrations from
``schema.sql``, ``BEGIN IMMEDIATE`` with a busy wait a signal can cut, and naming SQLite's
errors. The domain verbs are the base class's (``syncctl.store.Store``)."""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncctl import errors, liveness
from syncctl import store as base
from syncctl.dialect import SQLITE
from syncctl.errors import DatabaseError

if TYPE_CHECKING:
    import sqlite_utils

# SQLite's own busy wait runs in C, where no Python signal handler can run: wait in short
# slices instead, so that SIGTERM / Ctrl-C (and a run's stop flag) are seen between them.
_BUSY_SLICE_MS = 200
class SqliteStore(base.Store):
    """One connection to a SQLite database file. Not shared between threads: ``reopen``."""

    dialect = SQLITE
    INTEGRATIONS = base.integrations_sql(SQLITE.stale_at_sql)

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self.path = path
        self.label = str(path)

    @functools.cached_property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils' view of the connection, made on first use: importing sqlite_utils
        (it pulls in numpy when that is installed) costs more than a whole idle cron tick."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn, execute_plugins=False)

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open_path(cls, path: Path, *, create: bool = True) -> SqliteStore:
        """Open and migrate the database; with ``create``, make it first (with its folder,
        mode 0600) if it does not exist.

        Anything that is not a syncctl database we can use raises DatabaseError (exit 3)
        before a single byte of the file is changed.
        """
        path = Path(path).expanduser()
        hint = "pass another file with --db PATH or SYNCCTL_DB"
        if path.is_dir():
            raise DatabaseError(f"database path {path} is a directory", hint)
        created = False
        if not path.exists():
            if not create:
                raise DatabaseError(
                    f"no database at {path}",
                    "check --db / SYNCCTL_DB, or create it with syncctl add",
                )
            created = _create_private_file(path)
        else:
            fault = errors.unwritable(path)
            if fault is None and not os.access(path, os.R_OK):
                fault = errors.not_writable(path)
            if fault is not None:
                raise fault
        try:
            store = cls._connect(path)
            try:
                store._check_and_migrate()
            except sqlite3.Error as exc:
                fault = store._fault(exc)
                if not isinstance(fault, errors.EnvironmentFault):
                    raise DatabaseError(f"cannot use database {path}: {exc}", hint) from None
                raise fault from None
            except BaseException:
                store.close()
                raise
        except BaseException:
            if created:  # leave no empty file behind for the next command to mistake
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        return store

    @classmethod
    def _connect(cls, path: Path) -> SqliteStore:
        try:
            conn = sqlite3.connect(
                str(path),
                timeout=_BUSY_SLICE_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_SLICE_MS}")
        except sqlite3.Error as exc:
            fault = _classify(exc, path)
            raise fault or DatabaseError(
                f"cannot open database {path}: {exc}", "check the path and its permissions"
            ) from None
        return cls(path, conn)

    def reopen(self) -> SqliteStore:
        """Another connection to the same, already checked, database (one per thread)."""
        store = self._connect(self.path)
        store.give_up = self.give_up
        store._configure()
        return store

    def _configure(self) -> None:
        self.conn.execute("PRAGMA foreign_keys = ON")
        # WAL: readers never block the writer. NORMAL: no fsync per commit; a power cut
        # can lose the last commits but never corrupts the database.
        self.conn.execute("PRAGMA synchronous = NORMAL")

    def _fault(self, exc: BaseException) -> DatabaseError | None:
        if not isinstance(exc, sqlite3.Error):
            return None
        return _classify(exc, self.path, self._waited)

    def _table_fault(self, exc: BaseException) -> tuple[bool, str] | None:
        if not isinstance(exc, (sqlite3.OperationalError, sqlite3.IntegrityError)) or _classify(exc, self.path):
            return None  # not SQL the table refused, or the environment's fault
        text = str(exc)
        return "too many columns" in text or "too big" in text, text

    _waited = 0.0  # how long the last write waited for the lock (for the "locked" message)

    def _wait_for_lock(self, statement: str) -> None:
        """Run ``statement`` (one that takes the write lock), waiting for another writer in
        short slices up to the busy timeout, unless ``give_up`` says stop."""
        started = time.monotonic()
        deadline = started + base.busy_timeout()
        while True:
            try:
                self.conn.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or self.give_up() or time.monotonic() >= deadline:
                    self._waited = time.monotonic() - started
                    raise

    def _check_and_migrate(self) -> None:
        path = self.path
        app_id = self.conn.execute("PRAGMA application_id").fetchone()[0]
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        steps = base.schema_steps()
        known = steps[-1][0]
        if app_id != base.APPLICATION_ID:
            tables = [
                r[0]
                for r in self.conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
                )
            ]
            if tables or version:
                shown = ", ".join(tables[:5]) + (", …" if len(tables) > 5 else "")
                raise DatabaseError(
                    f"{path} is not a syncctl database (it holds tables: {shown or 'none'})",
                    "pass a syncctl database, or a new file name, with --db PATH or SYNCCTL_DB",
                )
        elif version > known:
            raise base.newer_schema(str(path), version, known)
        if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._wait_for_lock("PRAGMA journal_mode = WAL")
        self._configure()
        numbers = [number for number, _ in steps]
        applied = self._applied_steps(version, numbers)
        for number, sql in steps:
            if number not in applied:
                self._apply_step(number, sql, numbers)

    def _applied_steps(self, version: int, numbers: list[int]) -> set[int]:
        """The schema steps this database has. Steps are numbered as they are reserved,
        not as they are released, so a database may have step 5 without step 4: from the
        first step applied by this code on, the ``schema_steps`` table lists them; before
        it, every step up to ``user_version`` was applied."""
        listed = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_steps'"
        ).fetchone()
        if listed is None:
            return {n for n in numbers if n <= version}
        return {row[0] for row in self.conn.execute("SELECT step FROM schema_steps")}

    def _apply_step(self, number: int, sql: str, numbers: list[int]) -> None:
        # executescript would commit on its own; run the statements inside our transaction.
        statements = [s for s in base.split_sql(sql) if s]
        with self.transaction():
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            applied = self._applied_steps(version, numbers)
            if number in applied:
                return  # another process migrated it while we waited for the lock
            for statement in statements:
                self.conn.execute(statement)
            self._after_step(number)
            self.conn.execute("CREATE TABLE IF NOT EXISTS schema_steps (step INTEGER PRIMARY KEY)")
            self.conn.executemany(
                "INSERT OR IGNORE INTO schema_steps (step) VALUES (?)", [(n,) for n in sorted(applied | {number})]
            )
            self.conn.execute(f"PRAGMA application_id = {base.APPLICATION_ID}")
            self.conn.execute(f"PRAGMA user_version = {max(version, number)}")

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``: take the write lock up front (waiting for it
        under the busy timeout) so a read-then-write never fails half way."""
        if self.conn.in_transaction:  # nested: a savepoint (no sqlite_utils import for it)
            self.conn.execute("SAVEPOINT syncctl_nested")
            try:
                yield
            except BaseException:
                # SQLite may have ended the whole transaction already (disk full): then
                # there is no savepoint left, and the error that did it is what matters.
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK TO syncctl_nested")
                    self.conn.execute("RELEASE syncctl_nested")
                raise
            self.conn.execute("RELEASE syncctl_nested")
            return
        try:
            self._wait_for_lock("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._fault(exc) or exc from None
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:  # a failed COMMIT (disk full) may have ended it already
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error) and (fault := self._fault(exc)) is not None:
                raise fault from None
            raise

    # -- dialect ---------------------------------------------------------------------------

    def _insert_id(self, sql: str, params: tuple[Any, ...]) -> int | None:
        cursor = self.conn.execute(sql, params)
        return cursor.lastrowid if cursor.rowcount > 0 else None

    def _ids_param(self, ids: list[int]) -> str:
        return "[" + ",".join(str(int(i)) for i in ids) + "]"

    def _summaries_sql(self, where: str) -> str:
        # SQLite builds the JSON: timestamps are stored in the output format already, and
        # 10,000 integrations take ~30 ms instead of ~300 in Python.
        pairs = []
        for key, expression, kind in base.SUMMARY_FIELDS:
            if kind == "bool":
                expression = f"CASE WHEN {expression} THEN json('true') ELSE json('false') END"
            pairs.append(f"'{key}', {expression}")
        return (
            f"SELECT json_group_array(json_object({', '.join(pairs)}))"
            f" FROM ({base.summary_rows_sql(SQLITE.stale_sql, where)} ORDER BY name)"
        )

    @contextlib.contextmanager
    def _durably(self) -> Iterator[None]:
        # synchronous=NORMAL (every other commit) may lose the last commits on a power cut.
        self.conn.execute("PRAGMA synchronous = FULL")
        try:
            yield
        finally:
            self.conn.execute("PRAGMA synchronous = NORMAL")

    def _retype(self, table: str, columns: list[Any]) -> None:
        # SQLite cannot change a column's type: sqlite-utils' transform rebuilds the table
        # (new table, copy, drop, rename) inside our transaction (its atomic() nests as a
        # savepoint). The values are written again from the records afterwards.
        self.db[table].transform(types={c.name: self.dialect.type_name(c.type) for c in columns})

    def _json_field_values(self, integration_id: int, field: str) -> Iterator[Any]:
        path = "$" + "".join(f'."{part}"' for part in field.split("."))
        rows = self.conn.execute(
            "SELECT json_extract(data, ?) FROM records WHERE integration_id = ? AND deleted_at IS NULL",
            (path, integration_id),
        )
        return (row[0] for row in rows)


def _create_private_file(path: Path) -> bool:
    """Create the database file (and its folder) readable by its owner only; False when
    another process created it first."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    except OSError as exc:
        raise errors.from_os_error(exc, path) from None
    return True


def _is_busy(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorname", "") or "").startswith("SQLITE_BUSY")


def _classify(exc: sqlite3.Error, path: Path, waited: float = 0.0) -> DatabaseError | None:
    """The one place a SQLite error becomes what the operator must know: an environment
    fault with its fix, a damaged file, or None for a bug (a constraint, a bad statement)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_FULL"):
        return errors.disk_full(path)
    if name.startswith("SQLITE_BUSY"):
        holder = liveness.write_lock_holder(path)
        return errors.locked(path, round(waited, 1), *(holder or (None, None)))
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_IOERR")):
        # Which file? The database, its -wal and -shm, or the folder they are created in.
        for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            fault = errors.unwritable(candidate)
            if fault is not None:
                return fault
        if name.startswith("SQLITE_IOERR") and errors.nearly_full(path):
            return errors.disk_full(path)  # e.g. ENOSPC growing -shm: "disk I/O error"
        return DatabaseError(
            f"cannot use database {path}: {exc}",
            "check the disk and the kernel log (dmesg), then the file: "
            f"sqlite3 {path} 'PRAGMA integrity_check'",
        )
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return DatabaseError(
            f"cannot use database {path}: {exc}",
            f"restore it from a backup, or check it with: sqlite3 {path} 'PRAGMA integrity_check'",
        )
    return None
