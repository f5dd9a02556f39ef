"""The data tables (spec §15) as a dashboard sees them: a real Datasette process serves the
database syncctl wrote, and the test asks it over HTTP what a dashboard author would: which
tables there are, a facet by city, a numeric filter on a typed column, a flattened nested
field. Datasette only reads (its connections are read-only); syncctl keeps syncing while it
serves, as under cron."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import HANG_GUARD, dump, unavailable, wait_for
from tests.httpsources import json_body

CITIES = ["Oslo", "Lima", "Oslo", "Pune", "Lima", "Oslo", "Pune", "Oslo", "Lima"]
# Mixed ints and floats (a REAL column), a null, and values a TEXT column would compare
# wrongly with 10 ('9' > '10' and '2.5' > '10' as text).
TEMPS = [9, 10, 10.5, 100, -3, 2.5, None, 11, 31]


def readings(temps: list[Any]) -> list[dict[str, Any]]:
    return [
        {"id": n + 1, "city": city, "temp_c": temp, "station": {"name": f"{city} {n % 2 + 1}", "elevation_m": 10 * n}}
        for n, (city, temp) in enumerate(zip(CITIES, temps, strict=True))
    ]


def warmer_than(records: list[dict[str, Any]], limit: float) -> set[int]:
    return {r["id"] for r in records if r["temp_c"] is not None and r["temp_c"] > limit}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200, url
        return json.load(response)


def answering(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def datasette(tmp_path: Path):  # noqa: ANN201
    """Start ``datasette serve DB`` on 127.0.0.1 as a real process; returns its base URL.
    Terminated (killed if it lingers) after the test."""
    if importlib.util.find_spec("datasette") is None:
        unavailable("datasette is not installed (pip install -e '.[test]')")
    procs: list[subprocess.Popen] = []
    logs = []

    def start(db: Path) -> str:
        port = free_port()
        log = (tmp_path / f"datasette-{port}.log").open("w")
        logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "datasette", "serve", str(db), "-p", str(port), "--host", "127.0.0.1"],
            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: proc.poll() is not None or answering(f"{base}/-/versions.json"), "datasette to answer",
                 guard=60)
        assert proc.poll() is None, f"datasette exited with {proc.returncode}: {(tmp_path / log.name).read_text()}"
        return base

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=HANG_GUARD)
    for log in logs:
        log.close()


def test_datasette_lists_facets_and_filters_the_typed_weather_table(cli, db_path, source, datasette):
    served = readings(TEMPS)
    url = source.add("/weather", json_body(served))
    assert cli("add", "weather", "--url", url).returncode == 0
    synced = cli("sync", "weather")
    assert synced.returncode == 0, synced.stderr
    before = dump(db_path)

    base = datasette(db_path)
    db = f"{base}/{db_path.stem}"

    # The table is listed, with its flattened nested field as a column.
    listing = get_json(f"{db}.json")
    tables = {t["name"]: t for t in listing["tables"]}
    assert "weather" in tables, sorted(tables)
    columns = tables["weather"]["columns"]
    assert columns[:2] == ["_key", "_synced_at"]
    assert {"id", "city", "temp_c", "station__name", "station__elevation_m"} <= set(columns)
    assert tables["weather"]["count"] == len(served)

    # The declared types are what Datasette (and any dashboard) sees.
    sql = "select name, type from pragma_table_info('weather')"
    declared = get_json(f"{db}.json?" + urllib.parse.urlencode({"sql": sql, "_shape": "objects"}))["rows"]
    types = {r["name"]: r["type"] for r in declared}
    assert types["temp_c"] == "REAL" and types["id"] == "INTEGER"
    assert types["city"] == "TEXT" and types["station__name"] == "TEXT"
    assert types["station__elevation_m"] == "INTEGER"

    # A facet by city counts the rows of each city.
    faceted = get_json(f"{db}/weather.json?_facet=city&_shape=objects&_size=max")
    counts = {r["value"]: r["count"] for r in faceted["facet_results"]["city"]["results"]}
    assert counts == dict(Counter(r["city"] for r in served))
    assert len(faceted["rows"]) == len(served)
    rows = {r["id"]: r for r in faceted["rows"]}
    for record in served:
        row = rows[record["id"]]
        assert row["_key"] == str(record["id"])
        assert row["city"] == record["city"] and row["temp_c"] == record["temp_c"]
        assert row["station__name"] == record["station"]["name"]
        assert row["station__elevation_m"] == record["station"]["elevation_m"]

    # A numeric filter compares numbers (a TEXT column would let 9 and 2.5 through).
    warm = get_json(f"{db}/weather.json?temp_c__gt=10&_shape=objects&_size=max")
    assert {r["id"] for r in warm["rows"]} == warmer_than(served, 10) == {3, 4, 8, 9}
    # Filters and facets combine, as on a dashboard.
    oslo = get_json(f"{db}/weather.json?temp_c__gt=10&city=Oslo&_facet=city&_shape=objects")
    expected = sorted(i for i in warmer_than(served, 10) if served[i - 1]["city"] == "Oslo")
    assert [r["id"] for r in oslo["rows"]] == expected == [3, 8]
    assert {r["value"]: r["count"] for r in oslo["facet_results"]["city"]["results"]} == {"Oslo": 2}
    # Datasette reads `a__b=` as column a, operator b: a flattened column is filtered with
    # an explicit operator (`station__name__exact=`).
    by_station = get_json(f"{db}/weather.json?" + urllib.parse.urlencode(
        {"station__name__exact": "Lima 2", "_shape": "objects"}))  # fmt: skip
    assert {r["id"] for r in by_station["rows"]} == {
        r["id"] for r in served if r["station"]["name"] == "Lima 2"
    } == {2}

    assert dump(db_path) == before  # the reader wrote nothing

    # syncctl keeps syncing while Datasette serves; the next request sees the new rows.
    changed = readings([12 if t is None else (t + 5 if t == 9 else t) for t in TEMPS])
    source.add("/weather", json_body(changed))
    resynced = cli("sync", "weather")
    assert resynced.returncode == 0, resynced.stderr
    warm = get_json(f"{db}/weather.json?temp_c__gt=10&_shape=objects&_size=max")
    assert {r["id"] for r in warm["rows"]} == warmer_than(changed, 10) == {1, 3, 4, 7, 8, 9}
