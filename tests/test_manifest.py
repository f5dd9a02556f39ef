"""Integrations as code (spec §17): ``export``, ``apply`` and ``diff``.

The plan is a pure function of two sides (``manifest.plan``), tested here without a
database; the commands are tested as real processes, on SQLite and (for the round trip)
on PostgreSQL too: export | apply - changes nothing, a file provisions an empty host, any
invalid entry changes nothing, operational state survives, --prune asks first."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from syncctl import manifest
from tests.helpers import HANG_GUARD, Result, dump, parse_z, query, run_on_terminal, run_syncctl
from tests.httpsources import json_body

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

HOST = "http://127.0.0.1:9"  # nothing listens: these integrations are never synced


# -- running syncctl against a database (a file or a postgresql:// URL) ---------------------


@pytest.fixture
def fresh_target(target: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A second, empty database on the same backend (a new host); a SQLite file that does
    not exist yet."""
    if target.startswith("postgresql://"):
        cluster = request.getfixturevalue("pg_cluster")
        return cluster.url(cluster.new_database())
    return str(tmp_path / "fresh" / "host.db")


def rows(target: str, *tables: str) -> dict[str, list]:
    """The rows of these tables, ordered by their first column, on either backend."""
    out: dict[str, list] = {}
    if target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(target) as conn:
            for table in tables:
                out[table] = [tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY 1")]
        return out
    conn = sqlite3.connect(target)
    try:
        for table in tables:
            out[table] = [tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY 1")]
    finally:
        conn.close()
    return out


STATE_TABLES = ("integrations", "notify_targets", "records", "sync_logs")


def ok(result: Result, what: str) -> Result:
    assert result.returncode == 0, f"{what} failed ({result.returncode}): {result.stderr}"
    return result


# Every option of add in use, each at a value other than its default.
FULL = (
    "add", "full", "--url", f"{HOST}/items?x=1", "--interval", "15m", "--table", "full_data",
    "-H", "Authorization: Bearer ${TOKEN}", "-H", "Accept: application/json",
    "-p", "tag=a", "-p", "tag=b", "-p", "key=${APIKEY}", "-p", "limit=100",
    "--records-path", "data.items", "--key", "uid", "--paginate", "cursor:meta.next:after", "--max-pages", "50",
    "--timeout", "12.5", "--rate-limit", "5/s", "--max-retries", "7", "--incremental", "updated_at:since",
    "--lookback", "10m", "--deletes", "mark", "--max-delete", "20", "--max-staleness", "2h",
    "--min-records", "3", "--schema", "freeze",
)  # fmt: skip
FULL_ENTRY = {
    "url": f"{HOST}/items?x=1", "interval": "15m", "table": "full_data",
    "headers": {"Authorization": "Bearer ${TOKEN}", "Accept": "application/json"},
    "params": {"tag": ["a", "b"], "key": "${APIKEY}", "limit": "100"},
    "records_path": "data.items", "key": "uid", "paginate": "cursor:meta.next:after", "max_pages": 50,
    "timeout": 12.5, "rate_limit": "5/s", "max_retries": 7, "incremental": "updated_at:since", "lookback": "10m",
    "deletes": "mark", "max_delete": 20.0, "max_staleness": "2h", "min_records": 3, "schema": "freeze",
}  # fmt: skip
SETUP = [
    FULL,
    ("add", "crm.eu-1", "--url", f"{HOST}/crm", "--interval", "manual", "--table", "off"),
    ("add", "plain", "--url", f"{HOST}/plain"),
    ("add", "hours", "--url", f"{HOST}/hours", "--interval", "2 hours", "--max-staleness", "3 hours"),
    ("notify", "add", "json://127.0.0.1:9/hook", "--events", "failing,recovered", "--after", "3"),
    ("notify", "add", "json://127.0.0.1:9/all?-t=${HOOK_TOKEN}"),
]
SECRETS = {
    "TOKEN": "tok-VALUE-never-written",
    "APIKEY": "key-VALUE-never-written",
    "HOOK_TOKEN": "hook-VALUE-x",
}


def set_up(cli: Callable[..., Result]) -> None:
    for command in SETUP:
        ok(cli(*command), " ".join(command[:3]))


# -- 1. the plan, a pure function ------------------------------------------------------------


def form(url: str, interval: str = "1h", **more: object) -> dict:
    return {"url": url, "interval": interval, **more}


def test_plan_creates_changes_and_counts_unchanged():
    database = {"same": form("http://a/1"), "moved": form("http://a/2"), "extra": form("http://a/3")}
    wanted = {"same": form("http://a/1"), "moved": form("http://a/2-new"), "new": form("http://a/4")}

    result = manifest.plan(database, wanted, prune=False)

    assert result.create == ["new"], "the one only in the file is created"
    assert result.change == [("moved", "url", "http://a/2", "http://a/2-new")], "one change, with old and new"
    assert result.unchanged == 1, "the one that matches is counted as unchanged"
    assert result.remove == [], "without prune nothing is removed"
    assert result.extra == ["extra"], "without prune the one not in the file is listed as kept"


def test_plan_with_prune_removes_what_the_file_does_not_name():
    database = {"keep": form("http://a/1"), "gone-b": form("http://a/2"), "gone-a": form("http://a/3")}

    result = manifest.plan(database, {"keep": form("http://a/1")}, prune=True)

    assert result.remove == ["gone-a", "gone-b"], "prune removes the ones not in the file, sorted"
    assert result.extra == [], "with prune nothing is left over as extra"
    assert result.unchanged == 1, "the one in both is unchanged"


def test_plan_of_identical_sides_is_empty():
    side = {
        "a": form("http://a/1", headers={"Authorization": "Bearer ${T}"}),
        "b": form("http://a/2", "manual"),
    }

    result = manifest.plan(side, json.loads(json.dumps(side)), prune=True,
                           db_targets={"json://h": {"events": ["failing"], "after": 1}},
                           file_targets={"json://h": {"events": ["failing"], "after": 1}})  # fmt: skip

    assert result.empty, f"nothing to do when both sides match: {result}"
    assert result.unchanged == 2, "both integrations unchanged"


def test_plan_names_a_key_set_on_one_side_only():
    result = manifest.plan({"a": form("http://a/1")}, {"a": form("http://a/1", headers={"X-Key": "${K}"})},
                           prune=False)  # fmt: skip

    assert result.change == [("a", "headers", None, {"X-Key": "${K}"})], "a new key: old is None"


def test_plan_orders_creations_changes_and_removals():
    database = {
        "zed": form("http://z"),
        "beta": form("http://b"),
        "yak": form("http://y"),
        "ant": form("http://a"),
    }
    wanted = {
        "zed": form("http://z2", "15m", timeout=5.0), "beta": form("http://b2", "2h"),
        "mole": form("http://m"), "cat": form("http://c"), "emu": form("http://e"),
    }  # fmt: skip

    result = manifest.plan(database, wanted, prune=True)

    assert result.create == ["cat", "emu", "mole"], "created in name order"
    assert [c[0] for c in result.change] == ["beta", "beta", "zed", "zed", "zed"], (
        "changes grouped by name, in order"
    )
    assert [c[1] for c in result.change if c[0] == "zed"] == ["url", "interval", "timeout"], (
        "an integration's changes in the file's key order (url, interval, table, then add's options)"
    )
    assert result.remove == ["ant", "yak"], "removed in name order"


def test_plan_for_notification_targets():
    db_targets = {
        "json://h/same": {"events": ["failing"], "after": 1},
        "json://h/tuned": {"events": ["failing", "disabled"], "after": 1},
        "json://h/gone": {"events": ["failing"], "after": 1},
    }
    file_targets = {
        "json://h/same": {"events": ["failing"], "after": 1},
        "json://h/tuned": {"events": ["failing", "disabled"], "after": 3},
        "json://h/new": {"events": ["stale"], "after": 1},
    }

    kept = manifest.plan({}, {}, prune=False, db_targets=db_targets, file_targets=file_targets)
    pruned = manifest.plan({}, {}, prune=True, db_targets=db_targets, file_targets=file_targets)

    assert kept.notify_create == ["json://h/new"], "a target only in the file is created"
    assert kept.notify_change == [("json://h/tuned", "after", 1, 3)], (
        "a target's changed setting, old and new"
    )
    assert kept.notify_remove == [], "without prune no target is removed"
    assert pruned.notify_remove == ["json://h/gone"], "with prune a target not in the file is removed"
    assert not kept.empty, "target changes alone make the plan non-empty"


def test_plan_lines_and_json():
    database = {"a": form("http://a/1"), "b": form("http://a/2", headers={"Authorization": "Bearer ${OLD}"})}
    wanted = {"b": form("http://a/2", headers={"Authorization": "Bearer ${NEW}"}), "c": form("http://a/3")}
    result = manifest.plan(
        database, wanted, prune=True, file_targets={"json://h": {"events": ["failing"], "after": 1}}
    )

    lines = result.lines()

    assert lines[0] == "+ c", f"a creation is '+ NAME': {lines}"
    assert (
        lines[1] == '~ b: headers {"Authorization": "Bearer ${OLD}"} → {"Authorization": "Bearer ${NEW}"}'
    ), f"a change is '~ NAME: key old → new', the secret references as written: {lines}"
    assert lines[2] == "- a", f"a removal is '- NAME': {lines}"
    assert lines[3] == "+ notify json://h", f"a target created: {lines}"
    assert lines[4] == "0 unchanged", f"then the count of unchanged ones: {lines}"
    assert result.to_json() == {
        "create": ["c"],
        "change": [
            {
                "name": "b",
                "key": "headers",
                "old": {"Authorization": "Bearer ${OLD}"},
                "new": {"Authorization": "Bearer ${NEW}"},
            }
        ],
        "remove": ["a"],
        "unchanged": 0,
        "notify": {"create": ["json://h"], "change": [], "remove": []},
    }, "the JSON form of the plan"


def test_a_file_spelling_out_the_defaults_matches_one_that_leaves_them_out():
    short = manifest.parse('[integrations.w]\nurl = "http://a/w"\n', "short")
    spelled = manifest.parse(
        '[integrations.w]\nurl = "http://a/w"\ninterval = "1h"\ntable = "w"\nkey = "id"\npaginate = "none"\n'
        'max_pages = 1000\ntimeout = 30\nmax_retries = 3\ndeletes = "keep"\nmax_delete = 50\nmin_records = 0\n'
        'schema = "evolve"\n', "spelled")  # fmt: skip

    result = manifest.plan(
        {"w": short.integrations["w"].form()}, {"w": spelled.integrations["w"].form()}, prune=False
    )

    assert result.change == [], "defaults written out are no change"


# -- 2. export, and the round trip -----------------------------------------------------------


def test_round_trip_changes_nothing_and_provisions_an_empty_host(tcli, target, fresh_target, db_path):
    set_up(tcli)
    exported = ok(tcli("export", env=SECRETS), "export").stdout
    before = rows(target, *STATE_TABLES)

    applied = tcli("apply", "-", input=exported, env=SECRETS)
    after = rows(target, *STATE_TABLES)
    diffed = tcli("diff", "-", input=exported)
    again = ok(tcli("export", env=SECRETS), "second export").stdout
    provisioned = run_syncctl(fresh_target, "apply", "-", input=exported)
    from_fresh = ok(run_syncctl(fresh_target, "export"), "export of the provisioned host").stdout

    assert applied.returncode == 0, f"export | apply - succeeds: {applied.stderr}"
    assert applied.stdout == "4 unchanged\n", (
        f"export | apply - reports nothing but the unchanged count: {applied.stdout!r}"
    )
    assert after == before, "export | apply - changes no row"
    assert diffed.returncode == 0, f"diff of the export exits 0 (matches): {diffed.stdout}{diffed.stderr}"
    assert again == exported, "a second export is byte-identical"
    assert provisioned.returncode == 0, f"apply provisions an empty host: {provisioned.stderr}"
    assert from_fresh == exported, "the provisioned host exports the same file"
    for secret in SECRETS.values():
        assert secret not in exported, "secrets appear only as ${VAR} references"


def test_export_writes_add_options_leaving_defaults_out(cli):
    set_up(cli)

    text = ok(cli("export"), "export").stdout
    parsed = tomllib.loads(text)
    integrations = parsed["integrations"]

    assert list(integrations) == ["crm.eu-1", "full", "hours", "plain"], "integrations sorted by name"
    assert integrations["full"] == FULL_ENTRY, "every option under add's name with _, as typed"
    assert integrations["crm.eu-1"] == {"url": f"{HOST}/crm", "interval": "manual", "table": "off"}, (
        "a manual interval and --table off are written; the default table name is not"
    )
    assert integrations["hours"] == {"url": f"{HOST}/hours", "interval": "2h", "max_staleness": "3h"}, (
        "durations written as a duration"
    )
    assert integrations["plain"] == {"url": f"{HOST}/plain"}, (
        "an integration at every default is its url alone"
    )
    assert parsed["notify"] == [
        {"url": "json://127.0.0.1:9/all?-t=${HOOK_TOKEN}"},
        {"url": "json://127.0.0.1:9/hook", "events": ["failing", "recovered"], "after": 3},
    ], "targets by URL; default events and after left out"


def test_export_writes_notification_targets_as_notify_tables(cli):
    ok(cli("add", "plain", "--url", f"{HOST}/plain"), "add")
    ok(cli("notify", "add", "json://127.0.0.1:9/hook"), "notify add")

    text = ok(cli("export"), "export").stdout

    assert "[[notify]]" in text, f"spec §17: targets are [[notify]] entries:\n{text}"


def test_export_of_named_integrations_and_to_a_file(cli, tmp_path):
    set_up(cli)
    out = tmp_path / "out.toml"

    named = ok(cli("export", "plain", "hours"), "export NAME…").stdout
    written = cli("export", "-o", str(out))
    unknown = cli("export", "plian")

    assert list(tomllib.loads(named)) == ["integrations"], "exporting named integrations leaves targets out"
    assert list(tomllib.loads(named)["integrations"]) == ["hours", "plain"], "only the named ones, sorted"
    assert written.returncode == 0 and written.stdout == "", (
        f"-o writes the file, not stdout: {written.stderr}"
    )
    assert out.read_text() == ok(cli("export"), "export").stdout, "-o FILE holds what stdout would"
    assert unknown.returncode == 2, "an unknown name exits 2"
    assert "plain" in unknown.stderr, f"and suggests the closest name: {unknown.stderr}"


def test_export_to_a_folder_is_refused_and_leaves_nothing_behind(cli, tmp_path):
    ok(cli("add", "one", "--url", f"{HOST}/one"), "add")
    (tmp_path / "out").mkdir()

    result = cli("export", "-o", str(tmp_path / "out"))

    assert result.returncode == 2 and "cannot write" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("data")) == ["out"]


@pytest.mark.parametrize("args", [("export", "-o", ""), ("apply", ""), ("diff", "")])
def test_an_empty_path_is_refused_in_one_line(cli, db_path, args):
    ok(cli("add", "one", "--url", f"{HOST}/one"), "add")
    before = dump(db_path)

    result = cli(*args)

    assert result.returncode == 2, f"{args}: exit 2, not {result.returncode}: {result.stderr}"
    assert "''" in result.stderr and "no path" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "internal error" not in result.stderr
    assert dump(db_path) == before


def test_round_trip_with_duplicate_notification_targets(cli, db_path):
    """notify add accepts one URL twice (spec §17: the round trip holds on any database)."""
    ok(cli("add", "plain", "--url", f"{HOST}/plain"), "add")
    ok(cli("notify", "add", "json://127.0.0.1:9/hook"), "notify add")
    ok(cli("notify", "add", "json://127.0.0.1:9/hook"), "notify add again")
    before = dump(db_path)

    applied = cli("apply", "-", input=ok(cli("export"), "export").stdout)

    assert applied.returncode == 0, f"export | apply - succeeds on this database too: {applied.stderr}"
    assert dump(db_path) == before, "and changes nothing"


def test_apply_creates_the_database_file_owner_only(cli, db_path, tmp_path):
    manifest_file = tmp_path / "integrations.toml"
    manifest_file.write_text(f'[integrations.plain]\nurl = "{HOST}/plain"\n')

    result = cli("apply", str(manifest_file))

    assert result.returncode == 0, f"apply on a missing database creates it: {result.stderr}"
    assert result.stdout == "+ plain\n0 unchanged\n", f"the plan carried out: {result.stdout!r}"
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600, "the new database is readable by its owner only"


# -- 3. apply: all or nothing ----------------------------------------------------------------


BASE = ("add", "one", "--url", f"{HOST}/one", "--interval", "15m")
GOOD = f'[integrations.one]\nurl = "{HOST}/one-changed"\ninterval = "30m"\n\n[integrations.new]\nurl = "{HOST}/new"\n'
BAD = {
    "toml-syntax": ('[integrations.zzz]\nurl = "http://a/z"\ninterval = \n', "line 10"),
    "unknown-key": ('[integrations.zzz]\nurl = "http://a/z"\nintervall = "1h"\n', "did you mean 'interval'"),
    "unknown-notify-key": ('[[notify]]\nurl = "json://h/x"\nevnts = ["failing"]\n', "did you mean 'events'"),
    "bad-interval": ('[integrations.zzz]\nurl = "http://a/z"\ninterval = "2x"\n', "interval"),
    "too-short-interval": ('[integrations.zzz]\nurl = "http://a/z"\ninterval = "30s"\n', "interval"),
    "bad-paginate": ('[integrations.zzz]\nurl = "http://a/z"\npaginate = "bogus"\n', "'bogus'"),
    "bad-url": ('[integrations.zzz]\nurl = "ftp://a/z"\n', "ftp://a/z"),
    "bad-name": ('[integrations.Bad_Name]\nurl = "http://a/z"\n', "Bad_Name"),
    "literal-secret": ('[integrations.zzz]\nurl = "http://a/z"\nheaders = {Authorization = "Bearer abc"}\n',
                       "${"),
    "table-clash": ('[integrations.zzz]\nurl = "http://a/z"\ntable = "new"\n', "new"),
    "bad-events": ('[[notify]]\nurl = "json://h/x"\nevents = ["bogus"]\n', "bogus"),
    "header-name-colon": ('[integrations.zzz]\nurl = "http://a/z"\nheaders = {"X-Trace:Id" = "abc"}\n', "X-Trace:Id"),
    "param-name-equals": ('[integrations.zzz]\nurl = "http://a/z"\nparams = {"f[a=b]" = "1"}\n', "f[a=b]"),
    "wrong-type": ('[integrations.zzz]\nurl = "http://a/z"\ntimeout = "soon"\n', "not text"),
    "nested-too-deeply": ('[integrations.zzz]\nurl = "http://a/z"\nx = ' + "[" * 2000 + "]" * 2000 + "\n",
                          "nested too deeply"),
    "body-too-deep": ('[integrations.zzz]\nurl = "http://a/z"\nbody = \'\'\'' + "[" * 5000 + "]" * 5000 + "\'\'\'\n",
                      "nested more than 64 levels"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_apply_changes_nothing_when_any_entry_is_invalid(cli, db_path, tmp_path, case):
    ok(cli(*BASE), "add")
    ok(cli("notify", "add", "json://127.0.0.1:9/hook"), "notify add")
    bad, named = BAD[case]
    manifest_file = tmp_path / "integrations.toml"
    manifest_file.write_text(GOOD + "\n" + bad)
    before = dump(db_path)

    result = cli("apply", str(manifest_file))

    assert result.returncode == 2, (
        f"an invalid entry exits 2: {result.returncode} {result.stdout}{result.stderr}"
    )
    assert dump(db_path) == before, "nothing was changed, not even the valid entries"
    assert len(result.stderr.strip().splitlines()) == 1, f"one line on stderr: {result.stderr!r}"
    assert named in result.stderr, f"the message names {named!r}: {result.stderr}"
    assert "Traceback" not in result.stderr, "never a traceback"


def test_apply_refuses_a_literal_secret_without_storing_it(cli, db_path, tmp_path):
    manifest_file = tmp_path / "integrations.toml"
    manifest_file.write_text(
        '[integrations.zzz]\nurl = "http://a/z"\nheaders = {Authorization = "Bearer abcSECRET"}\n'
    )
    ok(cli(*BASE), "add")

    result = cli("apply", str(manifest_file))

    assert result.returncode == 2, (
        f"a literal credential in a header is refused like add refuses it: {result.stdout}"
    )
    assert "abcSECRET" not in dump(db_path), "the literal secret never reaches the database"
    assert "zzz" not in [r["name"] for r in query(db_path, "SELECT name FROM integrations")], (
        "nothing was created"
    )


def test_apply_of_an_invalid_file_does_not_create_the_database(cli, db_path, tmp_path):
    manifest_file = tmp_path / "integrations.toml"
    manifest_file.write_text('[integrations.zzz]\nurl = "ftp://a/z"\n')

    result = cli("apply", str(manifest_file))

    assert result.returncode == 2, f"an invalid file exits 2: {result.stderr}"
    assert not db_path.exists(), "no database is created for a file that is refused"


def test_dry_run_prints_the_plan_and_changes_nothing(cli, db_path, tmp_path):
    ok(cli(*BASE), "add")
    manifest_file = tmp_path / "integrations.toml"
    manifest_file.write_text(GOOD)
    before = dump(db_path)

    result = cli("apply", str(manifest_file), "--dry-run")

    assert result.returncode == 0, f"a dry run succeeds: {result.stderr}"
    assert result.stdout.splitlines()[:4] == [
        "+ new",
        f"~ one: url {HOST}/one → {HOST}/one-changed",
        "~ one: interval 15m → 30m",
        "0 unchanged",
    ], f"the plan is printed: {result.stdout}"
    assert dump(db_path) == before, "a dry run changes nothing"


def test_dry_run_on_a_missing_database_creates_nothing(cli, db_path, tmp_path):
    manifest_file = tmp_path / "integrations.toml"
    manifest_file.write_text(GOOD)

    result = cli("apply", str(manifest_file), "--dry-run")

    assert result.returncode == 0, f"a dry run succeeds: {result.stderr}"
    assert "+ one" in result.stdout.splitlines(), f"the plan is printed: {result.stdout}"
    assert not db_path.exists(), "spec §17: --dry-run changes nothing, so it creates no database"


# -- 4. apply: operational state -------------------------------------------------------------


def test_an_interval_change_reschedules_and_keeps_operational_state(cli, db_path, source, tmp_path):
    url = source.add(
        "/items", json_body([{"id": 1, "updated_at": "2026-01-01"}, {"id": 2, "updated_at": "2026-01-02"}])
    )
    ok(cli("add", "inc", "--url", url, "--interval", "15m", "--incremental", "updated_at:since"), "add")
    ok(cli("add", "down", "--url", url, "--interval", "15m", "--table", "off"), "add")
    ok(cli("sync", "inc"), "sync")
    ok(cli("pause", "inc"), "pause")
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("UPDATE integrations SET consecutive_failures = 2 WHERE name = 'inc'")
        conn.execute("UPDATE integrations SET sync_enabled = 0, disabled_reason = 'failures',"
                     " consecutive_failures = 4 WHERE name = 'down'")  # fmt: skip
    conn.close()
    before = {r["name"]: r for r in query(db_path, "SELECT * FROM integrations")}
    logs_before = query(db_path, "SELECT * FROM sync_logs ORDER BY id")
    records_before = query(db_path, "SELECT * FROM records ORDER BY key")
    manifest_file = tmp_path / "integrations.toml"
    manifest_file.write_text(
        f'[integrations.inc]\nurl = "{url}"\ninterval = "30m"\nincremental = "updated_at:since"\n\n'
        f'[integrations.down]\nurl = "{url}"\ninterval = "15m"\ntable = "off"\ntimeout = 5\n'
    )

    result = cli("apply", str(manifest_file))
    after = {r["name"]: r for r in query(db_path, "SELECT * FROM integrations")}

    assert result.returncode == 0, f"apply succeeds: {result.stderr}"
    assert result.stdout.splitlines() == [
        "~ down: timeout 30.0 → 5.0",
        "~ inc: interval 15m → 30m",
        "0 unchanged",
    ], f"the plan carried out: {result.stdout}"
    inc, down = after["inc"], after["down"]
    last = parse_z(before["inc"]["last_sync_at"])
    expected_next = (last + timedelta(minutes=30)).replace(second=0, microsecond=0)
    assert inc["sync_interval"] == 1800, "the new interval is stored"
    assert parse_z(inc["next_sync_at"]) == expected_next, (
        "rescheduled as set-interval does: one new interval after the last sync, to the minute"
    )
    assert (inc["sync_enabled"], inc["disabled_reason"]) == (0, "paused"), "a paused integration stays paused"
    assert inc["consecutive_failures"] == 2, "its failure count is kept"
    assert inc["cursor"] == before["inc"]["cursor"] and inc["cursor"] is not None, (
        "its incremental cursor is kept"
    )
    assert (down["sync_enabled"], down["disabled_reason"]) == (0, "failures"), "a disabled one stays disabled"
    assert down["consecutive_failures"] == 4, "and keeps its failure count"
    assert down["next_sync_at"] == before["down"]["next_sync_at"], (
        "a change other than the interval does not reschedule"
    )
    assert query(db_path, "SELECT * FROM sync_logs ORDER BY id") == logs_before, "logs are kept"
    assert query(db_path, "SELECT * FROM records ORDER BY key") == records_before, "records are kept"


# -- 5. --prune ------------------------------------------------------------------------------


def synced_pair(cli, source, tmp_path) -> Path:  # noqa: ANN001
    url = source.add("/items", json_body([{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]))
    ok(cli("add", "keep", "--url", url), "add keep")
    ok(cli("add", "gone", "--url", url), "add gone")
    ok(cli("notify", "add", "json://127.0.0.1:9/old-hook"), "notify add")
    ok(cli("sync", "--all"), "sync")
    manifest_file = tmp_path / "integrations.toml"
    manifest_file.write_text(f'[integrations.keep]\nurl = "{url}"\n')
    return manifest_file


def table_names(db_path: Path) -> list[str]:
    return [
        r["name"] for r in query(db_path, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    ]


def test_prune_refuses_without_yes_off_a_terminal(cli, db_path, source, tmp_path):
    manifest_file = synced_pair(cli, source, tmp_path)
    before = dump(db_path)

    from_file = cli("apply", str(manifest_file), "--prune")
    from_stdin = cli("apply", "-", "--prune", input=manifest_file.read_text())

    assert from_file.returncode == 2, f"--prune without --yes off a terminal exits 2: {from_file.stdout}"
    assert "--yes" in from_file.stderr, f"naming --yes: {from_file.stderr}"
    assert from_stdin.returncode == 2, f"the file on stdin cannot answer either: {from_stdin.stdout}"
    assert dump(db_path) == before, "nothing was removed (or changed)"


def test_prune_refuses_to_remove_only_a_notify_target_without_yes_off_a_terminal(cli, db_path, source, tmp_path):
    manifest_file = synced_pair(cli, source, tmp_path)
    manifest_file.write_text(cli("export").stdout.split("[[notify]]")[0])  # both integrations, no target
    before = dump(db_path)

    refused = cli("apply", str(manifest_file), "--prune")

    assert refused.returncode == 2, f"removing a target needs --yes too: {refused.stdout}"
    assert "json://127.0.0.1:9/old-hook" in refused.stderr and "--yes" in refused.stderr, refused.stderr
    assert dump(db_path) == before, "the target was not removed"


def test_prune_on_a_terminal_asks_and_no_keeps_everything(cli, db_path, source, tmp_path):
    manifest_file = synced_pair(cli, source, tmp_path)
    before = dump(db_path)

    code, output = run_on_terminal(db_path, "apply", str(manifest_file), "--prune", answer="n")

    assert "gone" in output, f"the question names what would be removed: {output}"
    assert code != 0, f"answering no is not a success: {output}"
    assert dump(db_path) == before, "answering no removes nothing"


def test_prune_with_yes_removes_integrations_their_data_and_targets(cli, db_path, source, tmp_path):
    manifest_file = synced_pair(cli, source, tmp_path)
    gone_id = query(db_path, "SELECT id FROM integrations WHERE name = 'gone'")[0]["id"]

    dry = cli("apply", str(manifest_file), "--prune", "--dry-run")
    dry_names = [r["name"] for r in query(db_path, "SELECT name FROM integrations ORDER BY name")]
    result = cli("apply", str(manifest_file), "--prune", "--yes")

    assert dry.returncode == 0, f"a dry run of --prune needs no --yes: {dry.stderr}"
    assert "- gone" in dry.stdout.splitlines(), f"the dry run shows the removal: {dry.stdout}"
    assert dry_names == ["gone", "keep"], "the dry run removed nothing"
    assert result.returncode == 0, f"--prune --yes succeeds: {result.stderr}"
    assert result.stdout.splitlines() == ["- gone", "- notify json://127.0.0.1:9/old-hook", "1 unchanged"], (
        f"the plan carried out: {result.stdout}"
    )
    assert [r["name"] for r in query(db_path, "SELECT name FROM integrations")] == ["keep"], "gone is removed"
    assert (
        query(db_path, "SELECT count(*) AS n FROM records WHERE integration_id = ?", (gone_id,))[0]["n"] == 0
    ), "its records are removed"
    assert (
        query(db_path, "SELECT count(*) AS n FROM sync_logs WHERE integration_id = ?", (gone_id,))[0]["n"]
        == 0
    ), "its logs are removed"
    assert "gone" not in table_names(db_path), "its data table is dropped"
    assert "keep" in table_names(db_path), "the kept one's data table stays"
    assert query(db_path, "SELECT count(*) AS n FROM records WHERE key IN ('1', '2')")[0]["n"] == 2, (
        "the kept one's records stay"
    )
    assert query(db_path, "SELECT url FROM notify_targets") == [], "the target not in the file is removed"


def test_apply_without_prune_keeps_what_the_file_does_not_name(cli, db_path, source, tmp_path):
    manifest_file = synced_pair(cli, source, tmp_path)

    result = cli("apply", str(manifest_file))

    assert result.returncode == 0, f"apply without --prune succeeds: {result.stderr}"
    assert [r["name"] for r in query(db_path, "SELECT name FROM integrations ORDER BY name")] == [
        "gone",
        "keep",
    ], "an integration not in the file is kept without --prune"
    assert [r["url"] for r in query(db_path, "SELECT url FROM notify_targets")] == [
        "json://127.0.0.1:9/old-hook"
    ], "a target not in the file is kept without --prune"


# -- 5b. data tables: the state the file asks for, reached whatever the order ---------------


def _owners(target: str) -> list[tuple]:
    sql = "SELECT name, data_table FROM integrations ORDER BY name"
    if target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(target) as conn:
            return [tuple(r) for r in conn.execute(sql)]
    with sqlite3.connect(target) as conn:
        return [tuple(r) for r in conn.execute(sql)]


def test_apply_renames_an_integration_and_swaps_tables_in_one_go(tcli, target, source, tmp_path):
    urls = {n: source.add(f"/{n}", json_body([{"id": 1, "who": n}])) for n in ("eu", "p", "q")}
    ok(tcli("add", "weather-eu", "--url", urls["eu"]), "add weather-eu")  # table weather_eu
    ok(tcli("add", "p", "--url", urls["p"], "--table", "tp"), "add p")
    ok(tcli("add", "q", "--url", urls["q"], "--table", "tq"), "add q")
    ok(tcli("sync", "--all"), "sync")
    wanted = tmp_path / "integrations.toml"
    wanted.write_text(
        f'[integrations.weather_eu]\nurl = "{urls["eu"]}"\n\n'  # renamed: takes the table the old name frees
        f'[integrations.p]\nurl = "{urls["p"]}"\ntable = "tq"\n\n'
        f'[integrations.q]\nurl = "{urls["q"]}"\ntable = "tp"\n'
    )

    dry = tcli("apply", str(wanted), "--prune", "--dry-run")
    applied = tcli("apply", str(wanted), "--prune", "--yes")

    assert dry.returncode == 0 and applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines()[:3] == ["+ weather_eu", "~ p: table tp → tq", "~ q: table tq → tp"], applied.stdout
    assert _owners(target) == [("p", "tq"), ("q", "tp"), ("weather_eu", "weather_eu")]
    swapped = rows(target, "tq", "tp")
    assert [r[-1] for r in swapped["tq"]] == ["p"] and [r[-1] for r in swapped["tp"]] == ["q"], swapped
    assert tcli("diff", str(wanted), "--prune").returncode == 0, "in step afterwards"
    assert ok(tcli("sync", "--all"), "sync after").returncode == 0


def test_a_table_two_entries_want_is_refused_by_every_command_and_creates_nothing(cli, db_path, tmp_path):
    twice = tmp_path / "twice.toml"
    twice.write_text(f'[integrations.a-b]\nurl = "{HOST}/x"\n\n[integrations.a_b]\nurl = "{HOST}/y"\n')

    outcomes = [cli("apply", str(twice), "--dry-run"), cli("apply", str(twice))]
    assert not db_path.exists(), "a refused apply creates no database: a mistyped cron path stays loud"
    ok(cli("add", "other", "--url", f"{HOST}/z"), "add")
    outcomes.append(cli("diff", str(twice)))

    for result in outcomes:
        assert result.returncode == 2, (result.stdout, result.stderr)
        line = one_line_of(result)
        assert "integrations.a_b: table 'a_b' is also the table of integrations.a-b" in line, line


def test_an_entry_taking_the_table_of_an_integration_kept_outside_the_file_is_refused(cli, db_path, tmp_path):
    ok(cli("add", "old", "--url", f"{HOST}/x", "--table", "shared"), "add")
    taking = tmp_path / "taking.toml"
    taking.write_text(f'[integrations.new]\nurl = "{HOST}/y"\ntable = "shared"\n')
    before = dump(db_path)

    for args in (("diff", str(taking)), ("apply", str(taking), "--dry-run"), ("apply", str(taking))):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        line = one_line_of(result)
        assert "table 'shared' is the data table of old, which the file does not list" in line and "--prune" in line
    assert dump(db_path) == before
    assert ok(cli("apply", str(taking), "--prune", "--yes"), "with --prune").stdout.splitlines()[:2] == ["+ new", "- old"]


def test_an_entry_taking_a_table_someone_else_made_is_refused_by_diff_and_dry_run(cli, db_path, tmp_path):
    ok(cli("add", "one", "--url", f"{HOST}/x"), "add")
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE reports (id INTEGER)")  # a dashboard author's own table
    taking = tmp_path / "taking.toml"
    taking.write_text(f'[integrations.reports]\nurl = "{HOST}/y"\n')

    for args in (("diff", str(taking)), ("apply", str(taking), "--dry-run")):
        result = cli(*args)
        assert result.returncode == 2 and "a table, view or index named 'reports' already exists" in one_line_of(result)


def test_applies_at_once_both_succeed_and_create_each_integration_once(target, tmp_path):
    from tests.helpers import spawn_syncctl

    ok(run_syncctl(target, "add", "seed", "--url", f"{HOST}/seed"), "add")
    many = tmp_path / "many.toml"
    many.write_text("".join(f'[integrations.n{i}]\nurl = "{HOST}/{i}"\n\n' for i in range(300)))

    racing = [spawn_syncctl(target, "apply", str(many)) for _ in range(2)]
    outcomes = [(p.wait(HANG_GUARD), p.stdout.read(), p.stderr.read()) for p in racing]

    assert [code for code, _, _ in outcomes] == [0, 0], outcomes
    created = sorted(out.count("\n+ ") + out.startswith("+ ") for _, out, _ in outcomes)
    assert created == [0, 300], "one of them created all 300, the other found them made"
    assert len(_owners(target)) == 301


def test_apply_from_stdin_reads_utf8_whatever_the_locale_and_names_other_bytes(cli, db_path):
    import subprocess

    from tests.helpers import syncctl_command

    ok(cli("add", "one", "--url", f"{HOST}/x"), "add")
    before = dump(db_path)
    argv, env = syncctl_command(db_path, ("apply", "-", "--dry-run"), {"PYTHONIOENCODING": "ascii", "LC_ALL": "C"})
    good = f'\ufeff# café\n[integrations.one]\nurl = "{HOST}/x"\n'  # with the BOM some editors write
    accepted = subprocess.run(argv, env=env, input=good.encode(), capture_output=True, timeout=HANG_GUARD)
    argv, env = syncctl_command(db_path, ("apply", "-"), {"PYTHONIOENCODING": "utf-8"})
    refused = subprocess.run(argv, env=env, input=b"# \xff\n", capture_output=True, timeout=HANG_GUARD)

    assert accepted.returncode == 0 and b"1 unchanged" in accepted.stdout, accepted.stderr
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.decode().strip() == (
        "syncctl: cannot read stdin: not UTF-8 (byte 2 is 0xff) (hint: TOML files are UTF-8: save it as UTF-8)")
    assert dump(db_path) == before


def one_line_of(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# -- 6. diff ---------------------------------------------------------------------------------


def test_diff_exit_codes(cli, db_path, tmp_path):
    ok(cli(*BASE), "add")
    ok(cli("add", "extra", "--url", f"{HOST}/extra"), "add")
    matching, changed, invalid = tmp_path / "m.toml", tmp_path / "c.toml", tmp_path / "i.toml"
    matching.write_text(f'[integrations.one]\nurl = "{HOST}/one"\ninterval = "15m"\n'
                        f'[integrations.extra]\nurl = "{HOST}/extra"\n')  # fmt: skip
    changed.write_text(f'[integrations.one]\nurl = "{HOST}/one"\ninterval = "30m"\n')
    invalid.write_text(f'[integrations.one]\nurl = "{HOST}/one"\nintervl = "30m"\n')
    before = dump(db_path)

    same = cli("diff", str(matching))
    differs = cli("diff", str(changed))
    bad = cli("diff", str(invalid))
    extra_pruned = cli("diff", str(matching), "--prune")
    without_extra = tmp_path / "w.toml"
    without_extra.write_text(f'[integrations.one]\nurl = "{HOST}/one"\ninterval = "15m"\n')
    prune_counts = cli("diff", str(without_extra), "--prune")
    missing = run_syncctl(str(tmp_path / "nowhere" / "x.db"), "diff", str(matching))

    assert same.returncode == 0, f"diff exits 0 when the database matches: {same.stdout}{same.stderr}"
    assert differs.returncode == 1, f"diff exits 1 when it does not: {differs.stdout}{differs.stderr}"
    assert "~ one: interval 15m → 30m" in differs.stdout.splitlines(), (
        f"and prints the plan: {differs.stdout}"
    )
    assert bad.returncode == 2, f"diff exits 2 for an invalid file: {bad.stderr}"
    assert "did you mean 'interval'" in bad.stderr, f"naming the closest key: {bad.stderr}"
    assert extra_pruned.returncode == 0, f"--prune with nothing extra still matches: {extra_pruned.stdout}"
    assert prune_counts.returncode == 1, (
        f"with --prune an integration not in the file is a difference: {prune_counts.stdout}"
    )
    assert missing.returncode == 3, f"diff exits 3 when the database does not exist: {missing.stderr}"
    assert not (tmp_path / "nowhere").exists(), "diff creates no database"
    assert dump(db_path) == before, "diff changes nothing"


# -- 7. --json -------------------------------------------------------------------------------


def test_apply_json_shape(cli, db_path, tmp_path):
    ok(cli(*BASE), "add")
    ok(cli("add", "same", "--url", f"{HOST}/same"), "add")
    ok(cli("add", "gone", "--url", f"{HOST}/gone"), "add")
    manifest_file = tmp_path / "integrations.toml"
    manifest_file.write_text(
        GOOD
        + f'\n[integrations.same]\nurl = "{HOST}/same"\n\n[[notify]]\nurl = "json://127.0.0.1:9/hook"\nafter = 2\n'
    )
    before = dump(db_path)

    dry = cli("apply", str(manifest_file), "--prune", "--dry-run", "--json")
    unchanged_by_dry = dump(db_path) == before
    done = cli("apply", str(manifest_file), "--prune", "--yes", "--json")
    expected = {
        "create": ["new"],
        "change": [
            {"name": "one", "key": "url", "old": f"{HOST}/one", "new": f"{HOST}/one-changed"},
            {"name": "one", "key": "interval", "old": "15m", "new": "30m"},
        ],
        "remove": ["gone"],
        "unchanged": 1,
        "notify": {"create": ["json://127.0.0.1:9/hook"], "change": [], "remove": []},
    }

    assert dry.returncode == 0, f"apply --dry-run --json succeeds: {dry.stderr}"
    assert dry.json() == {**expected, "dry_run": True}, f"the plan as JSON, marked as a dry run: {dry.stdout}"
    assert unchanged_by_dry, "the dry run changed nothing"
    assert done.returncode == 0, f"apply --json succeeds: {done.stderr}"
    assert done.json() == {**expected, "dry_run": False}, f"the plan carried out, as JSON: {done.stdout}"
    assert [r["name"] for r in query(db_path, "SELECT name FROM integrations ORDER BY name")] == [
        "new", "one", "same"], "the JSON plan was carried out"  # fmt: skip


def test_export_leaves_out_the_default_client_auth(cli):
    oauth = ("--auth", "oauth2", "--token-url", "https://id.example.com/t", "--client-id", "c",
             "--client-secret", "${CS}")  # fmt: skip
    ok(cli("add", "basic-default", "--url", f"{HOST}/a", *oauth), "add")
    ok(cli("add", "in-body", "--url", f"{HOST}/b", *oauth, "--client-auth", "body"), "add")

    exported = tomllib.loads(ok(cli("export"), "export").stdout)["integrations"]

    assert "client_auth" not in exported["basic-default"] and exported["in-body"]["client_auth"] == "body"


def test_round_trip_with_the_reach_options_auth_bodies_and_body_params(cli, tmp_path):
    """Spec §17's round trip with §16's options in use: Basic, OAuth2 (every option), a
    body from a file holding a ${VAR}, body:PATH in the pagination and the cursor."""
    body = tmp_path / "query.json"
    body.write_text('{"query": "{ items }", "variables": {"token": "${TK}"}}')
    base = "http://127.0.0.1:9"
    assert cli("add", "gql", "--url", f"{base}/graphql", "--body", f"@{body}",
               "--paginate", "cursor:data.items.pageInfo.endCursor:body:variables.after",
               "--incremental", "ts:body:variables.since").returncode == 0
    assert cli("add", "oauth", "--url", f"{base}/data", "--auth", "oauth2", "--token-url", f"{base}/token",
               "--client-id", "cid", "--client-secret", "${CS}", "--scope", "read write", "--scope", "admin",
               "--token-param", "audience=api", "--token-param", "k=${K}", "--client-auth", "body",
               "--refresh-token", "${RT}").returncode == 0
    assert cli("add", "basic", "--url", f"{base}/data", "--auth", "basic:${U}:${P}").returncode == 0
    exported = cli("export").stdout

    applied = cli("apply", "-", input=exported)

    assert (applied.returncode, applied.stdout) == (0, "3 unchanged\n"), applied.stderr
    assert cli("export").stdout == exported, "a second export is the same text"
    entries = tomllib.loads(exported)["integrations"]
    assert entries["oauth"]["scopes"] == ["read", "write", "admin"]
    assert entries["oauth"]["token_params"] == {"audience": "api", "k": "${K}"}
    assert "method" not in entries["gql"] and "${TK}" in entries["gql"]["body"], "POST: implied by the body"
    assert entries["basic"]["auth"] == "basic:${U}:${P}", "secrets only as their references"
