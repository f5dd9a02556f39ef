"""The status page and badges (issue 20, spec §19), through the files that `run-due
--status-dir` and `status-page` write, against a real source on 127.0.0.1, and through a
real browser: Debian's headless Chromium loads the page from disk with scripts on and
off, at 360 px and at desktop width, light and dark, and renders the SVG badges. Its
screenshots are kept under the test's tmp dir (``screenshots/``)."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import select
import sqlite3
import subprocess
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.helpers import HANG_GUARD, add, can_exchange, require_tool, utc_ms
from tests.httpsources import json_body, send, text_body

HOSTILE_ERROR = "<script>alert(1)</script>"
SHIELDS_COLOURS = {"brightgreen", "green", "yellow", "orange", "red", "lightgrey", "blue"}
HEX = {"brightgreen": (0x44, 0xCC, 0x11), "orange": (0xFE, 0x7D, 0x37), "red": (0xE0, 0x5D, 0x44),
       "lightgrey": (0x9F, 0x9F, 0x9F)}  # fmt: skip
TIME = re.compile(r"^\d\d:\d\d UTC$")
DATE = re.compile(r"^\d{4}-\d\d-\d\d$")


# -- setting up --------------------------------------------------------------------------------


def etagged(value: object):  # noqa: ANN201
    """JSON with an ETag, and 304 when the client already has it."""
    body = json.dumps(value).encode()

    def behave(handler) -> None:  # noqa: ANN001
        if handler.headers.get("If-None-Match") == '"v1"':
            handler.send_response(304)
            handler.send_header("ETag", '"v1"')
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        send(handler, 200, body, headers={"ETag": '"v1"'})

    return behave


def sql(db_path: Path, statement: str, params: tuple = ()) -> None:
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute(statement, params)
    conn.close()


def stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def populate(cli, db_path: Path, store, source) -> None:  # noqa: ANN001
    """One integration in each state: orders fresh (a success then two 304s), flaky
    failing (its source answers 400 with markup), archive disabled, legacy paused, adhoc
    manual, old-feed stale (last success two days ago). Header and parameter values name
    internal things that must never reach the page."""
    add(store, "orders", source.add("/internal/orders", etagged([{"id": 1}, {"id": 2}, {"id": 3}])),
        "--header", "X-Internal-Team: analytics-secret-team", "--param", "region=eu-internal-7")
    add(store, "flaky", source.add("/flaky", text_body(HOSTILE_ERROR, status=400)))
    add(store, "archive", source.add("/archive", json_body([{"id": 1}])))
    add(store, "legacy", source.add("/legacy", json_body([{"id": 1}])))
    add(store, "adhoc", source.add("/adhoc", json_body([{"id": 1}])), "--interval", "manual")
    add(store, "old-feed", source.add("/old", json_body([{"id": 1}])))
    assert cli("pause", "legacy").returncode == 0
    sql(db_path, "UPDATE integrations SET sync_enabled = 0 WHERE name IN ('archive', 'old-feed')")
    result = cli("run-due")  # orders succeeds, flaky fails
    assert result.returncode == 1 and "flaky" in result.stderr, result
    for _ in range(2):
        assert cli("sync", "orders").returncode == 0  # 304: unchanged
    two_days_ago = stamp(datetime.now(timezone.utc) - timedelta(days=2))
    sql(db_path, "UPDATE integrations SET sync_enabled = 1, last_success_at = ?, created_at = ?,"
        " next_sync_at = '2999-01-01T00:00:00.000Z' WHERE name = 'old-feed'", (two_days_ago, two_days_ago))
    sql(db_path, "UPDATE integrations SET disabled_reason = 'failures', disabled_at = ?, consecutive_failures = 4,"
        " last_error = 'HTTP 401 from http://127.0.0.1/archive', last_status = 'FAILED' WHERE name = 'archive'",
        (stamp(datetime.now(timezone.utc)),))


def written(directory: Path) -> dict[str, str]:
    """Every file in DIR (relative path: text); none left half-written or temporary."""
    files = {str(p.relative_to(directory)): p.read_text() for p in sorted(directory.rglob("*")) if p.is_file()}
    spares = {name: text for name, text in files.items() if name in (".index.html.spare", ".status.json.spare")}
    for name, text in spares.items():  # the previous version, whole, kept for the next idle tick
        live = files[name[1:].removesuffix(".spare")]
        assert len(text) == len(live) and without_tick(text) == without_tick(live), name
    assert not [name for name in files if Path(name).name.startswith(".") and name not in spares], files.keys()
    return {name: text for name, text in files.items() if name not in spares}


def without_tick(text: str) -> str:
    """The page or status.json without what each tick changes."""
    text = re.sub(r'<time id="tick"[^>]*>[^<]*</time>', "", text, count=1)
    return re.sub(r'^\{"generated_at":[^\n]*\n', "", text, count=1)


def identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_ino, info.st_mtime_ns


# -- the files -----------------------------------------------------------------------------------


def test_run_due_writes_the_page_status_json_and_badges(cli, db_path, store, source, tmp_path):
    populate(cli, db_path, store, source)
    out = tmp_path / "www" / "status"  # created when missing
    assert cli("run-due", "--status-dir", str(out)).returncode == 0
    files = written(out)
    names = ["adhoc", "archive", "flaky", "legacy", "old-feed", "orders"]
    assert sorted(files) == sorted(
        ["index.html", "status.json"] + [f"badges/{n}.{ext}" for n in names for ext in ("svg", "json")]
    )

    status = json.loads(files["status.json"])
    assert list(status) == ["generated_at", "last_tick_at", "integrations"]
    assert abs(datetime.fromisoformat(status["last_tick_at"].replace("Z", "+00:00")) - utc_ms()) < timedelta(seconds=HANG_GUARD)
    by_name = {i["name"]: i for i in status["integrations"]}
    assert list(by_name) == names
    for entry in by_name.values():
        assert set(entry) == {"name", "state", "stale", "last_success_at", "records_count", "recent"}
        for sync in entry["recent"]:
            assert set(sync) == {"status", "started_at", "not_modified"}
    states = {n: e["state"] for n, e in by_name.items()}
    assert states == {"orders": "fresh", "flaky": "failing", "archive": "disabled", "legacy": "paused",
                      "adhoc": "manual", "old-feed": "stale"}  # fmt: skip
    assert by_name["old-feed"]["stale"] is True and by_name["orders"]["stale"] is False
    assert by_name["orders"]["records_count"] == 3
    assert [(s["status"], s["not_modified"]) for s in by_name["orders"]["recent"]] == [
        ("SUCCESS", False), ("SUCCESS", True), ("SUCCESS", True)]  # oldest first
    assert [s["status"] for s in by_name["flaky"]["recent"]] == ["FAILED"]
    # the same rules as `health`: it names the same integrations stale, failing, disabled
    problems = {(p["integration"], p["kind"]) for p in cli("health", "--json").json()["problems"] if p["integration"]}
    assert problems == {("flaky", "failing"), ("archive", "disabled"), ("old-feed", "stale")}

    expected = {"orders": "brightgreen", "flaky": "orange", "archive": "red", "old-feed": "red",
                "legacy": "lightgrey", "adhoc": "lightgrey"}  # fmt: skip
    for name, colour in expected.items():
        endpoint = json.loads(files[f"badges/{name}.json"])  # shields.io's endpoint schema
        assert set(endpoint) == {"schemaVersion", "label", "message", "color"}
        assert endpoint["schemaVersion"] == 1 and endpoint["label"] == "data"
        assert isinstance(endpoint["message"], str) and endpoint["color"] in SHIELDS_COLOURS
        assert endpoint["color"] == colour, name
        svg = ET.fromstring(files[f"badges/{name}.svg"])
        assert svg.tag == "{http://www.w3.org/2000/svg}svg" and svg.get("height") == "20"
        texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
        assert texts == ["data", "data", endpoint["message"], endpoint["message"]]
        assert f"#{''.join(f'{c:02x}' for c in HEX[colour])}".replace("#44cc11", "#4c1") in files[f"badges/{name}.svg"]
    messages = {n: json.loads(files[f"badges/{n}.json"])["message"] for n in names}
    assert TIME.match(messages["orders"]), messages  # succeeded today: HH:MM UTC
    assert DATE.match(messages["old-feed"]), messages  # two days ago: the date
    assert messages["flaky"] == "never"
    last_success = by_name["orders"]["last_success_at"]
    assert messages["orders"] == f"{last_success[11:16]} UTC"

    page = files["index.html"]
    assert '<meta http-equiv="refresh" content="60">' in page
    assert 'name="viewport"' in page and "prefers-color-scheme: dark" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # self-contained: nothing external
    assert f'<time id="tick" datetime="{status["last_tick_at"]}">' in page
    assert f'<time datetime="{last_success}">' in page
    for state in states.values():
        assert f'class="st {state}"' in page
    assert "2 failing" not in page and "1 stale, 1 failing, 1 disabled" in page  # the headline


def test_nothing_private_unless_details_and_no_markup_from_errors(cli, db_path, store, source, tmp_path):
    populate(cli, db_path, store, source)
    plain, detailed = tmp_path / "plain", tmp_path / "detailed"
    assert cli("status-page", str(plain)).returncode == 0
    private = ["127.0.0.1", "/internal/orders", "X-Internal-Team", "analytics-secret-team", "region",
               "eu-internal-7", "HTTP 400", "HTTP 401", "alert(1)", "check the URL", "hint", "last_error"]
    for name, text in written(plain).items():
        for word in private:
            assert word not in text, (name, word)

    assert cli("status-page", str(detailed), "--details").returncode == 0
    files = written(detailed)
    flaky = next(i for i in json.loads(files["status.json"])["integrations"] if i["name"] == "flaky")
    assert HOSTILE_ERROR in flaky["last_error"] and flaky["hint"]  # JSON carries it as text
    page = files["index.html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # escaped by Jinja2's autoescape
    assert page.count("<script") == 1  # our own small script, nothing else
    assert "HTTP 401" in page and "syncctl resume archive" in page  # the disabled one's error and hint
    for word in ("X-Internal-Team", "analytics-secret-team", "eu-internal-7"):  # headers and params: never
        assert word not in json.dumps(files), word


def test_a_hostile_name_cannot_inject_markup(cli, db_path, store, source, tmp_path):
    """Names are slugs (``add`` refuses anything else); a name that got into the database
    anyway is still only text on the page and in the badge."""
    refused = cli("add", "<b>x", "--url", source.add("/x", json_body([])))
    assert refused.returncode == 2 and "invalid name" in refused.stderr
    add(store, "orders", source.add("/orders", json_body([{"id": 1}])))
    hostile = '<img src=x onerror="alert(1)">&amp;'
    sql(db_path, "UPDATE integrations SET name = ? WHERE name = 'orders'", (hostile,))
    out = tmp_path / "out"
    assert cli("status-page", str(out)).returncode == 0
    page = (out / "index.html").read_text()
    assert "<img" not in page and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&amp;amp;" in page
    svg = (out / "badges" / f"{hostile}.svg").read_text()
    ET.fromstring(svg)  # still well-formed XML
    assert json.loads((out / "status.json").read_text())["integrations"][0]["name"] == hostile


def test_files_are_replaced_atomically_and_only_when_they_change(cli, db_path, store, source, tmp_path):
    add(store, "orders", source.add("/orders", etagged([{"id": 1}])))
    add(store, "stock", source.add("/stock", json_body([{"id": 1}])))
    out = tmp_path / "out"
    assert cli("run-due", "--status-dir", str(out)).returncode == 0
    page, status_json = out / "index.html", out / "status.json"
    badges = {p.name: p for p in (out / "badges").iterdir()}
    before = {name: identity(p) for name, p in badges.items()}
    first_page = page.read_bytes()
    before_first_idle_tick = identity(page)[0]

    # An idle tick: only the last tick's time changes; the badges are left alone.
    with open(page, "rb") as reader:  # a web server in the middle of sending the page
        assert cli("run-due", "--status-dir", str(out)).returncode == 0
        assert reader.read() == first_page  # it still reads the whole old page: a rename, not a rewrite
    assert {name: identity(p) for name, p in badges.items()} == before
    second_page = page.read_bytes()
    assert second_page != first_page and identity(page)[0] != before["orders.svg"][0]
    tick = json.loads(status_json.read_text())["last_tick_at"]
    assert f'<time id="tick" datetime="{tick}">' in second_page.decode()
    # ... and what the idle tick spliced is exactly what a full rendering writes.
    full = tmp_path / "full"
    assert cli("status-page", str(full)).returncode == 0
    assert (full / "index.html").read_bytes() == second_page
    spliced, rendered = json.loads(status_json.read_text()), json.loads((full / "status.json").read_text())
    assert {**spliced, "generated_at": None} == {**rendered, "generated_at": None}

    # More idle ticks rewrite only the head of the version kept from the tick before and
    # swap it in: a reader of the page still reads the page it opened, and the result is
    # still exactly a full rendering.
    inodes = [identity(page)[0]]
    for _ in range(2):
        held = page.read_bytes()
        with open(page, "rb") as reader:
            assert cli("run-due", "--status-dir", str(out)).returncode == 0
            assert reader.read() == held
        assert cli("status-page", str(full)).returncode == 0
        assert page.read_bytes() == (full / "index.html").read_bytes() != held
        spliced, rendered = json.loads(status_json.read_text()), json.loads((full / "status.json").read_text())
        assert spliced["last_tick_at"] > re.search(r'<time id="tick" datetime="([^"]+)"', held.decode())[1]
        assert {**spliced, "generated_at": None} == {**rendered, "generated_at": None}
        inodes.append(identity(page)[0])
    if can_exchange(tmp_path):  # two files take turns: nothing copied, nothing freed
        assert inodes[2] == inodes[0] != inodes[1] == before_first_idle_tick
    written(out)

    # status-page with nothing new since: the page is not rewritten either.
    page_id = identity(full / "index.html")
    assert cli("status-page", str(full)).returncode == 0
    assert identity(full / "index.html") == page_id

    # One integration changes state: its badge is rewritten, the other's is not.
    source.add("/orders", text_body("down", status=503))
    sql(db_path, "UPDATE integrations SET next_sync_at = '2000-01-01T00:00:00.000Z' WHERE name = 'orders'")
    assert cli("run-due", "--status-dir", str(out)).returncode == 1
    assert identity(badges["stock.svg"]) == before["stock.svg"]
    assert identity(badges["stock.json"]) == before["stock.json"]
    assert identity(badges["orders.svg"]) != before["orders.svg"]
    assert json.loads(badges["orders.json"].read_text())["color"] == "orange"
    assert "failing" in page.read_text()

    # A removed integration's badge goes too (a green badge must not outlive it).
    assert cli("remove", "stock", "--yes").returncode == 0
    sql(db_path, "UPDATE integrations SET next_sync_at = '2999-01-01T00:00:00.000Z' WHERE name = 'orders'")
    assert cli("run-due", "--status-dir", str(out)).returncode == 0  # nothing due: an idle tick
    assert sorted(p.name for p in (out / "badges").iterdir()) == ["orders.json", "orders.svg"]
    written(out)  # no temporary left behind


def test_lock_busy_ticks_and_the_environment_variable(cli, db_path, store, source, tmp_path):
    add(store, "orders", source.add("/orders", json_body([{"id": 1}])))
    out = tmp_path / "from-env"
    fd = os.open(f"{db_path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run-due holds the lock
    try:
        busy = cli("run-due", env={"SYNCCTL_STATUS_DIR": str(out)})
    finally:
        os.close(fd)
    assert busy.returncode == 0 and busy.stderr == ""
    status = json.loads((out / "status.json").read_text())
    assert status["last_tick_at"] is not None  # the lock-busy tick wrote it
    assert status["integrations"][0]["recent"] == []
    file = tmp_path / "a-file"
    file.write_text("")
    refused = cli("run-due", "--status-dir", str(file))
    assert refused.returncode == 2 and "it is a file" in refused.stderr


# -- in a real browser ---------------------------------------------------------------------------


class Browser:
    """Debian's Chromium, headless, driven through the DevTools protocol over a pipe
    (``--remote-debugging-pipe``: no websocket library needed). Each :meth:`open` loads a
    file in a new tab, at a width, light or dark, with scripts on or off; screenshots go
    to ``shots``."""

    def __init__(self, tmp_path: Path) -> None:
        exe = require_tool("chromium")
        self.shots = tmp_path / "screenshots"
        self.shots.mkdir(exist_ok=True)
        to_browser, self._out = os.pipe()
        self._in, from_browser = os.pipe()

        def wire() -> None:  # the protocol's pipes are the browser's fds 3 (in) and 4 (out)
            a, b = fcntl.fcntl(to_browser, fcntl.F_DUPFD, 10), fcntl.fcntl(from_browser, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-pipe",
             "--allow-file-access-from-files", f"--user-data-dir={tmp_path / 'chromium-profile'}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=wire, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._id, self._events = b"", 0, []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read()
            if answer.get("id") == self._id:
                assert "error" not in answer, (method, answer["error"])
                return answer["result"]
            self._events.append(answer)

    def _read(self) -> dict:
        deadline = time.monotonic() + HANG_GUARD
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._in], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, "chromium did not answer"
            chunk = os.read(self._in, 1 << 20)
            assert chunk, "chromium went away"
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def _wait(self, method: str, session: str) -> None:
        while True:
            for event in self._events:
                if event.get("method") == method and event.get("sessionId") == session:
                    self._events.remove(event)
                    return
            self._events.append(self._read())

    def open(self, path: Path, *, width: int = 360, height: int = 800, scripts: bool = True,
             dark: bool = False) -> Tab:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Page.enable", session=session)
        self.send("Emulation.setScriptExecutionDisabled", {"value": not scripts}, session=session)
        self.send("Emulation.setEmulatedMedia", {"features": [
            {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]}, session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        self.send("Page.navigate", {"url": path.as_uri()}, session=session)
        self._wait("Page.loadEventFired", session)
        return Tab(self, session, width)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close")
        try:
            self.proc.wait(HANG_GUARD)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._out)
        os.close(self._in)


class Tab:
    def __init__(self, browser: Browser, session: str, width: int) -> None:
        self.browser, self.session, self.width = browser, session, width

    def html(self) -> str:
        """The DOM as rendered (after the page's script, if it ran)."""
        root = self.browser.send("DOM.getDocument", session=self.session)["root"]["nodeId"]
        return self.browser.send("DOM.getOuterHTML", {"nodeId": root}, session=self.session)["outerHTML"]

    def evaluate(self, expression: str):  # noqa: ANN201
        """Evaluated by the test, not the page (works with the page's scripts off)."""
        answer = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                   session=self.session)  # fmt: skip
        return answer["result"].get("value")

    def horizontal_overflow(self) -> float:
        """How much wider the content is than the viewport (0: no horizontal scroll)."""
        metrics = self.browser.send("Page.getLayoutMetrics", session=self.session)
        return max(0.0, metrics["cssContentSize"]["width"] - metrics["cssLayoutViewport"]["clientWidth"])

    def screenshot(self, name: str) -> Path:
        """The whole page (up to 4,000 px tall), kept as ``screenshots/NAME.png``."""
        height = self.browser.send("Page.getLayoutMetrics", session=self.session)["cssContentSize"]["height"]
        self.browser.send("Emulation.setDeviceMetricsOverride", {
            "width": self.width, "height": min(4000, int(height) + 1), "deviceScaleFactor": 1, "mobile": False,
        }, session=self.session)  # fmt: skip
        data = self.browser.send("Page.captureScreenshot", {"format": "png"}, session=self.session)["data"]
        shot = self.browser.shots / f"{name}.png"
        shot.write_bytes(base64.b64decode(data))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        return shot


