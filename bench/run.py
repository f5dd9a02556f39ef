"""syncctl's benchmarks (spec section 8): whole processes, interleaved A/B after a
warm-up, medians and ratios. Never timed assertions in the test suite.

    python bench/run.py            # the full run (~5 minutes; the first also builds the
                                   # 1,000,000-log database, ~1 minute, then cached)
    python bench/run.py --quick    # fewer repetitions, 100 instead of 200 pages for the
                                   # 10x-records run (~1.5 minutes once the database is cached)
    python bench/run.py --quick --peers-only   # only spec §14/§18's peers, the 304 and the
                                               # dashboard queries (bench/peers.py)

Prints one table (figure, measured, target, met) and writes it as Markdown to
``bench/results/latest.md`` (git-ignored). Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH))

import dataset  # noqa: E402
import oauth  # noqa: E402
import peers  # noqa: E402

SLOW_SECONDS = 0.1
DUE = 500
PG_DUE = 2000  # spec §14: PostgreSQL, three run-due processes against one
CONCURRENCY = 16
PAGE_RECORDS = 10_000


@dataclass
class Run:
    wall: float  # seconds
    returncode: int
    maxrss_mb: float  # the command's own peak RSS, MB (NaN when not measured)
    cpu: float  # its user + system CPU seconds (the machine may be shared: CPU is steadier)
    stdout: str
    stderr: str


@dataclass
class Row:
    figure: str
    measured: str
    target: str
    met: bool | None  # None: informational
    note: str = ""


@dataclass
class Samples:
    runs: dict[str, list[Run]] = field(default_factory=dict)

    def add(self, name: str, run: Run) -> None:
        self.runs.setdefault(name, []).append(run)

    def median(self, name: str) -> float:
        return statistics.median(r.wall for r in self.runs[name])

    def paired(self, name: str, base: str) -> tuple[float, str]:
        """``name`` / ``base`` taken pair by pair: the i-th run of each ran in the same round,
        side by side, so the machine's drift cancels within a pair. (median ratio, its text
        with the pairs' range and the medians)."""
        ratios = sorted(a.wall / b.wall for a, b in zip(self.runs[name], self.runs[base], strict=True))
        middle = statistics.median(ratios)
        text = (f"{middle:.2f}× (pairs {ratios[0]:.2f}–{ratios[-1]:.2f}×, n={len(ratios)};"
                f" {_duration(self.median(name))} / {_duration(self.median(base))})")
        return middle, text

    def spread(self, name: str) -> str:
        walls = sorted(r.wall for r in self.runs[name])
        cpu = statistics.median(r.cpu for r in self.runs[name])
        return f"{walls[0] * 1000:.0f}–{walls[-1] * 1000:.0f} ms (n={len(walls)}), CPU {cpu * 1000:.0f} ms"


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def log(text: str) -> None:
    sys.stderr.write(f"[bench] {text}\n")
    sys.stderr.flush()


# -- processes ---------------------------------------------------------------------------


