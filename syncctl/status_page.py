"""The status page and badges (spec §19): what ``health`` and ``list`` know, as static
files for the people who read the dashboards. ``syncctl status-page DIR`` writes them;
``run-due --status-dir DIR`` rewrites them after every tick.

    DIR/index.html          one self-contained page (Jinja2, autoescaped)
    DIR/status.json         {generated_at, last_tick_at, integrations: [...]}
    DIR/badges/NAME.svg     a shields.io-look badge: ``data | 14:03 UTC``
    DIR/badges/NAME.json    shields.io's endpoint format

An integration's state is :func:`syncctl.health.integration_problem`'s verdict, named
for readers (fresh, stale, failing, paused, disabled, manual); nothing here restates a
freshness rule.

Every file is written atomically (a temporary file beside it, then a rename) and only
when its content changes. The idle tick stays cheap the way the metrics file does
(``syncctl.metrics``): the page's second line is a fingerprint of what everything but the
last tick depends on (``store.metrics_fingerprint``, the next moment an integration goes
stale with time alone, the next UTC midnight for the badges' "today"). While it holds,
neither Jinja2 nor the integrations are loaded: the last tick is spliced into the previous
page and ``status.json`` and the badges are left alone.

The splice copies nothing. Beside the page and ``status.json`` each keeps its previous
version, ``.index.html.spare`` and ``.status.json.spare``: the same bytes but the first
line or two, since only an idle tick makes them. The tick rewrites the spare's head and
swaps it in with one ``rename(RENAME_EXCHANGE)``, so readers see the old file or the new
one, whole, as with a rename, and nothing is copied or freed (copying and freeing 30 MB
was a quarter of the tick with 10,000 integrations). Where the kernel or file system
cannot exchange, the spare is a full copy renamed over the file, as before. A full write
removes the spares first; one writer at a time (``flock`` on DIR).
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from collections.abc import Iterable
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncctl import files
from syncctl.timeutil import format_ts, parse_ts

if TYPE_CHECKING:
    from syncctl.health import Problem
    from syncctl.models import Integration
    from syncctl.store import Store

FORMAT = "1"  # bump when the files' layout changes (the templates are fingerprinted apart)
TEMPLATES = Path(__file__).with_name("templates")
PAGE_TEMPLATE = "status_page.html.j2"
BADGE_TEMPLATE = "badge.svg.j2"
RECENT = 20  # syncs in each integration's strip
BADGE_LABEL = "data"

STATES = ("fresh", "stale", "failing", "paused", "disabled", "manual")
# shields.io's named colours (the endpoint JSON) and their hex values (our SVG).
BADGE_COLOURS = {
    "fresh": "brightgreen", "failing": "orange", "stale": "red", "disabled": "red",
    "paused": "lightgrey", "manual": "lightgrey",
}  # fmt: skip
HEX = {"brightgreen": "#4c1", "orange": "#fe7d37", "red": "#e05d44", "lightgrey": "#9f9f9f"}
STATE_SYMBOLS = {"fresh": "✓", "stale": "!", "failing": "✗", "paused": "‖", "disabled": "⊘", "manual": "○"}
SYNC_SYMBOLS = {"success": "✓", "unchanged": "=", "failed": "✗"}
SYNC_CLASSES = {"success": "s", "unchanged": "u", "failed": "f"}  # short: one cell per sync, 20 per row

_FINGERPRINT = "<!-- syncctl status page "
_TICK_START = b'<time id="tick"'
_TICK_END = b"</time>"
_HEAD_LIMIT = 32 * 1024  # the last tick sits in the page's header, well within this


# -- what the files say --------------------------------------------------------------------


def assess(integration: Integration, now: datetime) -> tuple[str, Problem | None]:
    """The state a reader sees, with health's problem behind it: the problem's kind
    (disabled, paused for long, stale, failing), else what the admin set (paused,
    manual), else fresh."""
    from syncctl.health import Kind, integration_problem

    problem = integration_problem(integration, now)
    if problem is not None:
        return ("paused" if problem.kind is Kind.PAUSED else problem.kind.value), problem
    if integration.state == "paused":
        return "paused", None
    return ("manual" if integration.state == "manual" else "fresh"), None


def badge_message(last_success: datetime | None, now: datetime) -> str:
    """The last success, absolute: ``14:03 UTC`` when it was today (UTC), else the date."""
    if last_success is None:
        return "never"
    last_success = last_success.astimezone(timezone.utc)
    if last_success.date() == now.astimezone(timezone.utc).date():
        return f"{last_success:%H:%M} UTC"
    return f"{last_success:%Y-%m-%d}"


def human_time(moment: datetime) -> str:
    """How the page writes a time when scripts are off: ``2026-11-22 14:03 UTC``."""
    return f"{moment.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"


def tick_html(last_tick: datetime | None) -> str:
    """The page's one element that changes on every tick (spliced in by the idle tick; the
    template includes it as is). Only our own formatted times: nothing to escape."""
    if last_tick is None:
        return '<time id="tick">never</time>'
    return f'<time id="tick" datetime="{format_ts(last_tick)}">{human_time(last_tick)}</time>'


def json_head(generated_at: datetime, last_tick: datetime | None) -> bytes:
    """``status.json``'s first line, the part that changes on every tick."""
    head = json.dumps({"generated_at": format_ts(generated_at), "last_tick_at": format_ts(last_tick)},
                      separators=(",", ":"))
    return (head[:-1] + ",\n").encode()


