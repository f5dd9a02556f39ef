"""Spec §18's dashboard queries over 200,000 records: the same two queries on syncctl's data
table (§15) and on a table ``sqlite-utils insert --pk id`` built from the same records
(bench/peers.py's ``curl | sqlite-utils insert`` row leaves one), and, for scale, the
GROUP BY through ``json_extract`` over syncctl's ``records``.

Timed in this process with the stdlib ``sqlite3`` (a fresh read-only connection per
database, a warm-up, then interleaved repetitions in rotating order, medians): only the
queries are timed, not a process start-up that would swamp them.

    python bench/dashboard.py SYNCCTL_DB TABLE SQLITE_UTILS_DB [SQLITE_UTILS_TABLE]
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import time
from pathlib import Path

GROUP_BY = "SELECT status, count(*), avg(score) FROM {table} GROUP BY status ORDER BY status"
TOP = "SELECT id, name, status, score, updated_at FROM {table} ORDER BY score DESC LIMIT 50"
# The same GROUP BY on syncctl's JSON column (what a dashboard would do without the table).
GROUP_BY_JSON = (
    "SELECT json_extract(data, '$.status') AS status, count(*), avg(json_extract(data, '$.score'))"
    " FROM records"
    " WHERE integration_id = {integration} GROUP BY 1 ORDER BY 1"
)
QUERIES = {"GROUP BY": GROUP_BY, "ORDER BY … LIMIT 50": TOP}


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _time(conn: sqlite3.Connection, sql: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one query, all rows fetched. The CPU time is this thread's
    (the query runs in it), steadier than the wall time on a shared machine."""
    wall, cpu = time.perf_counter(), time.thread_time()
    conn.execute(sql).fetchall()
    return time.perf_counter() - wall, time.thread_time() - cpu


def _same(name: str, a: list, b: list) -> None:
    """Both tables must answer alike (scores tie, so the top 50 is compared by score)."""
    if name == "GROUP BY":
        norm = [[(s, n, round(avg, 6)) for s, n, avg in rows] for rows in (a, b)]
    else:
        norm = [sorted(r[3] for r in rows) for rows in (a, b)]
    if norm[0] != norm[1] or not a:
        sys.exit(f"bench: the dashboard query {name!r} answers differently:\n{a[:5]}\n{b[:5]}")


def measure(
    syncctl_db: Path, table: str, other_db: Path, other_table: str, reps: int, json_reps: int = 5
) -> dict[str, list[float]]:
    """(wall, CPU) seconds per run: ``"<query>: data table"``, ``"<query>: sqlite-utils"``
    for each query, and ``"GROUP BY: json_extract on records"``."""
    ours, theirs = _connect(syncctl_db), _connect(other_db)
    try:
        (integration,) = ours.execute("SELECT integration_id FROM records LIMIT 1").fetchone()
        pairs = []
        for query, sql in QUERIES.items():
            a = ours.execute(sql.format(table=table)).fetchall()  # warm-up and check
            b = theirs.execute(sql.format(table=other_table)).fetchall()
            _same(query, a, b)
            pairs += [(f"{query}: data table", ours, sql.format(table=table)),
                      (f"{query}: sqlite-utils", theirs, sql.format(table=other_table))]  # fmt: skip
        times: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in pairs}
        for rep in range(reps):
            for i in range(len(pairs)):
                name, conn, sql = pairs[(i + rep) % len(pairs)]
                times[name].append(_time(conn, sql))
        json_sql = GROUP_BY_JSON.format(integration=integration)
        _same("GROUP BY", ours.execute(json_sql).fetchall(),
              theirs.execute(GROUP_BY.format(table=other_table)).fetchall())  # fmt: skip
        times["GROUP BY: json_extract on records"] = [_time(ours, json_sql) for _ in range(json_reps)]
        return times
    finally:
        ours.close()
        theirs.close()


def main() -> None:
    syncctl_db, table, other_db = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    other_table = sys.argv[4] if len(sys.argv) > 4 else "records"
    for name, runs in measure(syncctl_db, table, other_db, other_table, reps=21).items():
        wall, cpu = (statistics.median(r[i] for r in runs) * 1000 for i in (0, 1))
        print(f"{name}: median {wall:.1f} ms, CPU {cpu:.1f} ms (n={len(runs)})")


if __name__ == "__main__":
    main()