def tool(name: str) -> list[str]:
    """The real console script beside this interpreter (not a pyenv shim, whose own
    start-up would be measured too)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return [str(beside)]
    found = shutil.which(name)
    if not found:
        sys.exit(f"bench: {name} not found (install it: pip install -e . sqlite-utils)")
    return [found]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCCTL_", "FORCE_COLOR"))}
    # An installed package has bytecode; without this every run would recompile syncctl.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["NO_COLOR"] = "1"
    return env


# Linux carries a process's peak RSS across fork and exec: a child forked from this
# (large) process reports at least our RSS. GNU time is a small C process, so the peak
# it reports is the command's own; without it, a tiny python -S wrapper does the same.
_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code)\n"
)


def run(argv: list[str], env: dict[str, str], scratch: Path, *, rss: bool = False) -> Run:
    """One whole process: wall and CPU time (os.wait4), exit code, and with ``rss`` its
    own peak RSS, measured by a small wrapper process (whose start-up is then included)."""
    out_path, err_path, rss_path = scratch / "stdout", scratch / "stderr", scratch / "maxrss"
    if rss:
        rss_path.unlink(missing_ok=True)
        if _TIME:
            argv = [_TIME, "-f", "%M", "-o", str(rss_path), *argv]
        else:
            argv = [sys.executable, "-S", "-c", _WRAPPER, str(rss_path), *argv]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(
        wall=wall,
        returncode=proc.returncode,
        maxrss_mb=int(rss_path.read_text().split()[-1]) / 1024 if rss else float("nan"),
        cpu=usage.ru_utime + usage.ru_stime,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )


def check(name: str, result: Run, *, stdout_empty: bool = False) -> Run:
    if result.returncode != 0 or (stdout_empty and result.stdout):
        sys.exit(
            f"bench: {name} failed (exit {result.returncode})\n"
            f"stdout: {result.stdout[:500]}\nstderr: {result.stderr[:2000]}"
        )
    return result


class Source:
    """bench/source.py in its own process (it shares the 2 CPUs with what it serves)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "source.py")], stdout=subprocess.PIPE, text=True
        )
        self.port = int(self.proc.stdout.readline())
        self.base = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# -- the measurements ------------------------------------------------------------------


def bench_reads(syncctl: list[str], env: dict, db: Path, reps: int, scratch: Path) -> Samples:
    name = "integration-00042"
    commands = {
        "run-due": [*syncctl, "--db", str(db), "run-due"],
        "run-due --metrics-file": [*syncctl, "--db", str(db), "run-due", "--metrics-file", str(scratch / "syncctl.prom")],
        "run-due --status-dir": [*syncctl, "--db", str(db), "run-due", "--status-dir", str(scratch / "status")],
        "sqlite-utils tables": [*tool("sqlite-utils"), "tables", str(db)],
        "list --json": [*syncctl, "--db", str(db), "list", "--json"],
        "history --json": [*syncctl, "--db", str(db), "history", name, "--limit", "20", "--json"],
    }
    import json

    # Spec §18: a file of 1,000 integrations that already match (exported from this
    # database) applied to it; and the same file creating them in an empty database.
    manifest = scratch / "integrations-1000.toml"
    names = [f"integration-{n:05d}" for n in range(1, 1001)]
    manifest.write_text(check("export", run([*syncctl, "--db", str(db), "export", *names], env, scratch)).stdout)
    commands["apply (1,000 matching)"] = [*syncctl, "--db", str(db), "apply", str(manifest)]

    # Warm-up (page cache, bytecode), and a check that each command does what it should.
    for _ in range(2):
        check("run-due", run(commands["run-due"], env, scratch), stdout_empty=True)
        check("run-due --metrics-file", run(commands["run-due --metrics-file"], env, scratch), stdout_empty=True)
        check("run-due --status-dir", run(commands["run-due --status-dir"], env, scratch), stdout_empty=True)
        check("sqlite-utils tables", run(commands["sqlite-utils tables"], env, scratch))
        listed = json.loads(check("list", run(commands["list --json"], env, scratch)).stdout)
        logs = json.loads(check("history", run(commands["history --json"], env, scratch)).stdout)
    applied = check("apply", run(commands["apply (1,000 matching)"], env, scratch)).stdout.splitlines()
    if not applied or applied[0] != "1000 unchanged":
        sys.exit(f"bench: apply of the exported file changed something: {applied[:3]}")
    if len(listed) != dataset.INTEGRATIONS or len(logs) != 20:
        sys.exit(f"bench: list gave {len(listed)} integrations, history {len(logs)} logs")
    if len(list((scratch / "status" / "badges").glob("*.svg"))) != dataset.INTEGRATIONS:
        sys.exit("bench: run-due --status-dir did not write a badge per integration")
    samples = Samples()
    names = list(commands)
    for rep in range(reps):
        # Interleaved, and the order rotates so no command always follows the same one.
        for i in range(len(names)):
            cmd = names[(i + rep) % len(names)]
            samples.add(cmd, check(cmd, run(commands[cmd], env, scratch)))
    fresh = scratch / "fresh" / "syncctl.db"
    for _ in range(3):
        shutil.rmtree(fresh.parent, ignore_errors=True)
        created = check("apply (create 1,000)", run([*syncctl, "--db", str(fresh), "apply", str(manifest)], env, scratch))
        if created.stdout.count("\n+ ") + created.stdout.startswith("+ ") != 1000:
            sys.exit("bench: apply into an empty database did not create the 1,000 integrations")
        samples.add("apply (create 1,000)", created)
    return samples


