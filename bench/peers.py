"""Spec §14's and §18's records rows: ``syncctl sync`` side by side with its peers on the
same 20 × 10,000-record paginated source, dashboard queries on the data table, and a
conditional (304) sync beside the idle tick.

- the floor: ``bench/floor.py`` (http.client + json + sqlite3 upsert, ~20 lines);
- the floor with the data table (§18): ``bench/floor_tables.py``, the same plus an upsert
  into a typed table whose columns it knows in advance, in the same transaction;
- ``curl | sqlite-utils insert DB records - --pk id --alter``: one bash command that
  fetches each page with curl and pipes it into one sqlite-utils process per page,
  following the ``Link`` header (§18);
- dlt: ``bench/dlt_load.py`` (``rest_api`` source → ``sqlalchemy`` destination on a
  ``sqlite:///`` URL, merge on ``id``). dlt is a bench-only dependency
  (``pip install -r bench/requirements.txt``); the row is skipped, with the reason
  printed, when the interpreter cannot import it. ``BENCH_DLT_PYTHON`` may name another
  interpreter that has it (e.g. a separate virtualenv, to keep dlt's dependencies out of
  the one syncctl runs in);
- a second, identical ``sync`` of an integration with ``--deletes mark`` (its first sync
  done beforehand; the sweep finds nothing to mark, but it must look);
- a ``sync`` answered ``304 Not Modified`` (source ``/etag``), interleaved with idle
  ``run-due`` ticks on the same 10,000-integration database;
- dashboard queries (§18, ``bench/dashboard.py``): a GROUP BY and an ORDER BY … LIMIT 50
  over the 200,000 records, on syncctl's data table and on the table the last
  ``curl | sqlite-utils`` run built, timed in this process.

The data-table rows say "skipped: no data table" when a sync leaves no table named
after the integration (a syncctl without spec §15).

Whole processes, interleaved (the order rotates each repetition), a warm-up first,
medians, ratios (dlt and curl | sqlite-utils, several times slower than syncctl, only in
the first ``SLOW_REPS``); every output is checked (all records stored, in both tables where
there are two; nothing marked; a 304; both tables answer the dashboard queries alike).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dashboard
import dataset

from syncctl.config import Deletes, IntegrationConfig
from syncctl.pagination import Pagination
from syncctl.store import Store

BENCH = Path(__file__).resolve().parent
PAGES = 20
PAGE_RECORDS = 10_000
SYNC, FLOOR, MARK, DLT = "sync (peers)", "floor", "sync --deletes mark (2nd)", "dlt rest_api → SQLite"
FLOOR_TABLES, CURL = "floor + data table", "curl | sqlite-utils insert"
SYNC_OFF = "sync --table off (records only)"  # §14's like for like with the one-table floor
TICK, NOT_MODIFIED = "run-due (beside 304)", "sync 304"
SLOW_REPS = 3  # dlt and curl | sqlite-utils: far from their targets, and slow
NAME = "feed"  # the integration


TABLE = dataset.data_table_name(NAME)
NO_TABLE = "no data table"


@dataclass
class Peers:
    samples: Any  # run.Samples
    dlt_skipped: str | None  # why the dlt row was not measured
    dlt_version: str | None
    table_skipped: str | None = None  # why the data-table rows were not measured
    queries: dict[str, list[tuple[float, float]]] | None = None  # dashboard queries: (wall, CPU) s


def dlt_python(env: dict[str, str]) -> tuple[str | None, str]:
    """(the interpreter that runs dlt, its version), or (None, why not)."""
    python = os.environ.get("BENCH_DLT_PYTHON") or sys.executable
    probe = subprocess.run(
        [python, "-c", "import dlt, sqlalchemy; print(dlt.__version__)"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        return None, (
            f"dlt is not importable by {python} (pip install -r bench/requirements.txt, "
            "or set BENCH_DLT_PYTHON to a Python that has it)"
        )
    return python, probe.stdout.strip()


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal", ".lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _checkpoint(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def add_integration(path: Path, name: str, url: str, config: IntegrationConfig, *, table: bool = True) -> None:
    """A manual integration, through the real schema and store, with the data table
    ``syncctl add`` would give it (when this syncctl keeps them)."""
    store = Store.open(path)
    now = datetime.now(timezone.utc)
    store.add_integration(name=name, url=url, config=config, interval=None, now=now, table=dataset.data_table_name(name) if table else None)
    store.close()
    _checkpoint(path)


def _one(path: Path, sql: str, args: tuple = ()) -> tuple:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchone()
    finally:
        conn.close()


def data_table(path: Path, integration: str = NAME) -> str | None:
    """The integration's data table in ``path``, or None when there is none: the name
    syncctl recorded for it (``integrations.data_table``, when that column exists), else
    the default name."""
    try:
        row = _one(path, "SELECT data_table FROM integrations WHERE name = ?", (integration,))
    except sqlite3.OperationalError:  # no such column: a syncctl without spec §15
        row = None
    name = row[0] if row and row[0] else dataset.data_table_name(integration)
    found = _one(path, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))[0]
    return name if found else None


def curl_sqlite_utils(base_url: str, url: str, db: Path, headers: Path) -> list[str]:
    """One bash command: curl each page (following its ``Link``) into one ``sqlite-utils
    insert --pk id --alter`` process per page; a failure of either fails the command."""
    sqlite_utils = Path(sys.executable).parent / "sqlite-utils"
    tool = str(sqlite_utils) if sqlite_utils.exists() else (shutil.which("sqlite-utils") or "sqlite-utils")
    q = shlex.quote
    script = (
        "set -o pipefail\n"
        f"url={q(url)}\n"
        'while [ -n "$url" ]; do\n'
        f'  curl -sSf -D {q(str(headers))} "$url" | {q(tool)} insert {q(str(db))} records - --pk id --alter || exit 1\n'
        f"  next=$(sed -n 's/^[Ll]ink: *<\\([^>]*\\)>; *rel=\"next\".*/\\1/p' {q(str(headers))})\n"
        f"  url=${{next:+{base_url}$next}}\n"
        "done\n"
    )
    return ["bash", "-c", script]


def bench_records_peers(
    run: Callable[..., Any],
    check: Callable[..., Any],
    samples: Any,
    syncctl: list[str],
    env: dict[str, str],
    base_url: str,
    work: Path,
    big_db: Path,
    reps: int,
    tick_reps: int,
    scratch: Path,
    log: Callable[[str], None],
) -> Peers:
    """``run``/``check``/``samples``: bench/run.py's process runner, its output check and
    an empty Samples. ``big_db``: the 10,000-integration database (an ``etag``
    integration is added to it)."""
    url = f"{base_url}/records?pages={PAGES}"
    expected = PAGES * PAGE_RECORDS
    link = Pagination.parse("link")
    python, dlt_version = dlt_python(env)
    skipped = None if python else dlt_version
    if skipped:
        log(f"skipping the dlt row: {skipped}")

    sync_template, mark_template = work / "peers-sync.template.db", work / "peers-mark.template.db"
    off_template = work / "peers-off.template.db"
    for path, config in ((sync_template, IntegrationConfig(pagination=link)),
                         (mark_template, IntegrationConfig(pagination=link, deletes=Deletes.MARK))):  # fmt: skip
        _remove(path)
        add_integration(path, NAME, url, config)
    _remove(off_template)
    add_integration(off_template, NAME, url, IntegrationConfig(pagination=link), table=False)
    # The --deletes mark row times the second of two identical syncs: the first is done here.
    check("first sync (--deletes mark)", run([*syncctl, "--db", str(mark_template), "sync", NAME], env, scratch))
    _checkpoint(mark_template)

    db, floor_db, dlt_db = work / "peers.db", work / "floor.db", work / "dlt.db"
    floor_tables_db, curl_db = work / "floor-tables.db", work / "curl.db"
    curl = curl_sqlite_utils(base_url, url, curl_db, work / "curl-headers")
    pipelines = work / "dlt-pipelines"
    dlt_env = {**env, "RUNTIME__DLTHUB_TELEMETRY": "false", "DLT_DATA_DIR": str(work / "dlt-data")}

    def stored(path: Path, table: str = "records", where: str = "") -> int:
        return _one(path, f"SELECT count(*) FROM {table} {where}")[0]

    def measure(name: str) -> Any:
        if name == SYNC:
            _remove(db)
            shutil.copyfile(sync_template, db)
            result = check(name, run([*syncctl, "--db", str(db), "sync", NAME], env, scratch))
            count = stored(db)
            table = data_table(db)
            if table and stored(db, table) != count:
                sys.exit(f"bench: {name} left {stored(db, table)} rows in its data table, {count} records")
        elif name == SYNC_OFF:
            _remove(db)
            shutil.copyfile(off_template, db)
            result = check(name, run([*syncctl, "--db", str(db), "sync", NAME], env, scratch))
            count = stored(db)
        elif name == MARK:
            _remove(db)
            shutil.copyfile(mark_template, db)
            result = check(name, run([*syncctl, "--db", str(db), "sync", NAME], env, scratch))
            count = stored(db, "live_records")
            table = data_table(db)
            if table and stored(db, table) != count:
                sys.exit(f"bench: {name} left {stored(db, table)} rows in its data table, {count} live")
            status, deleted = _one(db, "SELECT status, records_deleted FROM sync_logs ORDER BY id DESC LIMIT 1")
            if status != "SUCCESS" or deleted != 0:
                sys.exit(f"bench: the second --deletes mark sync: {status}, {deleted} deleted")
        elif name == FLOOR:
            _remove(floor_db)
            result = check(name, run([sys.executable, str(BENCH / "floor.py"), url, str(floor_db)], env, scratch))
            count = stored(floor_db)
        elif name == FLOOR_TABLES:
            _remove(floor_tables_db)
            argv = [sys.executable, str(BENCH / "floor_tables.py"), url, str(floor_tables_db), TABLE]
            result = check(name, run(argv, env, scratch))
            count = min(stored(floor_tables_db), stored(floor_tables_db, TABLE))
        elif name == CURL:
            _remove(curl_db)
            result = check(name, run(curl, env, scratch))
            count = stored(curl_db)
        else:  # dlt
            for leftover in [*work.glob("dlt.db*"), *work.glob("dlt__*")]:  # and its staging database
                leftover.unlink()
            shutil.rmtree(pipelines, ignore_errors=True)
            argv = [python, str(BENCH / "dlt_load.py"), url, str(dlt_db), str(pipelines)]
            result = check(name, run(argv, dlt_env, scratch))
            count = stored(dlt_db)
        if count != expected:
            sys.exit(f"bench: {name} stored {count} records, expected {expected}")
        return result

    names = [SYNC, SYNC_OFF, FLOOR, FLOOR_TABLES, MARK, CURL] + ([DLT] if python else [])
    for name in names:  # warm-up
        measure(name)
    table_skipped = None if data_table(db) else NO_TABLE
    if table_skipped:
        log(f"skipping the data-table rows: a sync left no table {TABLE!r} (spec §15 not in this syncctl)")
    for rep in range(reps):
        for i in range(len(names)):
            name = names[(i + rep) % len(names)]
            if name not in (DLT, CURL) or rep < SLOW_REPS:  # several times slower, far from their targets
                samples.add(name, measure(name))

    # Dashboard queries: syncctl's data table (a fresh sync, untimed) against the table the
    # last curl | sqlite-utils run built from the same 200,000 records.
    dash_db = work / "dashboard.db"
    _remove(dash_db)
    shutil.copyfile(sync_template, dash_db)
    check("sync (dashboard)", run([*syncctl, "--db", str(dash_db), "sync", NAME], env, scratch))
    _checkpoint(dash_db)
    queries, table = None, data_table(dash_db)
    if table:
        log(f"dashboard queries over {expected:,} records: {3 * tick_reps} interleaved repetitions")
        queries = dashboard.measure(dash_db, table, curl_db, "records", 3 * tick_reps)
    elif not table_skipped:
        sys.exit("bench: the sync for the dashboard queries left no data table")

    # A 304 beside the idle tick, on the same 10,000-integration database.
    add_integration(big_db, "etag", f"{base_url}/etag", IntegrationConfig())
    sync_etag = [*syncctl, "--db", str(big_db), "sync", "etag"]
    tick = [*syncctl, "--db", str(big_db), "run-due"]
    check("first sync (etag)", run(sync_etag, env, scratch))

    def not_modified() -> Any:
        result = check(NOT_MODIFIED, run(sync_etag, env, scratch))
        (flag,) = _one(big_db, "SELECT not_modified FROM sync_logs ORDER BY id DESC LIMIT 1")
        if flag != 1:
            sys.exit(f"bench: the conditional sync was not a 304\n{result.stderr[:2000]}")
        return result

    def idle() -> Any:
        return check(TICK, run(tick, env, scratch), stdout_empty=True)

    for _ in range(2):  # warm-up
        not_modified(), idle()
    for rep in range(tick_reps):
        pair = [(NOT_MODIFIED, not_modified), (TICK, idle)]
        for name, once in pair if rep % 2 else pair[::-1]:
            samples.add(name, once())
    return Peers(samples, skipped, None if skipped else dlt_version, table_skipped, queries)


def rows(peers: Peers, row: Callable[..., Any]) -> list[Any]:
    """The table rows (``row``: bench/run.py's Row)."""
    s = peers.samples
    # Ratios of commands run in every round are taken pair by pair (``Samples.paired``).
    sync = s.median(SYNC)
    tables_floor, curl = s.median(FLOOR_TABLES), s.median(CURL)
    cpu = {name: statistics.median(r.cpu for r in s.runs[name]) for name in (SYNC, SYNC_OFF, FLOOR, FLOOR_TABLES, MARK)}
    table_figure = (
        f"records with the data table: `sync` {PAGES} pages × 10,000 / floor writing both tables"
        " (`bench/floor_tables.py`)"
    )
    if peers.table_skipped:
        with_table = row(table_figure, f"skipped: {peers.table_skipped} (the floor: {tables_floor:.2f} s)", "≤ 1.25×", None)
    else:
        ratio, text = s.paired(SYNC, FLOOR_TABLES)
        with_table = row(table_figure, f"{text}; by CPU {cpu[SYNC] / cpu[FLOOR_TABLES]:.2f}×", "≤ 1.25×", ratio <= 1.25)
    out = [
        row(
            f"records: `sync --table off` {PAGES} pages × 10,000 / minimal Python floor (`bench/floor.py`;"
            " both write `records` only)",
            s.paired(SYNC_OFF, FLOOR)[1],
            "≤ 1.15×",
            s.paired(SYNC_OFF, FLOOR)[0] <= 1.15,
        ),
        row(
            "records: the same by CPU time of each process (steadier on a shared machine)",
            f"{cpu[SYNC_OFF] / cpu[FLOOR]:.2f}× ({cpu[SYNC_OFF]:.2f} s / {cpu[FLOOR]:.2f} s); with the data table "
            f"{cpu[SYNC] / cpu[FLOOR_TABLES]:.2f}× its floor; `--deletes mark` 2nd sync {cpu[MARK] / cpu[FLOOR_TABLES]:.2f}×",
            "—",
            None,
        ),
        with_table,
    ]
    figure = "records: dlt `rest_api` → SQLite (`sqlalchemy`, merge on `id`) / `sync`"
    if peers.dlt_skipped:
        out.append(row(figure, f"skipped: {peers.dlt_skipped}", "≥ 3×", None))
    else:
        dlt = s.median(DLT)
        out.append(row(f"{figure}, dlt {peers.dlt_version}", f"{dlt / sync:.1f}× ({dlt:.2f} s)", "≥ 3×", dlt >= 3 * sync))
    out.append(row(
        "records: `sync` / `curl \\| sqlite-utils insert --pk id --alter`, one of each per page, following `Link`",
        f"{sync / curl:.2f}× ({sync:.2f} s / {curl:.2f} s)",
        "< 1.00×",
        sync < curl,
    ))  # fmt: skip
    out += [
        row(
            "records: second identical `sync` with `--deletes mark` (both tables) / the floor writing both tables",
            s.paired(MARK, FLOOR_TABLES)[1],
            "≤ 1.25×",
            s.paired(MARK, FLOOR_TABLES)[0] <= 1.25,
        ),
        row(
            "304 sync (`If-None-Match` answered `304`) / idle tick, same database",
            s.paired(NOT_MODIFIED, TICK)[1],
            "≤ 1.20×",
            s.paired(NOT_MODIFIED, TICK)[0] <= 1.2,
        ),
    ]
    q = {name: statistics.median(r[0] for r in runs) for name, runs in (peers.queries or {}).items()}
    qcpu = {name: statistics.median(r[1] for r in runs) for name, runs in (peers.queries or {}).items()}
    for query, text in (("GROUP BY", "GROUP BY status: count, avg(score)"),
                        ("ORDER BY … LIMIT 50", "ORDER BY score DESC LIMIT 50")):  # fmt: skip
        figure = f"dashboard, {PAGES * PAGE_RECORDS:,} records, `{text}`: data table / `sqlite-utils insert --pk id` table"
        if peers.queries is None:
            out.append(row(figure, f"skipped: {peers.table_skipped}", "≤ 1.25×", None))
            continue
        ours, theirs = q[f"{query}: data table"], q[f"{query}: sqlite-utils"]
        by_cpu = qcpu[f"{query}: data table"] / qcpu[f"{query}: sqlite-utils"]
        out.append(row(
            figure,
            f"{ours / theirs:.2f}× ({ours * 1000:.1f} ms / {theirs * 1000:.1f} ms; by CPU {by_cpu:.2f}×)",
            "≤ 1.25×",
            ours <= 1.25 * theirs,
        ))  # fmt: skip
    if peers.queries is not None:
        json_q, theirs = q["GROUP BY: json_extract on records"], q["GROUP BY: sqlite-utils"]
        out.append(row(
            "dashboard: the same GROUP BY through `json_extract` on `records` / `sqlite-utils` table (for scale)",
            f"{json_q / theirs:.1f}× ({json_q * 1000:.0f} ms)",
            "—",
            None,
        ))  # fmt: skip
    return out


def detail(peers: Peers) -> list[str]:
    """Markdown lines for the dashboard queries' medians (in-process, not processes)."""
    lines = []
    for name, runs in (peers.queries or {}).items():
        walls = sorted(r[0] * 1000 for r in runs)
        cpu = statistics.median(r[1] for r in runs) * 1000
        lines.append(
            f"- dashboard `{name}` (in-process): median {statistics.median(walls):.1f} ms,"
            f" range {walls[0]:.1f}–{walls[-1]:.1f} ms (n={len(walls)}), CPU {cpu:.1f} ms"
        )
    return lines
