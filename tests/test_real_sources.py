"""Real third-party sources (spec §11, issue 10): Datasette (rows, next_url, _size) and
json-server 0.17 (_page/_limit with Link headers, PATCH and DELETE). Skipped locally when
the tool is missing (required under CI: pip install datasette; npm install -g json-server@0.17)."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import urllib.request

import pytest

from tests.helpers import HANG_GUARD, query, require_tool, stored, wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answering(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def served(tmp_path):  # noqa: ANN001, ANN201
    """Start a server process; stopped after the test."""
    procs: list[subprocess.Popen] = []

    def start(args: list[str], ready_url: str) -> None:
        proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        wait_for(lambda: proc.poll() is not None or answering(ready_url), f"{args[0]} to answer", guard=60)
        assert proc.poll() is None, f"{args[0]} exited with {proc.returncode}"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=HANG_GUARD)


def test_datasette_check_finds_rows_then_syncs_every_page(cli, db_path, tmp_path, served):
    datasette = require_tool("datasette", "pip install -e '.[test]'")
    data = tmp_path / "shop.db"
    conn = sqlite3.connect(data)
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, title TEXT)")
    conn.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"item {i}") for i in range(1, 46)])
    conn.commit()
    conn.close()
    port = free_port()
    base = f"http://127.0.0.1:{port}/shop/items.json"
    served([datasette, "serve", str(data), "-h", "127.0.0.1", "-p", str(port)], base)
    url = base + "?_shape=objects&_size=20"

    checked = cli("check", "--url", url, "--json")

    assert checked.returncode == 1, checked.stderr
    report = checked.json()
    assert {"path": "rows", "count": 20} in report["other_arrays"]
    fixes = {p["fix"] for p in report["problems"]}
    # Datasette names the next page both ways: a Link header and next_url in the body.
    assert fixes in ({"--records-path rows", "--paginate link"}, {"--records-path rows", "--paginate next-url:next_url"})
    assert not db_path.exists()

    assert cli("add", "shop", "--url", url, "--records-path", "rows", "--paginate", "next-url:next_url").returncode == 0
    synced = cli("sync", "shop")
    assert synced.returncode == 0 and "45 records" in synced.stdout, synced.stderr
    assert len(stored(db_path, "shop")) == 45

    too_big = cli("add", "big", "--url", base + "?_shape=objects&_size=5000", "--records-path", "rows")
    assert too_big.returncode == 0
    failed = cli("sync", "big")
    assert failed.returncode == 1 and "HTTP 400" in failed.stderr and "_size must be <= " in failed.stderr


def test_json_server_pages_by_link_and_the_sweep_sees_a_delete(cli, db_path, tmp_path, served):
    json_server = require_tool("json-server", "npm install -g json-server@0.17")
    (tmp_path / "db.json").write_text(json.dumps({"items": [{"id": i, "title": f"t{i}"} for i in range(1, 26)]}))
    port = free_port()
    base = f"http://127.0.0.1:{port}/items"
    served([json_server, "--watch", "db.json", "--port", str(port), "--host", "127.0.0.1"], base)
    added = cli("add", "js", "--url", base, "--param", "_page=1", "--param", "_limit=10",
                "--paginate", "link", "--deletes", "mark")
    assert added.returncode == 0
    assert cli("sync", "js").returncode == 0
    assert len(stored(db_path, "js")) == 25

    urllib.request.urlopen(urllib.request.Request(f"{base}/3", method="DELETE"), timeout=10).close()
    patch = urllib.request.Request(f"{base}/5", data=b'{"title": "changed"}', method="PATCH",
                                   headers={"Content-Type": "application/json"})
    urllib.request.urlopen(patch, timeout=10).close()

    second = cli("sync", "js")

    assert second.returncode == 0 and "1 deleted" in second.stdout, second.stdout + second.stderr
    assert query(db_path, "SELECT key FROM records WHERE deleted_at IS NOT NULL") == [{"key": "3"}]
    assert stored(db_path, "js")["5"]["title"] == "changed"
    assert len(query(db_path, "SELECT key FROM live_records")) == 24