@pytest.fixture
def browser(tmp_path):  # noqa: ANN001, ANN201
    opened = Browser(tmp_path)
    yield opened
    opened.close()


BANNER = "document.getElementById('banner').hidden ? null : document.getElementById('banner').textContent"
TIMES = "Array.from(document.querySelectorAll('time'), t => t.textContent)"


def test_the_page_in_a_browser_with_an_old_tick(cli, db_path, store, source, browser):
    populate(cli, db_path, store, source)
    long_name = "a" * 64  # the longest name there can be, at 360 px
    add(store, long_name, source.add("/long", json_body([{"id": 1}])))
    old = datetime.now(timezone.utc) - timedelta(minutes=47)
    sql(db_path, "UPDATE run_due_ticks SET ticked_at = ?", (stamp(old),))  # cron stopped 47 minutes ago
    out = browser.shots.parent / "old"
    assert cli("status-page", str(out), "--details").returncode == 0
    page = out / "index.html"

    # Scripts on: "ago" texts on the viewer's clock, and the banner.
    tab = browser.open(page)
    banner = tab.evaluate(BANNER)
    assert banner == f"not updated since {old:%Y-%m-%d %H:%M} UTC \u2014 syncctl may have stopped"
    times = tab.evaluate(TIMES)
    assert times[0] in ("46 min ago", "47 min ago", "48 min ago"), times  # the last tick
    assert "2 days ago" in times and ("just now" in times or "1 min ago" in times), times  # old-feed, orders
    assert not [t for t in times if "UTC" in t], times
    html = tab.html()
    assert html.count("<script") == 1 and "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # still text
    assert tab.evaluate("document.querySelectorAll('script').length") == 1

    # Scripts off: the absolute times remain and no banner (the page cannot know).
    tab = browser.open(page, scripts=False)
    html = tab.html()
    assert f'<time id="tick" datetime="{stamp(old)}">{old:%Y-%m-%d %H:%M} UTC</time>' in html
    assert tab.evaluate(BANNER) is None
    assert all(t.endswith(" UTC") for t in tab.evaluate(TIMES))
    assert tab.evaluate("document.querySelector('tr#old-feed .st').textContent.trim()") == "! stale"  # text, not only colour
    tab.screenshot("old-tick-360-no-scripts")

    # 360 px and desktop, light and dark, scripts on and off: readable, no horizontal scroll.
    for width in (360, 1280):
        for dark in (False, True):
            for scripts in (True, False):
                tab = browser.open(page, width=width, dark=dark, scripts=scripts)
                assert tab.horizontal_overflow() == 0, (width, dark, scripts)
                background = tab.evaluate("getComputedStyle(document.body).backgroundColor")
                assert background == ("rgb(13, 17, 23)" if dark else "rgb(255, 255, 255)"), background
                colour = tab.evaluate("getComputedStyle(document.body).color")
                assert colour == ("rgb(230, 237, 243)" if dark else "rgb(31, 35, 40)"), colour
                if scripts:
                    tab.screenshot(f"old-tick-{width}-{'dark' if dark else 'light'}")


