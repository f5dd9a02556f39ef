"""A first end-to-end check: add, run-due against a real HTTP server, list, history."""

from __future__ import annotations

from tests.helpers import query
from tests.httpsources import json_body


def test_run_due_syncs_what_is_due_and_is_silent(cli, source, db_path):
    source.add("/items", json_body({"data": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]}))
    assert cli("add", "items", "--url", source.url("/items"), "--interval", "15m").returncode == 0

    run = cli("run-due")

    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    rows = query(db_path, "SELECT key, data FROM records ORDER BY key")
    assert [r["key"] for r in rows] == ["1", "2"]
    listed = cli("list", "--json").json()
    assert listed[0]["last_status"] == "SUCCESS" and listed[0]["records_count"] == 2
    logs = cli("history", "items", "--json").json()
    assert [(log["status"], log["trigger"], log["records_count"]) for log in logs] == [("SUCCESS", "schedule", 2)]