def bench_throughput(
    syncctl: list[str], env: dict, source: Source, work: Path, reps: int, scratch: Path
) -> Samples:
    template = dataset.build_due(work / "due-template.db", source.base, DUE)
    db = work / "due.db"
    urls = work / "urls.txt"
    urls.write_text("".join(f"{source.base}/slow/{i}\n" for i in range(1, DUE + 1)))
    xargs = [
        "sh",
        "-c",
        f'xargs -P {CONCURRENCY} -n 1 curl -s -o /dev/null < "{urls}"',
    ]
    syncctl_cmd = [*syncctl, "--db", str(db), "run-due", "--concurrency", str(CONCURRENCY)]
    samples = Samples()

    def once(record: bool) -> None:
        dataset.copy_db(template, db)
        result = check("run-due (500 due)", run(syncctl_cmd, env, scratch), stdout_empty=True)
        with sqlite3.connect(db) as conn:
            ok = conn.execute("SELECT COUNT(*) FROM sync_logs WHERE status = 'SUCCESS'").fetchone()[0]
        if ok != DUE:
            sys.exit(f"bench: run-due synced {ok} of {DUE} integrations\n{result.stderr[:2000]}")
        curl = check("xargs curl", run(xargs, env, scratch))
        if record:
            samples.add("run-due 500", result)
            samples.add("xargs curl", curl)

    once(record=False)  # warm-up
    for _ in range(reps):
        once(record=True)
    return samples