def recent_syncs(store: Store, integration_ids: Iterable[int], limit: int = RECENT) -> dict[int, list[dict]]:
    """Each integration's last ``limit`` finished syncs, oldest first: an index probe each
    (sync_logs (integration_id, id))."""
    sql = (
        "SELECT status, started_at, not_modified FROM sync_logs WHERE integration_id = ?"
        " AND status IN ('SUCCESS', 'FAILED') ORDER BY id DESC LIMIT ?"
    )
    recent: dict[int, list[dict]] = {}
    for integration_id in integration_ids:
        rows = store.conn.execute(sql, (integration_id, limit)).fetchall()
        recent[integration_id] = [
            {"status": status, "started_at": format_ts(parse_ts(started)), "not_modified": bool(not_modified)}
            for status, started, not_modified in reversed(rows)
        ]
    return recent


def sync_kind(entry: dict) -> str:
    """success, unchanged (a 304 or the same content) or failed."""
    if entry["status"] == "FAILED":
        return "failed"
    return "unchanged" if entry["not_modified"] else "success"


def build(store: Store, now: datetime, *, details: bool = False) -> dict[str, Any]:
    """Everything the files say, as plain data (``status.json`` is its ``json`` part)."""
    integrations = store.list_integrations()
    recent = recent_syncs(store, [i.id for i in integrations])
    rows = []
    for i in integrations:
        state, problem = assess(i, now)
        entry: dict[str, Any] = {
            "name": i.name,
            "state": state,
            "stale": i.is_stale(now),
            "last_success_at": format_ts(i.last_success_at),
            "records_count": i.records_count,
            "recent": recent[i.id],
        }
        if details:  # as `health` words them (errors and hints are stored redacted)
            failing = i.last_error and (i.consecutive_failures or i.state == "disabled")
            entry["last_error"] = i.last_error if failing else None
            entry["hint"] = problem.hint if problem is not None else None
        rows.append(entry)
    return {"last_tick_at": store.last_tick_at(), "integrations": rows}


def headline(counts: dict[str, int], total: int) -> tuple[str, str]:
    """(the page's headline, its tone): all fresh, or what is wrong."""
    if total == 0:
        return "No integrations yet", "manual"
    wrong = [f"{counts[s]} {s}" for s in ("stale", "failing", "disabled") if counts.get(s)]
    if not wrong:
        return ("All fresh" if counts.get("fresh") else "Nothing scheduled"), "fresh"
    tone = "stale" if counts.get("stale") or counts.get("disabled") else "failing"
    return ", ".join(wrong), tone


def badge_width(text: str) -> int:
    """Approximate width in px of ``text`` in 11 px Verdana (shields.io's font)."""
    narrow, wide = set("ijlt.:,;'|!I ()[]f1r-"), set("mwMW@%")
    return round(sum(4.0 if c in narrow else 9.5 if c in wide else 7.0 for c in text)) + 10


# -- writing -------------------------------------------------------------------------------


def write(store: Store, directory: Path, now: datetime, *, details: bool = False) -> None:
    """Write or refresh DIR's files (created when missing): each only when its content
    changes, each atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = f"{FORMAT}.{_templates_signature()} {store.metrics_fingerprint()} details={int(details)}"
    last_tick = store.last_tick_at()
    with files.locked(directory):  # a lock-busy tick or `status-page` beside run-due
        if _refresh_tick(directory, data, now, last_tick):
            return
        for name in PAGE_FILES:  # the spares share a body with what is about to change
            with contextlib.suppress(FileNotFoundError):
                files.spare_of(directory / name).unlink()
        _write_all(store, directory, now, data, details=details)


def _templates_signature() -> str:
    """The templates' checksum: an upgraded page is written anew, whatever the data."""
    crc = 0
    for name in (PAGE_TEMPLATE, BADGE_TEMPLATE):
        crc = zlib.crc32((TEMPLATES / name).read_bytes(), crc)
    return f"{crc:08x}"


def _next_change(store: Store, now: datetime) -> datetime:
    """Until when the files hold with time alone: an integration going stale, or the next
    UTC midnight (the badges' "today")."""
    midnight = datetime.combine(now.astimezone(timezone.utc).date() + timedelta(days=1), time(), timezone.utc)
    stale = store.next_staleness_change(now)
    return min(midnight, stale) if stale is not None else midnight


