"""Faithful and frugal syncs (spec §11), through the CLI against sources on 127.0.0.1:
conditional requests, incremental cursors, deletions, check, records, warnings, 4xx
bodies, and the migration of a database written by the current release."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

from syncctl.store import schema_steps
from tests.helpers import query, stored
from tests.httpsources import dynamic, json_body, send, send_json


def history(cli, name: str) -> list[dict]:  # noqa: ANN001
    result = cli("history", name, "--json")
    assert result.returncode == 0, result.stderr
    return result.json()


# -- conditional requests ---------------------------------------------------------------------


def test_a_304_is_a_success_that_rewrites_nothing(cli, db_path, source):
    def etagged(handler):  # noqa: ANN001, ANN202
        if handler.headers.get("If-None-Match") == '"v1"':
            send(handler, 304, b"", headers={"ETag": '"v1"'})
        else:
            send_json(handler, [{"id": 1, "v": "a"}], headers={"ETag": '"v1"', "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"})

    url = source.add("/items", etagged)
    assert cli("add", "etag", "--url", url).returncode == 0
    assert cli("sync", "etag").returncode == 0
    before = query(db_path, "SELECT key, data, synced_at FROM records")

    second = cli("sync", "etag")

    assert second.returncode == 0 and "unchanged" in second.stdout
    sent = source.requests[-1][2]
    assert sent.get("If-None-Match") == '"v1"' and sent.get("If-Modified-Since") == "Mon, 01 Jan 2024 00:00:00 GMT"
    assert query(db_path, "SELECT key, data, synced_at FROM records") == before
    newest, first = history(cli, "etag")
    assert newest["status"] == "SUCCESS" and newest["not_modified"] is True and newest["records_count"] == 0
    assert first["not_modified"] is False
    assert query(db_path, "SELECT last_status, records_count FROM integrations") == [
        {"last_status": "SUCCESS", "records_count": 1}]
    assert "unchanged" in cli("history", "etag").stdout


def test_paginated_integrations_and_reset_send_no_validators(cli, source):
    url = source.add("/paged", json_body([{"id": 1}], headers={"ETag": '"p"'}))
    assert cli("add", "paged", "--url", url, "--paginate", "link").returncode == 0
    assert cli("sync", "paged").returncode == 0 and cli("sync", "paged").returncode == 0
    assert all("If-None-Match" not in headers for _, _, headers in source.requests)

    single = source.add("/single", json_body([{"id": 1}], headers={"ETag": '"s"'}))
    assert cli("add", "single", "--url", single).returncode == 0
    assert cli("sync", "single").returncode == 0
    assert cli("reset", "single").returncode == 0
    assert cli("sync", "single").returncode == 0
    assert "If-None-Match" not in source.requests[-1][2]


# -- incremental cursors ----------------------------------------------------------------------


def updated_source(source, fail_page: dict):  # noqa: ANN001, ANN201
    """30 records updated at increasing times, 10 a page (?p=N), newer than ?since=;
    ``fail_page["p"]`` answers 400 once."""
    rows = [{"id": i, "updated_at": f"2024-01-01T00:{i:02d}:00Z"} for i in range(1, 31)]

    def make(handler):  # noqa: ANN001, ANN202
        page = int(handler.query.get("p", "1"))
        if fail_page.get("p") == page:
            fail_page.clear()
            return 400, {"error": "try again"}
        since = handler.query.get("since")
        fresh = [r for r in rows if since is None or r["updated_at"] >= since]
        return 200, fresh[(page - 1) * 10: page * 10]

    return source.add("/changes", dynamic(make))


def test_an_incremental_sync_failing_on_page_3_resumes_after_page_2(cli, db_path, source):
    fail = {"p": 3}
    url = updated_source(source, fail)
    assert cli("add", "inc", "--url", url, "--paginate", "page:p", "--incremental", "updated_at:since").returncode == 0

    first = cli("sync", "inc")

    assert first.returncode == 1 and "try again" in first.stderr
    assert len(stored(db_path, "inc")) == 20
    assert cli("show", "inc", "--json").json()["cursor"] == "2024-01-01T00:20:00Z"
    assert all("since" not in q for q in source.queries("/changes"))

    assert cli("sync", "inc").returncode == 0

    resumed = [q for q in source.queries("/changes")][-3:]
    assert [q.get("since") for q in resumed] == ["2024-01-01T00:20:00Z"] * 3  # one value, every page
    assert len(stored(db_path, "inc")) == 30
    assert cli("show", "inc", "--json").json()["cursor"] == "2024-01-01T00:30:00Z"

    assert cli("reset", "inc").returncode == 0
    assert cli("show", "inc", "--json").json()["cursor"] is None
    assert len(stored(db_path, "inc")) == 30  # records stay


def test_lookback_and_a_cursor_seeded_from_stored_records(cli, source):
    url = updated_source(source, {})
    assert cli("add", "seed", "--url", url, "--paginate", "page:p").returncode == 0
    assert cli("sync", "seed").returncode == 0

    assert cli("edit", "seed", "--incremental", "updated_at:since", "--lookback", "5m").returncode == 0

    assert cli("show", "seed", "--json").json()["cursor"] == "2024-01-01T00:30:00Z"
    assert cli("sync", "seed").returncode == 0
    assert source.queries("/changes")[-1]["since"] == "2024-01-01T00:25:00Z"


def test_a_parameter_syncctl_sets_replaces_a_fixed_one_of_the_same_name(cli, source):
    from urllib.parse import parse_qsl, urlsplit

    pages = {"1": [{"id": 1}, {"id": 2}], "2": [{"id": 3}]}
    url = source.add("/paged", dynamic(lambda handler: (200, pages.get(dict(
        parse_qsl(urlsplit(handler.path).query)).get("page", "1"), []))))  # fmt: skip
    assert cli("add", "start", "--url", url, "--param", "since=2020-01-01", "--param", "page=7",
               "--incremental", "id:since", "--paginate", "page:page").returncode == 0  # fmt: skip

    assert cli("sync", "start").returncode == 0
    assert cli("sync", "start").returncode == 0

    sent = [parse_qsl(urlsplit(target).query) for _, target, _ in source.requests]
    assert sent[0] == [("since", "2020-01-01"), ("page", "1")], "the fixed since starts the first sync"
    assert sent[-1] == [("since", "3"), ("page", "3")], "then the cursor replaces it: never both"
    assert all([k for k, _ in query].count("since") == 1 and [k for k, _ in query].count("page") == 1
               for query in sent), sent  # fmt: skip


# -- deletions --------------------------------------------------------------------------------


def test_mark_deletes_what_a_complete_sync_no_longer_sees_and_the_valve_refuses_mass_deletion(cli, db_path, source):
    rows = {i: {"id": i} for i in range(1, 11)}
    url = source.add("/all", dynamic(lambda handler: (200, list(rows.values()))))
    assert cli("add", "crm", "--url", url, "--deletes", "mark").returncode == 0
    assert cli("sync", "crm").returncode == 0

    del rows[3]
    marked = cli("sync", "crm")

    assert marked.returncode == 0 and "1 deleted" in marked.stdout
    assert query(db_path, "SELECT key FROM records WHERE deleted_at IS NOT NULL") == [{"key": "3"}]
    assert len(query(db_path, "SELECT key FROM live_records")) == 9
    assert history(cli, "crm")[0]["records_deleted"] == 1
    assert cli("list", "--json").json()[0]["records_count"] == 9

    rows[3] = {"id": 3}
    assert cli("sync", "crm").returncode == 0
    assert query(db_path, "SELECT count(*) AS n FROM records WHERE deleted_at IS NOT NULL") == [{"n": 0}]

    for key in range(1, 8):  # 7 of 10: more than the default 50 %
        del rows[key]
    refused = cli("sync", "crm")

    assert refused.returncode == 1
    assert "refused to delete 7 of 10 records" in refused.stderr and "--allow-mass-delete" in refused.stderr
    assert query(db_path, "SELECT count(*) AS n FROM live_records") == [{"n": 10}]
    assert history(cli, "crm")[0]["status"] == "FAILED"

    allowed = cli("sync", "crm", "--allow-mass-delete")
    assert allowed.returncode == 0 and "7 deleted" in allowed.stdout
    assert query(db_path, "SELECT count(*) AS n FROM live_records") == [{"n": 3}]
    listed = cli("records", "crm", "--json").json()
    assert sorted(r["id"] for r in listed) == [8, 9, 10]
    assert len(cli("records", "crm", "--json", "--include-deleted").json()) == 10


def test_remove_deletes_rows_and_a_cut_or_incremental_sync_never_sweeps(cli, db_path, source):
    rows = {i: {"id": i} for i in range(1, 5)}
    url = source.add("/all", dynamic(lambda handler: (200, list(rows.values()))))
    assert cli("add", "rm", "--url", url, "--deletes", "remove").returncode == 0
    assert cli("sync", "rm").returncode == 0
    del rows[4]
    assert cli("sync", "rm").returncode == 0
    assert sorted(stored(db_path, "rm")) == ["1", "2", "3"]

    # a paginated sync cut by --max-pages is not complete: nothing swept, and a warning
    pages = source.add("/pages", dynamic(lambda h: (200, [{"id": int(h.query.get("p", 1))}] if int(h.query.get("p", 1)) < 5 else [])))
    assert cli("add", "cut", "--url", pages, "--paginate", "page:p", "--deletes", "remove").returncode == 0
    assert cli("sync", "cut").returncode == 0 and len(stored(db_path, "cut")) == 4
    assert cli("edit", "cut", "--max-pages", "2").returncode == 0
    cut = cli("sync", "cut")
    assert cut.returncode == 0 and "--max-pages 2" in cut.stderr
    assert len(stored(db_path, "cut")) == 4
    assert "stopped at --max-pages" in history(cli, "cut")[0]["error_hint"]


# -- warnings and 4xx bodies ------------------------------------------------------------------


def test_a_whole_object_body_holding_rows_and_records_without_keys_warn(cli, source):
    datasette = source.add("/db/items.json", json_body({"database": "db", "rows": [{"pk": 1}, {"pk": 2}], "next_url": None}))
    assert cli("add", "ds", "--url", datasette).returncode == 0

    result = cli("sync", "ds")

    assert result.returncode == 0
    hint = history(cli, "ds")[0]["error_hint"]
    assert "syncctl edit ds --records-path rows" in hint and "--key" in hint
    assert "--records-path rows" in result.stderr

    assert cli("edit", "ds", "--records-path", "rows", "--key", "pk").returncode == 0
    assert cli("sync", "ds").returncode == 0
    # The rows' field is new to the data table (the first sync stored the whole body): said
    # once, and nothing else is wrong any more.
    assert history(cli, "ds")[0]["error_hint"] == (
        "warning: the columns of table ds changed: new columns: pk INTEGER (see them with: syncctl schema ds)"
    )
    assert cli("sync", "ds").returncode == 0
    assert history(cli, "ds")[0]["error_hint"] is None


def test_a_4xx_error_quotes_the_start_of_its_body_redacted(cli, source):
    body = json.dumps({"ok": False, "error": "_size must be <= 1000", "token": "s3cr3t-T0KEN", "pad": "x" * 500})
    url = source.add("/bad", lambda h: send(h, 400, body.encode()))
    assert cli("add", "bad", "--url", url, "--header", "Authorization: Bearer ${TOK}").returncode == 0

    result = cli("sync", "bad", env={"TOK": "s3cr3t-T0KEN"})

    assert result.returncode == 1
    assert "HTTP 400 Bad Request" in result.stderr and "_size must be <= 1000" in result.stderr
    assert "s3cr3t" not in result.stderr and "x" * 201 not in result.stderr
    assert "s3cr3t" not in json.dumps(history(cli, "bad"))


# -- check and records ------------------------------------------------------------------------


def test_check_url_finds_rows_and_the_next_url_and_needs_no_database(cli, db_path, source):
    url = source.add("/db/t.json", json_body({"rows": [{"pk": 1, "t": "a"}], "next_url": "/db/t.json?_next=1"}))

    result = cli("check", "--url", url, "--json")

    assert result.returncode == 1, result.stderr
    report = result.json()
    assert report["records_path"] is None and report["other_arrays"] == [{"path": "rows", "count": 1}]
    assert report["detected_pagination"] == "next-url:next_url"
    assert {p["fix"] for p in report["problems"]} == {"--records-path rows", "--paginate next-url:next_url"}
    assert not db_path.exists() and not db_path.parent.exists()

    fixed = cli("check", "--url", url, "--records-path", "rows", "--key", "pk", "--paginate", "next-url:next_url")
    assert fixed.returncode == 0 and "ok: a sync would succeed" in fixed.stdout
    assert not db_path.exists()


def test_check_name_writes_nothing_and_redacts_the_sample(cli, db_path, source):
    url = source.add("/me", json_body([{"id": 1, "echo": "tok-VALUE-123"}]))
    assert cli("add", "me", "--url", url, "--header", "X-Api-Key: ${KEY}").returncode == 0
    before = query(db_path, "SELECT * FROM integrations")

    result = cli("check", "me", env={"KEY": "tok-VALUE-123"})

    assert result.returncode == 0, result.stderr
    assert "[redacted]" in result.stdout and "tok-VALUE" not in result.stdout
    assert query(db_path, "SELECT * FROM integrations") == before
    assert query(db_path, "SELECT count(*) AS n FROM records") == [{"n": 0}]
    assert query(db_path, "SELECT count(*) AS n FROM sync_logs") == [{"n": 0}]


def test_records_as_json_lines_json_and_csv(cli, source):
    url = source.add("/r", json_body([{"id": 1, "name": "a", "tags": ["x"]}, {"id": 2, "extra": True}]))
    assert cli("add", "r", "--url", url).returncode == 0
    assert cli("sync", "r").returncode == 0

    assert len(cli("records", "r", "--limit", "1", "--json").json()) == 1
    rows = list(csv.reader(io.StringIO(cli("records", "r", "--csv").stdout)))
    assert rows[0] == ["id", "name", "tags", "extra"]
    assert sorted(rows[1:]) == [["1", "a", '["x"]', ""], ["2", "", "", "true"]]
    lines = cli("records", "r").stdout.splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == [1, 2]


def test_csv_of_bare_records_puts_them_in_a_value_column_and_of_none_is_empty(cli, source):
    url = source.add("/bare", json_body([1, "two", {"id": 9, "a": 1}]))
    assert cli("add", "bare", "--url", url, "--interval", "manual").returncode == 0
    assert cli("add", "none", "--url", source.add("/none", json_body([])), "--interval", "manual").returncode == 0
    assert cli("sync", "bare", "none").returncode == 0

    rows = list(csv.reader(io.StringIO(cli("records", "bare", "--csv").stdout)))

    assert rows[0] == ["value", "id", "a"] or rows[0] == ["id", "a", "value"], rows
    by_column = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert all(len(row) == len(rows[0]) for row in rows), "every row has every column"
    assert sorted((r["value"], r["id"], r["a"]) for r in by_column) == [("", "9", "1"), ("1", "", ""), ("two", "", "")]
    assert cli("records", "none", "--csv").stdout == ""
    too_many = cli("history", "--limit", "2000000")
    assert too_many.returncode == 2 and "from 1 to 1,000,000" in too_many.stderr


# -- migration --------------------------------------------------------------------------------


def test_a_database_written_by_the_current_release_migrates_to_step_5(cli, db_path, source):
    """The current release's schema is steps 1-2; step 5 follows even though 3 and 4 may
    be missing from this build, and whatever steps are missing are applied later."""
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    released = [sql for number, sql in schema_steps() if number <= 2]
    conn.executescript("\n".join(released))
    conn.execute("PRAGMA application_id = 1398361667")
    conn.execute("PRAGMA user_version = 2")
    url = source.add("/old", json_body([{"id": 1}, {"id": 2}]))
    config = {"headers": {}, "params": {}, "records_path": None, "key": "id", "paginate": "none",
              "max_pages": 1000, "timeout": 30, "rate_limit": None, "max_retries": 3}
    conn.execute("INSERT INTO integrations (name, url, config, sync_interval, created_at, updated_at)"
                 " VALUES ('old', ?, ?, 3600, '2024-01-01T00:00:00.000Z', '2024-01-01T00:00:00.000Z')",
                 (url, json.dumps(config)))
    conn.execute("INSERT INTO records VALUES (1, '3', '{\"id\":3}', '2024-01-01T00:00:00.000Z')")
    conn.commit()
    conn.close()

    assert cli("edit", "old", "--deletes", "mark").returncode == 0
    assert cli("sync", "old").returncode == 0

    assert query(db_path, "PRAGMA user_version")[0]["user_version"] == schema_steps()[-1][0]
    steps = {r["step"] for r in query(db_path, "SELECT step FROM schema_steps")}
    assert steps == {n for n, _ in schema_steps()}
    assert [r["key"] for r in query(db_path, "SELECT key FROM live_records ORDER BY key")] == ["1", "2"]
    assert history(cli, "old")[0]["records_deleted"] == 1