def bench_postgres(syncctl: list[str], env: dict, source: Source, reps: int) -> tuple[Samples, int]:
    """Spec §14: 2,000 integrations due on PostgreSQL, 100 ms each: three `run-due
    --concurrency 16` processes (three hosts) against one. Each run must sync every
    integration exactly once. A throwaway cluster (tests/pgcluster.py) on 127.0.0.1."""
    sys.path.insert(0, str(ROOT))
    from syncctl.store import Store
    from tests import pgcluster

    bindir = pgcluster.binaries()
    if bindir is None:
        sys.exit("bench: --postgres needs PostgreSQL (apt-get install postgresql)")
    cluster = pgcluster.Cluster(bindir)
    cluster.start()
    samples = Samples()
    try:
        url = cluster.url(cluster.new_database())
        store = Store.open(url)
        store.conn.execute(
            "INSERT INTO integrations (name, url, config, sync_interval, created_at, updated_at)"
            " SELECT 'i' || lpad(n::text, 5, '0'), ? || '/slow/' || n, '{}', 3600, now(), now()"
            " FROM generate_series(1, ?) AS n",
            (source.base, PG_DUE),
        )
        command = [*syncctl, "--db", url, "run-due", "--concurrency", str(CONCURRENCY)]

        def once(hosts: int) -> Run:
            store.conn.execute("DELETE FROM sync_logs")
            store.conn.execute("UPDATE integrations SET next_sync_at = '2000-01-01T00:00:00Z', slot_at = NULL")
            started = time.perf_counter()
            procs = [subprocess.Popen(command, env={**env, "SYNCCTL_HOSTNAME": f"bench-{h}"},
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                     for h in range(hosts)]  # fmt: skip
            outcomes = [(p.wait(), p.stderr.read().decode(errors="replace")) for p in procs]
            wall = time.perf_counter() - started
            ok, distinct = store.conn.execute(
                "SELECT count(*), count(DISTINCT integration_id) FROM sync_logs WHERE status = 'SUCCESS'"
            ).fetchone()
            if ok != PG_DUE or distinct != PG_DUE or any(code for code, _ in outcomes):
                sys.exit(f"bench: {hosts} run-due synced {ok} ({distinct} distinct) of {PG_DUE}: {outcomes}")
            return Run(wall=wall, returncode=0, maxrss_mb=float("nan"), cpu=0.0, stdout="", stderr="")

        once(3)  # warm-up
        for _ in range(reps):
            samples.add("postgres: 1 run-due", once(1))
            samples.add("postgres: 3 run-due", once(3))
        store.close()
    finally:
        cluster.stop()
    return samples, PG_DUE


def bench_records(
    syncctl: list[str],
    env: dict,
    source: Source,
    work: Path,
    reps: int,
    big_reps: int,
    big_pages: int,
    scratch: Path,
) -> Samples:
    templates = {
        pages: dataset.build_records(
            work / f"records-{pages}-template.db", f"{source.base}/records?pages={pages}"
        )
        for pages in (20, big_pages)
    }
    samples = Samples()

    def once(pages: int, record: bool) -> None:
        db = work / f"records-{pages}.db"
        dataset.copy_db(templates[pages], db)
        result = check(
            f"sync ({pages} pages)", run([*syncctl, "--db", str(db), "sync", "feed"], env, scratch, rss=True)
        )
        with sqlite3.connect(db) as conn:
            stored = conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        if stored != pages * PAGE_RECORDS:
            sys.exit(f"bench: stored {stored} records, expected {pages * PAGE_RECORDS}")
        table = peers.data_table(db)  # spec §15, when this syncctl keeps data tables
        if table and peers._one(db, f"SELECT count(*) FROM {table}")[0] != stored:
            sys.exit(f"bench: the data table {table} does not hold the {stored} records")
        if record:
            samples.add(f"sync {pages} pages", result)

    once(20, record=False)  # warm-up
    for rep in range(max(reps, big_reps)):
        if rep < reps:
            once(20, record=True)
        if rep < big_reps:
            once(big_pages, record=True)
    return samples


# -- the report --------------------------------------------------------------------------


def machine() -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for package in ("syncctl", "typer", "click", "sqlite-utils", "requests", "numpy"):
        try:
            from importlib.metadata import version

            versions.append(f"{package} {version(package)}")
        except Exception:  # noqa: BLE001 - absent packages are simply not listed
            versions.append(f"{package} (not installed)")
    load = os.getloadavg()
    return [
        f"nproc {os.cpu_count()}; CPU {cpu}; {platform.system()} {platform.release()}",
        f"Python {platform.python_version()}; SQLite {sqlite3.sqlite_version}; " + ", ".join(versions),
        f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    ]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def table(rows: list[Row]) -> str:
    lines = ["| figure | measured | target | met |", "| --- | --- | --- | --- |"]
    for r in rows:
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.figure} | {r.measured} | {r.target} | {met} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (~1.5 minutes)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (for debugging)")
    parser.add_argument("--reads-only", action="store_true", help="only the idle tick and the reads")
    parser.add_argument("--peers-only", action="store_true",
                        help="only the records beside their peers, the 304 and the dashboard queries (spec §14, §18)")
    parser.add_argument("--postgres", action="store_true",
                        help="also spec §14's PostgreSQL row: 2,000 due, three run-due vs one (needs postgresql)")
    args = parser.parse_args()
    reads_reps, due_reps, rec_reps, big_reps, big_pages = (
        (7, 2, 2, 1, 100) if args.quick else (21, 5, 5, 3, 200)
    )
    started = time.perf_counter()
    env = child_env()
    syncctl = tool("syncctl")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "syncctl")], check=True, env=env)
    RESULTS.mkdir(exist_ok=True)
    big = dataset.build_big(RESULTS / "cache", log=log)
    work = Path(tempfile.mkdtemp(prefix="syncctl-bench-"))
    scratch = work / "scratch"
    scratch.mkdir()
    source = Source()
    try:
        db = work / "big.db"
        dataset.copy_db(big, db)
        reads = due = records = None
        if not args.peers_only:
            log(f"reads and idle tick: {reads_reps} interleaved repetitions")
            reads = bench_reads(syncctl, env, db, reads_reps, scratch)
            if args.reads_only:
                _report_reads(reads)
                return
            log(
                f"throughput: {DUE} due, {SLOW_SECONDS * 1000:.0f} ms each, --concurrency {CONCURRENCY}, {due_reps} reps"
            )
            due = bench_throughput(syncctl, env, source, work, due_reps, scratch)
            log(f"records: 20 pages x {reps_text(rec_reps)}, {big_pages} pages x {reps_text(big_reps)}")
            records = bench_records(syncctl, env, source, work, rec_reps, big_reps, big_pages, scratch)
        log(
            "records beside the floors, dlt and curl | sqlite-utils, a 304 beside the idle tick,"
            f" dashboard queries (spec §14, §18): {max(rec_reps, 5)} runs"
        )
        side = peers.bench_records_peers(
            run, check, Samples(), syncctl, env, source.base, work, db, max(rec_reps, 5), reads_reps, scratch, log
        )
        log(f"OAuth2 (spec §18): a held token makes no token request; {max(rec_reps, 5)} runs")
        oauth_samples, oauth_counted = oauth.bench_oauth(
            run, check, Samples(), syncctl, env, source.base, work, max(rec_reps, 5), scratch
        )
        postgres = None
        if args.postgres:
            log(f"postgres: {PG_DUE} due, {SLOW_SECONDS * 1000:.0f} ms each, three run-due vs one, {due_reps} reps")
            postgres, _ = bench_postgres(syncctl, env, source, due_reps)
    finally:
        source.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    rows = [] if args.peers_only else read_rows(reads) + other_rows(due, records, big_pages, reads.median("run-due"))
    if postgres is not None:
        one, three = postgres.median("postgres: 1 run-due"), postgres.median("postgres: 3 run-due")
        rows.append(Row(
            f"PostgreSQL: {PG_DUE:,} due, 3 × `run-due --concurrency {CONCURRENCY}` / 1 × (each synced once)",
            f"1/{one / three:.2f} ({three:.2f} s vs {one:.2f} s)",
            "≤ 1/2.5",
            one / three >= 2.5,
        ))
    rows += peers.rows(side, Row)
    rows += oauth.rows(oauth_samples, oauth_counted, Row)
    measured = [s for s in (reads, due, records, side.samples, oauth_samples, postgres) if s is not None]
    detail = [
        f"- `{name}`: median {ms(samples.median(name))}, range {samples.spread(name)}"
        for samples in measured
        for name in samples.runs
    ] + peers.detail(side)
    body = "\n".join(
        [
            f"# syncctl benchmark ({'quick' if args.quick else 'full'}{', peers only' if args.peers_only else ''})"
            f" — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            "",
            table(rows),
            "",
            "Machine: " + "  \n".join(machine()),
            "",
            "Medians of interleaved whole-process runs after a warm-up:",
            "",
            *detail,
            "",
            f"(bench took {time.perf_counter() - started:.0f} s)",
            "",
        ]
    )
    (RESULTS / "latest.md").write_text(body)
    sys.stdout.write(body)
    log(f"written to {RESULTS / 'latest.md'}")