def _write_all(store: Store, directory: Path, now: datetime, data: str, *, details: bool) -> None:
    from jinja2 import Environment, FileSystemLoader
    from markupsafe import Markup

    built = build(store, now, details=details)
    last_tick, rows = built["last_tick_at"], built["integrations"]
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["human_time"] = lambda stamp: human_time(parse_ts(stamp)) if stamp else "never"
    badges = directory / "badges"
    badges.mkdir(parents=True, exist_ok=True)

    badge = env.get_template(BADGE_TEMPLATE)
    wanted = set()
    for row in rows:
        colour = BADGE_COLOURS[row["state"]]
        message = badge_message(parse_ts(row["last_success_at"]), now)
        svg = badge.render(
            label=BADGE_LABEL, message=message, colour=HEX[colour], state=row["state"],
            label_width=badge_width(BADGE_LABEL), message_width=badge_width(message),
        )
        endpoint = {"schemaVersion": 1, "label": BADGE_LABEL, "message": message, "color": colour}
        for name, content in ((f"{row['name']}.svg", svg.encode()),
                              (f"{row['name']}.json", (json.dumps(endpoint) + "\n").encode())):
            wanted.add(name)
            write_if_changed(badges / name, content)
    for old in badges.iterdir():  # a removed integration's badge must not stay green
        if old.suffix in (".svg", ".json") and old.name not in wanted and not old.name.startswith("."):
            with contextlib.suppress(OSError):
                old.unlink()

    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # compact: copied every tick
    body = ("\"integrations\":[\n" + ",\n".join(dumps(r) for r in rows) + ("\n" if rows else "") + "]}\n").encode()
    write_if_changed(directory / "status.json", json_head(now, last_tick) + body)

    counts = {s: sum(r["state"] == s for r in rows) for s in STATES}
    title, tone = headline(counts, len(rows))
    for row in rows:
        row["symbol"] = STATE_SYMBOLS[row["state"]]
        row["strip"] = [
            {"kind": sync_kind(e), "class": SYNC_CLASSES[sync_kind(e)], "symbol": SYNC_SYMBOLS[sync_kind(e)],
             "at": human_time(parse_ts(e["started_at"]))}
            for e in row["recent"]
        ]
    until = _next_change(store, now)
    fingerprint = f"{_FINGERPRINT}{data} until {format_ts(until)} json {len(body)} -->"
    page = env.get_template(PAGE_TEMPLATE).render(
        fingerprint=Markup(fingerprint), tick=Markup(tick_html(last_tick)), rows=rows, counts=counts,
        total=len(rows), headline=title, tone=tone, details=details, recent=RECENT,
        symbols=SYNC_SYMBOLS, state_symbols=STATE_SYMBOLS,
    )
    write_if_changed(directory / "index.html", page.encode())  # last: its fingerprint vouches for the rest


def _refresh_tick(directory: Path, data: str, now: datetime, last_tick: datetime | None) -> bool:
    """The idle tick: when the page was written for ``data`` and still holds at ``now``,
    splice the last tick into it and into ``status.json`` (the rest copied by the kernel)
    and return True; False when everything must be written anew."""
    index, status = directory / "index.html", directory / "status.json"
    try:
        with open(index, "rb") as page, open(status, "rb") as previous_json:
            head = page.read(_HEAD_LIMIT)
            lines = head.split(b"\n", 2)
            if len(lines) < 3:
                return False
            body_size = _reusable(lines[1].decode("utf-8", "replace"), data, now)
            first = previous_json.readline()
            json_size = os.fstat(previous_json.fileno()).st_size
            if body_size is None or json_size - len(first) != body_size or not first.startswith(b'{"generated_at":'):
                return False
            if not (directory / "badges").is_dir():
                return False
            start = head.find(_TICK_START)
            end = head.find(_TICK_END, start) + len(_TICK_END)
            if start < 0 or end < len(_TICK_END):
                return False
            tick = tick_html(last_tick).encode()
            if head[start:end] != tick:
                files.renew_head(index, page, head[:start] + tick, end)
            files.renew_head(status, previous_json, json_head(now, last_tick), len(first))
    except (OSError, UnicodeError):
        return False
    return True


def _reusable(line: str, data: str, now: datetime) -> int | None:
    """The page's fingerprint line, if written for ``data`` and still true at ``now``:
    the size of ``status.json`` after its first line; else None."""
    prefix = f"{_FINGERPRINT}{data} until "
    if not line.startswith(prefix) or not line.endswith(" -->"):
        return None
    try:
        until, _, size = line[len(prefix):-4].partition(" json ")
        if not now < parse_ts(until):  # type: ignore[operator]
            return None
        return int(size)
    except (ValueError, TypeError):
        return None


PAGE_FILES = ("index.html", "status.json")  # each with a spare (syncctl.files)


def write_if_changed(path: Path, content: bytes) -> bool:
    """Write ``content`` to ``path`` atomically unless it already holds exactly that
    (an unchanged file keeps its inode and mtime). True when written."""
    try:
        if path.stat().st_size == len(content) and path.read_bytes() == content:
            return False
    except OSError:
        pass
    files.replace(path, lambda out: out.write(content))
    return True