def test_the_page_in_a_browser_right_after_a_tick(cli, db_path, store, source, browser):
    add(store, "orders", source.add("/orders", json_body([{"id": 1}])))
    out = browser.shots.parent / "fresh"
    assert cli("run-due", "--status-dir", str(out)).returncode == 0
    tab = browser.open(out / "index.html")
    assert tab.evaluate(BANNER) is None  # the last tick is recent
    assert tab.evaluate(TIMES) == ["just now", "just now"]  # the tick and orders' last success
    assert tab.evaluate("document.querySelector('.headline').textContent") == "\u2713 All fresh"
    assert tab.horizontal_overflow() == 0
    tab.screenshot("fresh-360")
    browser.open(out / "index.html", width=1280, dark=True).screenshot("fresh-1280-dark")


def test_the_badges_render_in_their_colours(cli, db_path, store, source, browser):
    populate(cli, db_path, store, source)
    out = browser.shots.parent / "badges"
    assert cli("status-page", str(out)).returncode == 0
    expected = {"orders": "brightgreen", "flaky": "orange", "archive": "red", "legacy": "lightgrey"}
    wrapper = out / "badges.html"
    wrapper.write_text("<!DOCTYPE html><html><body style='margin:4px'>" + "<br>".join(
        f'<img id="{name}" src="badges/{name}.svg">' for name in expected) + "</body></html>")
    tab = browser.open(wrapper, width=300, height=200)
    for name, colour in expected.items():
        seen = tab.evaluate(f"""(() => {{
            const img = document.getElementById("{name}");
            if (!img.complete || !img.naturalWidth) return null;  // not an image Chromium could render
            const canvas = document.createElement("canvas"), c = canvas.getContext("2d");
            canvas.width = img.naturalWidth; canvas.height = img.naturalHeight; c.drawImage(img, 0, 0);
            return {{width: img.naturalWidth, height: img.naturalHeight,
                     label: Array.from(c.getImageData(3, 3, 1, 1).data),
                     message: Array.from(c.getImageData(img.naturalWidth - 3, 3, 1, 1).data)}};
        }})()""")
        assert seen is not None, name
        assert seen["height"] == 20 and seen["width"] > 60, seen
        assert all(abs(a - b) <= 30 for a, b in zip(seen["message"][:3], HEX[colour], strict=True)), (name, seen)
        assert all(abs(a - 0x55) <= 20 for a in seen["label"][:3]), (name, seen)  # the grey label
    tab.screenshot("badges")


def test_paths_that_are_no_place_for_the_files_are_refused(cli, tmp_path, monkeypatch):
    assert cli("add", "one", "--url", "http://127.0.0.1:9/x", "--interval", "manual").returncode == 0
    fifo = tmp_path / "m.prom"
    os.mkfifo(fifo)  # reading it would hang the tick; replacing /dev/null alike would be worse
    refusals = {
        ("run-due", "--metrics-file", str(fifo)): "it is not a regular file",
        ("run-due", "--metrics-file", ""): "invalid --metrics-file ''",
        ("run-due", "--status-dir", ""): "invalid --status-dir ''",  # never the current folder
        ("status-page", ""): "invalid DIR ''",
    }
    for args, said in refusals.items():
        result = cli(*args, cwd=tmp_path)
        assert result.returncode == 2 and said in result.stderr, (args, result.stderr)
    assert fifo.is_fifo() and sorted(p.name for p in tmp_path.iterdir() if p.name != "data") == ["m.prom"]
    unset = cli("run-due", env={"SYNCCTL_STATUS_DIR": ""}, cwd=tmp_path)  # an empty variable: no page
    assert (unset.returncode, unset.stderr) == (0, "") and not (tmp_path / "index.html").exists()