def other_rows(due: Samples, records: Samples, big_pages: int, idle: float) -> list[Row]:
    """The throughput and records rows (spec §8)."""
    wall, curl = due.median("run-due 500"), due.median("xargs curl")
    ideal = DUE * SLOW_SECONDS / CONCURRENCY + idle
    rows = [
        Row(
            f"throughput: `run-due --concurrency {CONCURRENCY}`, {DUE} due / ideal ({ideal:.2f} s)",
            f"{wall / ideal:.2f}× ({wall:.2f} s)",
            "≤ 1.25×",
            wall <= 1.25 * ideal,
        ),
        Row(
            f"throughput: same / `xargs -P {CONCURRENCY} -n 1 curl`",
            f"{wall / curl:.2f}× ({curl:.2f} s)",
            "≤ 1.00×",
            wall <= curl,
        ),
    ]
    small = records.runs["sync 20 pages"]
    large = records.runs[f"sync {big_pages} pages"]
    rate = 20 * PAGE_RECORDS / records.median("sync 20 pages")
    rss = statistics.median(r.maxrss_mb for r in small)
    rss_big = statistics.median(r.maxrss_mb for r in large)
    big_rate = big_pages * PAGE_RECORDS / records.median(f"sync {big_pages} pages")
    growth = rss_big / rss - 1
    rows += [
        Row(
            "records: `sync` 20 pages × 10,000, records/s (whole process)",
            f"{rate:,.0f}/s",
            "≥ 50,000/s",
            rate >= 50_000,
        ),
        Row(
            "records: the same per CPU-second of the syncctl process (the source runs apart)",
            f"{20 * PAGE_RECORDS / statistics.median(r.cpu for r in small):,.0f}/s",
            "—",
            None,
        ),
        Row("records: peak RSS, 20 pages", f"{rss:.1f} MB", "< 150 MB", rss < 150),
        Row(
            f"records: peak RSS, {big_pages} pages ({big_pages // 20}× the records) vs 20 pages",
            f"{growth * 100:+.1f} % ({rss_big:.1f} MB; {big_rate:,.0f} records/s)",
            "< +20 %",
            growth < 0.2,
        ),
    ]
    return rows


