"""Spec §14's records rows: ``syncctl sync`` side by side with its peers on the same 20 ×
10,000-record paginated source, and a conditional (304) sync beside the idle tick.

- the floor: ``bench/floor.py`` (http.client + json + sqlite3 upsert, ~20 lines);
- dlt: ``bench/dlt_load.py`` (``rest_api`` source → ``sqlalchemy`` destination on a
  ``sqlite:///`` URL, merge on ``id``). dlt is a bench-only dependency
  (``pip install -r bench/requirements.txt``); the row is skipped, with the reason
  printed, when the interpreter cannot import it. ``BENCH_DLT_PYTHON`` may name another
  interpreter that has it (e.g. a separate virtualenv, to keep dlt's dependencies out of
  the one syncctl runs in);
- a second, identical ``sync`` of an integration with ``--deletes mark`` (its first sync
  done beforehand; the sweep finds nothing to mark, but it must look);
- a ``sync`` answered ``304 Not Modified`` (source ``/etag``), interleaved with idle
  ``run-due`` ticks on the same 10,000-integration database.

Whole processes, interleaved (the order rotates each repetition), a warm-up first,
medians, ratios (dlt, ~8x slower than syncctl, only in the first ``DLT_REPS``); every output is checked (all records stored, nothing marked, a 304).
"""

from __future__ import annotations

import os
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

from syncctl.config import Deletes, IntegrationConfig, Pagination
from syncctl.store import Store

BENCH = Path(__file__).resolve().parent
PAGES = 20
PAGE_RECORDS = 10_000
SYNC, FLOOR, MARK, DLT = "sync (peers)", "floor", "sync --deletes mark (2nd)", "dlt rest_api → SQLite"
TICK, NOT_MODIFIED = "run-due (beside 304)", "sync 304"
DLT_REPS = 3


@dataclass
class Peers:
    samples: Any  # run.Samples
    dlt_skipped: str | None  # why the dlt row was not measured
    dlt_version: str | None


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


def add_integration(path: Path, name: str, url: str, config: IntegrationConfig) -> None:
    """A manual integration, through the real schema and store."""
    store = Store.open(path)
    store.add_integration(name=name, url=url, config=config, interval=None, now=datetime.now(timezone.utc))
    store.close()
    _checkpoint(path)


def _one(path: Path, sql: str, args: tuple = ()) -> tuple:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchone()
    finally:
        conn.close()


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
    for path, config in ((sync_template, IntegrationConfig(pagination=link)),
                         (mark_template, IntegrationConfig(pagination=link, deletes=Deletes.MARK))):  # fmt: skip
        _remove(path)
        add_integration(path, "feed", url, config)
    # The --deletes mark row times the second of two identical syncs: the first is done here.
    check("first sync (--deletes mark)", run([*syncctl, "--db", str(mark_template), "sync", "feed"], env, scratch))
    _checkpoint(mark_template)

    db, floor_db, dlt_db = work / "peers.db", work / "floor.db", work / "dlt.db"
    pipelines = work / "dlt-pipelines"
    dlt_env = {**env, "RUNTIME__DLTHUB_TELEMETRY": "false", "DLT_DATA_DIR": str(work / "dlt-data")}

    def stored(path: Path, table: str = "records", where: str = "") -> int:
        return _one(path, f"SELECT count(*) FROM {table} {where}")[0]

    def measure(name: str) -> Any:
        if name == SYNC:
            _remove(db)
            shutil.copyfile(sync_template, db)
            result = check(name, run([*syncctl, "--db", str(db), "sync", "feed"], env, scratch))
            count = stored(db)
        elif name == MARK:
            _remove(db)
            shutil.copyfile(mark_template, db)
            result = check(name, run([*syncctl, "--db", str(db), "sync", "feed"], env, scratch))
            count = stored(db, "live_records")
            status, deleted = _one(db, "SELECT status, records_deleted FROM sync_logs ORDER BY id DESC LIMIT 1")
            if status != "SUCCESS" or deleted != 0:
                sys.exit(f"bench: the second --deletes mark sync: {status}, {deleted} deleted")
        elif name == FLOOR:
            _remove(floor_db)
            result = check(name, run([sys.executable, str(BENCH / "floor.py"), url, str(floor_db)], env, scratch))
            count = stored(floor_db)
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

    names = [SYNC, FLOOR, MARK] + ([DLT] if python else [])
    for name in names:  # warm-up
        measure(name)
    for rep in range(reps):
        for i in range(len(names)):
            name = names[(i + rep) % len(names)]
            if name != DLT or rep < DLT_REPS:  # dlt is ~8x slower and far from its target
                samples.add(name, measure(name))

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
    return Peers(samples, skipped, None if skipped else dlt_version)


def rows(peers: Peers, row: Callable[..., Any]) -> list[Any]:
    """The table rows (``row``: bench/run.py's Row)."""
    s = peers.samples
    sync, floor, mark = s.median(SYNC), s.median(FLOOR), s.median(MARK)
    tick, nm = s.median(TICK), s.median(NOT_MODIFIED)
    cpu = {name: statistics.median(r.cpu for r in s.runs[name]) for name in (SYNC, FLOOR, MARK)}
    out = [
        row(
            f"records: `sync` {PAGES} pages × 10,000 / minimal Python floor (`bench/floor.py`)",
            f"{sync / floor:.2f}× ({sync:.2f} s / {floor:.2f} s)",
            "≤ 1.15×",
            sync <= 1.15 * floor,
        ),
        row(
            "records: the same by CPU time of each process (steadier on a shared machine)",
            f"{cpu[SYNC] / cpu[FLOOR]:.2f}× ({cpu[SYNC]:.2f} s / {cpu[FLOOR]:.2f} s); "
            f"`--deletes mark` 2nd sync {cpu[MARK] / cpu[FLOOR]:.2f}×",
            "—",
            None,
        ),
    ]
    figure = "records: dlt `rest_api` → SQLite (`sqlalchemy`, merge on `id`) / `sync`"
    if peers.dlt_skipped:
        out.append(row(figure, f"skipped: {peers.dlt_skipped}", "≥ 3×", None))
    else:
        dlt = s.median(DLT)
        out.append(row(f"{figure}, dlt {peers.dlt_version}", f"{dlt / sync:.1f}× ({dlt:.2f} s)", "≥ 3×", dlt >= 3 * sync))
    out += [
        row(
            "records: second identical `sync` with `--deletes mark` / floor",
            f"{mark / floor:.2f}× ({mark:.2f} s)",
            "≤ 1.25×",
            mark <= 1.25 * floor,
        ),
        row(
            "304 sync (`If-None-Match` answered `304`) / idle tick, same database",
            f"{nm / tick:.2f}× ({nm * 1000:.0f} ms / {tick * 1000:.0f} ms)",
            "≤ 1.20×",
            nm <= 1.2 * tick,
        ),
    ]
    return out
