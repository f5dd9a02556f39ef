"""Reliability (spec section 9): SIGKILL at random moments, misbehaving sources, random
arguments and bodies, and a secret canary, all with real processes and real HTTP
servers on 127.0.0.1 (tests/httpsources.py)."""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import secrets
import signal
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncctl.cli import main
from tests.helpers import HANG_GUARD, query
from tests.httpsources import (
    HTTPSource,
    closed_port,
    drip,
    dynamic,
    echo,
    gzip_bomb,
    hang,
    huge_body,
    json_body,
    raw_body,
    reset_mid_body,
    send,
)

DOCUMENTED_EXIT_CODES = {0, 1, 2, 3, 75}
PAST = "2000-01-01T00:00:00.000Z"


def lock_is_free(db_path: Path) -> bool:
    """Could a new run-due take ``<db>.lock`` right now?"""
    fd = os.open(f"{db_path}.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def logs_by_name(db_path: Path) -> dict[str, list[dict]]:
    rows = query(
        db_path,
        "SELECT i.name, l.* FROM sync_logs l JOIN integrations i ON i.id = l.integration_id ORDER BY l.id",
    )
    found: dict[str, list[dict]] = {}
    for row in rows:
        found.setdefault(row["name"], []).append(row)
    return found


# -- kill loop -----------------------------------------------------------------------------


def _kill_loop_source(source: HTTPSource, rng: random.Random) -> list[list[str]]:
    """20 integrations: plain, page-numbered and Link-paginated, each answering after a
    small random delay; keys shift between syncs so every sync stores some new ones."""
    generation: dict[str, int] = {}
    adds = []

    def make(name: str, mode: str):
        def respond(handler):
            page = int(handler.query.get("page", "1"))
            if page == 1:
                generation[name] = generation.get(name, 0) + 1
            gen = generation.get(name, 1)
            if mode == "page" and page > 3:
                return 200, []
            records = [{"id": f"{page}-{(gen + k) % 40}", "gen": gen, "name": name} for k in range(10)]
            return 200, {"data": records} if mode != "link" else records

        def behave(handler):
            handler.server.source.stopping.wait(rng.uniform(0, 0.15))
            status, value = respond(handler)
            page = int(handler.query.get("page", "1"))
            headers = {}
            if mode == "link" and page < 3:
                headers["Link"] = f'<{source.url("/" + name)}?page={page + 1}>; rel="next"'
            send(handler, status, json.dumps(value).encode(), headers=headers)

        return behave

    for i in range(20):
        name = f"src{i:02d}"
        mode = ("none", "page", "link")[i % 3]
        url = source.add(f"/{name}", make(name, mode))
        paginate = {"none": "none", "page": "page:page", "link": "link"}[mode]
        adds.append(["add", name, "--url", url, "--interval", "1m", "--paginate", paginate, "--max-retries", "100"])
    return adds


def assert_table_is_live_records(db_path, integration_id: int, table: str) -> None:  # noqa: ANN001
    """The data table's rows are the live records, column for column (spec §15)."""
    from syncctl.tables import column_value, flatten_columns

    live = query(db_path, "SELECT key, data FROM live_records WHERE integration_id = ? ORDER BY key", (integration_id,))
    rows = {r["_key"]: r for r in query(db_path, f'SELECT * FROM "{table}"')}
    assert sorted(rows) == [r["key"] for r in live], f"{table}: exactly the keys of live_records"
    columns = {tuple(json.loads(c["path"])): (c["name"], c["type"]) for c in query(
        db_path, "SELECT name, type, path FROM data_columns WHERE integration_id = ?", (integration_id,))}
    for record in live:
        fields = flatten_columns([json.loads(record["data"])])
        for path, (name, type_) in columns.items():
            value = fields.get(path[0] if len(path) == 1 else path, [None])[0]
            assert rows[record["key"]][name] == column_value(value, type_), f"{table}.{name} of {record['key']}"


@pytest.mark.slow
def test_kill_loop_loses_nothing_and_leaves_no_running_row(cli, spawn, db_path, source):
    """SIGKILL run-due at 50 random moments: afterwards no RUNNING row, an intact
    database, and every record an earlier successful sync stored is still there."""
    rng = random.Random(os.environ.get("SYNCCTL_KILL_SEED", "kill-loop"))
    for args in _kill_loop_source(source, rng):
        assert cli(*args).returncode == 0
    expected: dict[int, set[str]] = {}
    seen_success = 0

    def snapshot() -> None:
        """For each SUCCESS since the last look, remember the keys stored by then."""
        nonlocal seen_success
        conn = sqlite3.connect(db_path)
        try:
            new = conn.execute(
                "SELECT id, integration_id FROM sync_logs WHERE status = 'SUCCESS' AND id > ?", [seen_success]
            ).fetchall()
            for log_id, integration_id in new:
                keys = {k for (k,) in conn.execute("SELECT key FROM records WHERE integration_id = ?", [integration_id])}
                expected.setdefault(integration_id, set()).update(keys)
                seen_success = max(seen_success, log_id)
            conn.execute("UPDATE integrations SET next_sync_at = ?", [PAST])  # re-arm: all due again
            conn.commit()
        finally:
            conn.close()

    kills_mid_sync = 0
    for _ in range(50):
        proc = spawn("run-due", "--concurrency", "4")
        time.sleep(rng.uniform(0.15, 1.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=HANG_GUARD)
        running = query(db_path, "SELECT COUNT(*) AS n FROM sync_logs WHERE status = 'RUNNING'")[0]["n"]
        kills_mid_sync += running > 0
        snapshot()

    # `list` reaps the last kill's orphans (each scheduled for a retry a minute later);
    # make everything due once more so the final run syncs every integration.
    assert cli("list").returncode == 0
    snapshot()
    final = cli("run-due", "--concurrency", "4")

    assert (final.returncode, final.stderr) == (0, "")
    assert query(db_path, "SELECT status, COUNT(*) AS n FROM sync_logs WHERE status IN ('RUNNING', 'PENDING')"
                 " GROUP BY status") == []
    assert query(db_path, "PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    missing = {}
    for integration_id, keys in expected.items():
        stored = {r["key"] for r in query(db_path, "SELECT key FROM records WHERE integration_id = ?", (integration_id,))}
        if keys - stored:
            missing[integration_id] = sorted(keys - stored)
    assert missing == {}
    # The loop must really have killed syncs half way, and seen successes between kills.
    assert kills_mid_sync >= 5 and seen_success > 0
    interrupted = query(db_path, "SELECT COUNT(*) AS n FROM sync_logs WHERE error_message LIKE 'interrupted:%'")
    assert interrupted[0]["n"] >= kills_mid_sync
    statuses = {row["name"]: row["last_status"] for row in query(db_path, "SELECT name, last_status FROM integrations")}
    assert set(statuses.values()) == {"SUCCESS"}
    for row in query(db_path, "SELECT data FROM records"):
        json.loads(row["data"])
    # Spec §15: each data table holds exactly the keys of live_records, with its records' values.
    tables = query(db_path, "SELECT id, data_table FROM integrations WHERE data_table IS NOT NULL")
    assert len(tables) == len(statuses), "every integration kept its data table"
    for table in tables:
        assert_table_is_live_records(db_path, table["id"], table["data_table"])
    # The same for the fields this source sends, read straight from the records (not through
    # syncctl's own flattening, which the check above shares with the code under test).
    for integration in query(db_path, "SELECT id, name, data_table FROM integrations"):
        live = {r["key"]: json.loads(r["data"]) for r in query(
            db_path, "SELECT key, data FROM live_records WHERE integration_id = ?", (integration["id"],))}
        table = {r["_key"]: r for r in query(db_path, f'SELECT _key, id, gen, name FROM "{integration["data_table"]}"')}
        assert sorted(table) == sorted(live), f"{integration['name']}: its table holds the keys of live_records"
        for key, record in live.items():
            assert (table[key]["id"], table[key]["gen"], table[key]["name"]) == (
                record["id"], record["gen"], record["name"]), f"{integration['name']}[{key}]: the record's values"


# -- fault matrix ----------------------------------------------------------------------------

HTML = b"<!doctype html><html><head><title>Sign in</title></head><body>Please log in</body></html>"
HEALTHY = {"ok-list": [{"id": 1}, {"id": 2}], "ok-data": {"data": [{"id": "a"}, {"id": "b"}, {"id": "c"}]}}


def test_fault_matrix_each_bad_source_fails_alone_and_the_lock_is_released(cli, db_path, source):
    faults = {
        # name: (behaviour, extra add options, what the error message must say)
        "hang": (hang(), ["--timeout", "2"], r"timed out|--sync-timeout"),
        "drip": (drip(b'[{"id": 1}, {"id": 2}, {"id": 3}]' * 4, every=0.3), [], r"--sync-timeout"),
        "reset": (reset_mid_body(), [], r"reset|broke|--sync-timeout"),
        "html": (raw_body(HTML, content_type="text/html; charset=utf-8"), [], r"expected JSON.*text/html"),
        "truncated": (raw_body(b'{"data": [{"id": 1}, {"id": 2'), [], r"invalid JSON"),
        "huge": (huge_body(), [], r"64 MiB"),
        "huge-declared": (huge_body(70 * 1024 * 1024, declare_length=True), [], r"64 MiB"),
        "gzip-bomb": (gzip_bomb(), [], r"64 MiB"),
    }
    for name, (behaviour, options, _) in faults.items():
        assert cli("add", name, "--url", source.add(f"/{name}", behaviour), *options).returncode == 0
    for name, body in HEALTHY.items():
        assert cli("add", name, "--url", source.add(f"/{name}", json_body(body, delay=0.2))).returncode == 0

    run = cli("run-due", "--concurrency", "10", "--sync-timeout", "3", timeout=60)

    assert run.returncode == 1
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    assert sorted(line.split(":")[1].strip() for line in lines) == sorted(faults), run.stderr
    assert "Traceback" not in run.stderr
    logs = logs_by_name(db_path)
    for name, (_, _, says) in faults.items():
        assert [log["status"] for log in logs[name]] == ["FAILED"], name
        assert logs[name][0]["error_hint"], name
        assert re.search(says, logs[name][0]["error_message"]), (name, logs[name][0]["error_message"])
    for name in HEALTHY:
        assert [log["status"] for log in logs[name]] == ["SUCCESS"], name
    stored = query(db_path, "SELECT i.name, COUNT(*) AS n FROM records r JOIN integrations i"
                   " ON i.id = r.integration_id GROUP BY i.name")
    assert {r["name"]: r["n"] for r in stored} == {"ok-list": 2, "ok-data": 3}
    assert lock_is_free(db_path)
    again = cli("run-due", timeout=60)  # the failures are not due yet: nothing to do, silently
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


@pytest.mark.parametrize("where", ["status line", "body"])
def test_sync_timeout_cuts_off_a_source_that_drips_forever(cli, db_path, source, where):
    """A byte every 0.3 s never trips the per-read timeout; --sync-timeout must still end
    the sync (and the run) on time, even while the headers are still arriving."""
    body = b'[{"id": 1}]' + b" " * 5000  # about 25 minutes of dripping
    url = source.add("/drip", drip(body, every=0.3, headers_too=where == "status line", pad=5000))
    assert cli("add", "drip", "--url", url).returncode == 0
    assert cli("add", "fine", "--url", source.add("/fine", json_body([{"id": 1}]))).returncode == 0

    run = cli("run-due", "--sync-timeout", "2", timeout=30)

    assert run.returncode == 1
    assert "drip: sync took longer than --sync-timeout (2 s)" in run.stderr
    assert [log["status"] for log in logs_by_name(db_path)["drip"]] == ["FAILED"]
    assert [log["status"] for log in logs_by_name(db_path)["fine"]] == ["SUCCESS"]
    assert lock_is_free(db_path)


def test_sync_timeout_bounds_a_rate_limit_wait(cli, db_path, source):
    """A --rate-limit of 1/m on a paginated source must not hold run-due (and its lock)
    for a minute when --sync-timeout is 2 s."""
    pages = dynamic(lambda h: (200, [{"id": h.query.get("page")}] if int(h.query.get("page", 1)) < 5 else []))
    url = source.add("/pages", pages)
    assert cli("add", "slow", "--url", url, "--paginate", "page:page", "--rate-limit", "1/m").returncode == 0

    run = cli("run-due", "--sync-timeout", "2", timeout=40)

    assert run.returncode == 1
    assert "slow: sync took longer than --sync-timeout (2 s)" in run.stderr
    logs = logs_by_name(db_path)["slow"]
    assert [(log["status"], log["records_count"]) for log in logs] == [("FAILED", 1)]


# -- property-based: arguments -------------------------------------------------------------

SUBCOMMANDS = ["add", "remove", "list", "show", "set-interval", "pause", "resume", "sync", "run-due",
               "history", "prune"]
OPTIONS = ["--json", "--url", "--interval", "--header", "-H", "--param", "-p", "--records-path", "--key",
           "--paginate", "--max-pages", "--timeout", "--rate-limit", "--max-retries", "--yes", "--all",
           "--limit", "--status", "--since", "--older-than", "--concurrency", "--max-rps", "--sync-timeout",
           "-v", "--help", "--version", "--", "-"]
VALUES = ["a", "feed", "feed2", "broken", "1h", "15 minutes", "manual", "weekly", "0", "-1", "1e309", "nan", "inf", "-inf",
          "99999999999999999999", "0.0000001", "https://", "http://[::1", "data.items", "a..b", ".", "page:page",
          "cursor:a:b", "next-url:next", "link", "bogus:", "${X}", "${", "${1}", "Accept: ${NOPE}",
          "Authorization: Bearer x", "a=b", "token=x", "10/s", "0/s", "1/h", "success", "running", "24h",
          "2026-11-22T10:00:00Z", "90d", "1000000", "\u00e9\u6f22\U0001f600", " ", ""]


def _argument():
    no_nul = st.characters(blacklist_characters="\x00")
    raw = st.binary(max_size=16).filter(lambda b: b"\x00" not in b).map(os.fsdecode)
    return st.one_of(st.sampled_from(OPTIONS), st.sampled_from(VALUES), st.text(no_nul, max_size=24), raw)


@pytest.fixture(scope="module")
def fuzz_source():
    with HTTPSource() as running:
        running.add("/ok", json_body({"data": [{"id": 1}, {"id": 2}]}))
        yield running


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_arguments_give_only_documented_exit_codes(data, tmp_path, capfd, monkeypatch, fuzz_source):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYNCCTL_DB", raising=False)
    db = str(tmp_path / "fuzz.db")
    url = fuzz_source.url("/ok")
    # Some state to act on: a scheduled and a manual integration against a healthy source,
    # and one whose source answers 404 (so that sync and run-due fail, too).
    for setup in (["add", "feed", "--url", url, "--interval", "1h"],
                  ["add", "feed2", "--url", url, "--interval", "manual"],
                  ["add", "broken", "--url", fuzz_source.url("/missing"), "--interval", "1h"]):
        _run_main(["--db", db, *setup])
    capfd.readouterr()
    command = data.draw(st.sampled_from(SUBCOMMANDS))
    args = data.draw(st.lists(_argument(), max_size=6))
    if command == "add" and data.draw(st.booleans()):
        args = ["feed3", "--url", data.draw(st.sampled_from([url, fuzz_source.url("/missing"), "ftp://x"])), *args]

    last_log = _last_log_id(db)

    code = _run_main(["--db", db, command, *args])

    out, err = capfd.readouterr()
    assert code in DOCUMENTED_EXIT_CODES, (command, args, err)
    assert "Traceback" not in err
    assert "internal error" not in err, (command, args, err)  # the catch-all for bugs
    if code != 0 and "--help" not in args and "--version" not in args:
        lines = err.splitlines()
        assert lines and all(line.startswith("syncctl: ") for line in lines), (command, args, err)
        failed = _failed_since(db, last_log)
        if failed:  # sync / run-due: one line per failed sync, naming its integration
            per_sync = [line for line in lines if "is now disabled after" not in line]  # + auto-disable notices
            assert sorted(_named(line) for line in per_sync) == failed, (command, args, err)
        else:  # anything else: exactly one line
            assert len(lines) == 1, (command, args, err)
    if "--json" in args and code == 0 and "--help" not in args and "--version" not in args and out:
        json.loads(out)


def _last_log_id(db: str) -> int:
    return query(Path(db), "SELECT coalesce(max(id), 0) AS n FROM sync_logs")[0]["n"]


def _failed_since(db: str, last_log: int) -> list[str]:
    """The integration of each sync that failed after log ``last_log``, sorted."""
    rows = query(Path(db), "SELECT i.name FROM sync_logs l JOIN integrations i ON i.id = l.integration_id"
                 " WHERE l.id > ? AND l.status = 'FAILED' ORDER BY i.name", (last_log,))
    return [row["name"] for row in rows]


def _named(line: str) -> str:
    """The integration an error line names: ``syncctl: NAME: cause (hint: …)``."""
    return line.removeprefix("syncctl: ").split(":")[0]


def _run_main(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


@pytest.mark.parametrize(
    "argv",
    [
        [b"add", b"\xff\xfe", b"--url", b"http://127.0.0.1:9/"],
        [b"show", b"\xc3\x28"],
        [b"history", b"--since", b"\xe2\x82"],
        [b"set-interval", b"x", b"\xf0\x9f\x98"],
        [b"\xff"],
        [b"list", b"--json", b"\x80"],
        [b"add", b"ok", b"--url", b"http://127.0.0.1:9/", b"--header", b"X-A: \xff\xfe"],
        [b"add", b"ok", b"--url", b"http://127.0.0.1:9/\xff"],
        [b"add", b"ok", b"--url", b"http://127.0.0.1:9/", b"--records-path", b"\xff.x"],
        [b"add", b"ok", b"--url", b"http://127.0.0.1:9/", b"--key", b"id.\xed\xa0\x80"],
        [b"add", b"ok", b"--url", b"http://127.0.0.1:9/", b"--param", b"q=\xe9t\xe9"],
        [b"pause", b"\xff"],
        [b"sync", b"ok", b"\xfe"],
        [b"remove", b"\xff", b"--yes"],
    ],
)
def test_undecodable_arguments_in_a_real_process(store, spawn, argv):  # store: the database exists
    """Spot checks in a subprocess (the real stdout/stderr encodings, no capture)."""
    proc = spawn(*argv, env={"PYTHONIOENCODING": None}, text=False)  # bytes in, bytes out
    _, stderr = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 2, stderr  # bad input
    assert b"Traceback" not in stderr and b"internal error" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


# -- property-based: JSON bodies -----------------------------------------------------------

# Text with lone surrogates too: json.dumps writes them as "\ud800" escapes, valid JSON
# grammar that Python decodes to strings SQLite cannot store as they are.
texts = st.text() | st.text(st.characters(categories=["Cs", "Lu", "Nd", "Zs", "So"]), max_size=6)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(texts, children, max_size=5),
    max_leaves=25,
)
# Number literals at the edges of what a double holds (1e400 overflows to infinity).
number_literals = st.sampled_from(["1e400", "-1e400", "1e-400", "123456789012345678901234567890", "-0", "0.0e0",
                                   "NaN", "Infinity"])
records = st.lists(
    st.dictionaries(st.sampled_from(["id", "name", "a", "nested"]), json_values, max_size=4), max_size=6
)
bodies = st.one_of(
    json_values.map(json.dumps),
    records.map(json.dumps),
    records.map(lambda r: json.dumps({"data": {"items": r}, "next": None})),
    st.tuples(st.sampled_from(["data", "items", "results", "records", "other"]), records).map(
        lambda t: json.dumps({t[0]: t[1]}, ensure_ascii=False)
    ),
    st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
    st.tuples(number_literals, st.sampled_from(["id", "v"])).map(lambda t: f'[{{"{t[1]}": {t[0]}, "n": 1}}]'),
)


def _stored(db: str) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT key, data FROM records ORDER BY key").fetchall()
    finally:
        conn.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=bodies,
    records_path=st.one_of(st.none(), st.sampled_from(["data", "data.items", "items", "0", "a.b", "x"]),
                           st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=8)),
    key=st.one_of(st.none(), st.sampled_from(["id", "name", "nested", "nested.id", "a.b"])),
)
def test_random_json_bodies_sync_idempotently(body, records_path, key, tmp_path_factory, capfd, fuzz_source):
    db = str(tmp_path_factory.mktemp("json") / "fuzz.db")
    url = fuzz_source.add("/body", raw_body(body.encode("utf-8", "surrogatepass")))
    options = (["--records-path", records_path] if records_path is not None else []) + (
        ["--key", key] if key is not None else []
    )
    capfd.readouterr()
    added = _run_main(["--db", db, "add", "body", "--url", url, "--interval", "manual", *options])
    if added != 0:
        assert added == 2  # an invalid --records-path or --key is refused up front
        return

    first = _run_main(["--db", db, "sync", "body"])
    after_first = _stored(db)
    second = _run_main(["--db", db, "sync", "body"])
    after_second = _stored(db)

    err = capfd.readouterr().err
    assert "Traceback" not in err and "internal error" not in err
    # A random body may be refused (NaN, no records at the path): then both syncs fail
    # alike, exit 1 and a FAILED log each; otherwise both succeed, exit 0.
    assert first in (0, 1) and second == first, err
    statuses = [row["status"] for row in query(Path(db), "SELECT status FROM sync_logs ORDER BY id")]
    assert statuses == ["SUCCESS" if first == 0 else "FAILED"] * 2, (statuses, err)
    assert after_second == after_first
    for _, data in after_first:
        json.loads(data, parse_constant=_refuse_constant)  # standard JSON only
    errors = query(Path(db), "SELECT error_message, error_hint FROM sync_logs WHERE status = 'FAILED'")
    for row in errors:
        assert not row["error_message"].startswith("internal error"), row
        assert row["error_hint"]


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not standard JSON")


@pytest.mark.parametrize(
    ("body", "options"),
    [
        (b'[{"id": 1, "v": 1e400}]', []),
        (b'[{"id": 2, "v": NaN}]', []),
        (b'[{"id": "\\ud800", "v": "lone surrogate"}]', []),
        (b'[{"id": 3, "v": "\\udfff\\ud800"}]', []),
        (b'[{"v": "\\ud800 and no key"}]', []),
        (b'[{"id": 4, "v": -Infinity}]', []),
        (b'{"\\ud800": [1]}', ["--records-path", "data.items"]),
    ],
)
def test_unusual_json_is_stored_as_standard_json_or_refused_with_a_hint(body, options, cli, db_path, source):
    url = source.add("/odd", raw_body(body))
    assert cli("add", "odd", "--url", url, "--interval", "manual", *options).returncode == 0

    run = cli("sync", "odd")

    assert "Traceback" not in run.stderr
    log = query(db_path, "SELECT status, error_message, error_hint FROM sync_logs")[0]
    if run.returncode == 0:
        for row in query(db_path, "SELECT data FROM records"):
            json.loads(row["data"], parse_constant=_refuse_constant)
            assert query(db_path, "SELECT json_valid(?) AS ok", (row["data"],))[0]["ok"] == 1
    else:
        assert run.returncode == 1
        assert not log["error_message"].startswith("internal error"), log
        assert log["error_hint"]


# -- the secret canary ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_secret_never_leaks_through_any_command_or_failure(cli, db_path, source, tmp_path):
    token = "cAnArY" + secrets.token_hex(12)
    weird = "s3cr+t/" + secrets.token_hex(8) + "=&%"  # characters a URL must percent-encode
    env = {"CANARY_TOKEN": token, "CANARY_WEIRD": weird}
    forms = {token, quote(token), token[: len(token) // 2 + 2], weird, quote(weird, safe=""), weird[:16],
             quote(weird[:16], safe="")}
    other_host = HTTPSource()
    try:
        seen_by_other = other_host.add("/landing", echo(200))
        routes = {
            "ok": json_body({"data": [{"id": 1, "v": "fine"}]}),
            "unauthorized": echo(401),
            "server-error": echo(500, "text/plain"),
            "not-json": echo(200, "text/html"),
            "straddle": raw_body(b"<p>" + b"x" * 37 + token.encode() + b"</p>", content_type="text/html"),
            "bad-json": raw_body(b'{"' + token.encode() + b'": [1, 2'),
            "wrong-path": json_body({token: [], "items": 1}),
            "timeout": hang(),
            "redirect": _redirect(seen_by_other.replace("127.0.0.1", "localhost")),
        }
        names = list(routes) + ["refused"]
        steps: list[tuple[str, list[str]]] = []
        for name in names:
            url = (source.add(f"/{name}", routes[name]) if name in routes
                   else f"http://127.0.0.1:{closed_port()}/refused")
            extra = ["--records-path", "data.items"] if name == "wrong-path" else []
            extra += ["--timeout", "1"] if name == "timeout" else []
            steps.append((f"add {name}", ["add", name, "--url", url, "--interval", "1h",
                                          "--header", "Authorization: Bearer ${CANARY_TOKEN}",
                                          "--header", "X-Other: ${CANARY_WEIRD}",
                                          "--param", "api_key=${CANARY_TOKEN}", "--param", "sig=${CANARY_WEIRD}",
                                          *extra]))
        steps += [("run-due", ["run-due", "-v", "--sync-timeout", "2"])]
        steps += [(f"sync {name}", ["sync", name, "--sync-timeout", "2"]) for name in names]
        steps += [("list", ["list"]), ("list --json", ["list", "--json"]), ("history", ["history"]),
                  ("history --json", ["history", "--json", "--limit", "100"])]
        steps += [(f"show {name}", ["show", name, "--json"]) for name in names[:3]]
        steps += [(f"show {name}", ["show", name]) for name in names]
        leaks = []
        reader = None
        for label, args in steps:
            if label == "run-due":
                # Hold a read transaction open through the syncs: no checkpoint can move
                # past it, so every frame written stays readable in the -wal file.
                reader = sqlite3.connect(db_path)
                reader.execute("BEGIN")
                reader.execute("SELECT COUNT(*) FROM integrations").fetchone()
                assert Path(f"{db_path}-wal").exists()
            elif label == "list" and reader is not None:
                reader.close()  # and from here on, checkpoints copy the frames back
                reader = None
            run = cli(*args, env=env, timeout=60)
            assert "Traceback" not in run.stderr, (label, run.stderr)
            leaks += _leaks(label, forms, {"stdout": run.stdout.encode(), "stderr": run.stderr.encode()})
            leaks += _leaks(label, forms, _database_files(db_path))
        assert leaks == []
        # The canary must have been exercised: sent on every request, failing in every way.
        sent = [r for r in source.requests if r[0] != "/landing"]
        assert all(r[2].get("Authorization") == f"Bearer {token}" for r in sent)
        statuses = {r["name"]: r["last_status"] for r in query(db_path, "SELECT name, last_status FROM integrations")}
        assert statuses["ok"] == "SUCCESS"
        assert {s for n, s in statuses.items() if n not in ("ok", "redirect")} == {"FAILED"}
        # A redirect to another host does not carry the secret header along.
        assert other_host.requests and all("Authorization" not in r[2] for r in other_host.requests)
        assert all(token not in r[2].get("X-Other", "") and weird not in r[2].get("X-Other", "")
                   for r in other_host.requests)
    finally:
        other_host.close()


def _redirect(location: str):
    def behave(handler):
        send(handler, 302, b"", headers={"Location": location})

    return behave


def _database_files(db_path: Path) -> dict[str, bytes]:
    files = {}
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = Path(f"{db_path}{suffix}")
        if path.exists():
            files[path.name] = path.read_bytes()
    return files


def _leaks(label: str, forms: set[str], blobs: dict[str, bytes]) -> list[tuple[str, str, str]]:
    found = []
    for where, blob in blobs.items():
        for form in forms:
            for encoded in {form.encode("utf-8"), form.encode("utf-16-le")}:
                if encoded in blob:
                    found.append((label, where, form))
    return found