def read_rows(reads: Samples) -> list[Row]:
    # Each ratio is taken pair by pair: every round runs each command once (bench_reads).
    idle, idle_text = reads.paired("run-due", "sqlite-utils tables")
    metrics, metrics_text = reads.paired("run-due --metrics-file", "sqlite-utils tables")
    status_dir, status_text = reads.paired("run-due --status-dir", "sqlite-utils tables")
    lst, lst_text = reads.paired("list --json", "run-due")
    hist, hist_text = reads.paired("history --json", "run-due")
    apply_, apply_text = reads.paired("apply (1,000 matching)", "run-due")
    create = reads.median("apply (create 1,000)")
    return [
        Row("idle tick: `run-due` (nothing due; with the heartbeat) / `sqlite-utils tables`", idle_text, "≤ 1.00×",
            idle <= 1.0),
        Row("idle tick with `--metrics-file` (10,000 integrations) / `sqlite-utils tables`", metrics_text, "≤ 1.00×",
            metrics <= 1.0),
        Row(
            "idle tick with `--status-dir` (10,000 integrations: page, status.json, 20,000 badges) / `sqlite-utils tables`",
            status_text,
            "≤ 1.00×",
            status_dir <= 1.0,
        ),
        Row("`list --json` / idle tick", lst_text, "≤ 1.30×", lst <= 1.3),
        Row(
            "`apply` of a file of 1,000 integrations that already match / idle tick (10,000 in the database)",
            apply_text,
            "≤ 3.00×",
            apply_ <= 3,
        ),
        Row("`apply` of the same file creating them in an empty database", ms(create), "≤ 3 s", create <= 3.0),
        Row("`history NAME --limit 20 --json` / idle tick", hist_text, "≤ 1.30×", hist <= 1.3),
    ]  # fmt: skip


def _report_reads(reads: Samples) -> None:
    detail = [f"- `{name}`: median {ms(reads.median(name))}, range {reads.spread(name)}" for name in reads.runs]
    sys.stdout.write(table(read_rows(reads)) + "\n\n" + "\n".join(detail) + "\n")


def reps_text(n: int) -> str:
    return f"{n} run" + ("s" if n != 1 else "")


if __name__ == "__main__":
    main()
