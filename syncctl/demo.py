"""``syncctl demo``: a self-contained tour that needs no network.

It starts a local HTTP source (a healthy endpoint, a paginated one and a flaky one),
registers them in a fresh database, runs run-due, and shows list and history, by
running the same commands a user would type. It ends as a dashboard would: with a
plain SQL query over the weather data table (spec §15), printed so it can be copied.
"""

from __future__ import annotations

import json
import shlex
import sqlite3
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import click

CITIES = ["Oslo", "Lima", "Pune", "Perth", "Quito", "Turku", "Accra", "Hanoi"]
ORDERS_PER_PAGE = 25
ORDER_PAGES = 3
# What a dashboard panel asks of the weather integration's own table (spec §15): typed
# columns, so the comparison and the order are numeric.
DASHBOARD_SQL = "SELECT city, temp_c FROM weather WHERE temp_c >= 20 ORDER BY temp_c DESC, city"


class DemoHandler(BaseHTTPRequestHandler):
    """The sample source: /weather, /orders?page=N (Link pagination), /inventory (503)."""

    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall per keep-alive request
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        parts = urlsplit(self.path)
        if parts.path == "/weather":
            body = [{"id": i + 1, "city": c, "temp_c": 11 + (i * 7) % 19} for i, c in enumerate(CITIES)]
            self._send(200, {"data": body})
        elif parts.path == "/orders":
            page = int(parse_qs(parts.query).get("page", ["1"])[0])
            first = (page - 1) * ORDERS_PER_PAGE
            orders = [
                {"id": f"ord-{n:04d}", "total": round(9.5 + n * 1.25, 2)}
                for n in range(first + 1, first + ORDERS_PER_PAGE + 1)
            ]
            headers = {}
            if page < ORDER_PAGES:
                headers["Link"] = f'<http://{self.headers["Host"]}/orders?page={page + 1}>; rel="next"'
            self._send(200, orders, headers)
        elif parts.path == "/inventory":
            self._send(503, {"error": "warehouse database is being upgraded"})
        else:
            self._send(404, {"error": "not found"})

    def _send(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # the tour prints what matters


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hangs up (syncctl closing an error response it did not read) is
        # normal; anything else is a bug in the demo and gets the usual traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def start_source() -> ThreadingHTTPServer:
    server = DemoServer(("127.0.0.1", 0), DemoHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _run(db: Path, *args: str) -> int:
    """Run one syncctl command in this process, echoing it like a shell session."""
    from syncctl.cli import app

    sys.stdout.write(f"\n$ syncctl {shlex.join(args)}\n")
    sys.stdout.flush()
    try:
        result = app(args=["--db", str(db), *args], prog_name="syncctl", standalone_mode=False)
    except click.exceptions.Exit as exc:
        result = exc.exit_code
    sys.stdout.flush()
    sys.stderr.flush()
    return result if isinstance(result, int) else 0


def run_demo(db: Path | None = None) -> int:
    """The tour. Returns 0 when every step did what it should. Without ``db`` it works
    in a temporary folder and removes it afterwards."""
    if db is None:
        with tempfile.TemporaryDirectory(prefix="syncctl-demo-") as folder:
            return _tour(Path(folder) / "demo.db", keep=False)
    return _tour(db, keep=True)


def _tour(db: Path, *, keep: bool) -> int:
    server = start_source()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"syncctl demo: a fresh database at {db}")
    print(f"and a local sample API at {base} (healthy, paginated and flaky endpoints).")
    steps = [
        ("add", "weather", "--url", f"{base}/weather", "--interval", "15m"),
        ("add", "orders", "--url", f"{base}/orders", "--interval", "1h", "--paginate", "link"),
        ("add", "inventory", "--url", f"{base}/inventory", "--interval", "5m"),
    ]
    ok = all(_run(db, *step) == 0 for step in steps)
    print(
        "\nrun-due is what cron runs every minute. Everything is due now; the flaky source "
        "fails (after 3 quick tries) and is scheduled for a retry:"
    )
    ok &= _run(db, "run-due", "-v") == 1  # inventory must fail
    ok &= _run(db, "list") == 0
    ok &= _run(db, "history") == 0
    print("\nA second run a moment later finds nothing due. Under cron (no terminal, no -v)")
    print("it then prints nothing at all, so cron mails nothing; -v shows what it did:")
    ok &= _run(db, "run-due", "-v") == 0
    server.shutdown()
    print("\nDashboards (Grafana, Metabase, Superset, Datasette) read each integration's records")
    print("from a table of its own, one typed column per field:")
    ok &= _run(db, "schema", "weather") == 0
    ok &= _dashboard_query(db)
    if keep:
        print(f"\nExplore: syncctl --db {db} show orders")
    else:
        print("\nThe demo database was temporary and is gone; to keep one to explore:")
        print("  syncctl --db ./demo.db demo")
    print("Deploy:  see crontab.example: * * * * * syncctl run-due")
    return 0 if ok else 1


def _dashboard_query(db: Path) -> bool:
    """Query the weather table the way a dashboard would (read only), and print the SQL
    and its rows."""
    from rich.table import Table

    from syncctl import render

    print("\nThe warmest cities, as a dashboard panel would ask (copy the SQL into yours):\n")
    print(f"  {DASHBOARD_SQL};\n")
    sys.stdout.flush()
    try:
        conn = sqlite3.connect(db)
        try:
            conn.execute("PRAGMA query_only = ON")
            cursor = conn.execute(DASHBOARD_SQL)
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        render.print_error(
            f"the dashboard query failed: {exc}", "see the table's columns with: syncctl schema weather"
        )
        return False
    numeric = {i for i, _ in enumerate(names) if rows and all(isinstance(r[i], (int, float)) for r in rows)}
    table = Table(box=None, pad_edge=False, header_style="bold", collapse_padding=True)
    for i, name in enumerate(names):
        table.add_column(name, no_wrap=True, justify="right" if i in numeric else "left")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    render.emit(table)
    return bool(rows)
