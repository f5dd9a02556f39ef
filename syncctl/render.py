"""Output: JSON for scripts, rich tables for people, one-line errors for everyone.

rich is imported only when a table is drawn, so ``--json`` and cron runs stay fast.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from syncctl.models import Integration, SyncLog, SyncResult
from syncctl.schedule import format_interval
from syncctl.timeutil import format_ts, human_duration, human_relative

if TYPE_CHECKING:
    from rich.console import Console

    from syncctl.runner import RunReport

_STATUS_STYLE = {"SUCCESS": "green", "FAILED": "red", "RUNNING": "yellow", "PENDING": "yellow"}
_STATE_STYLE = {"active": "green", "manual": "cyan", "paused": "yellow", "disabled": "red"}


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def console(stream: IO[str] | None = None) -> Console:
    """A rich console: colour only on a terminal, never with NO_COLOR."""
    from rich.console import Console

    stream = stream or sys.stdout
    tty = is_terminal(stream)
    colour = tty and "NO_COLOR" not in os.environ
    return Console(
        file=stream,
        force_terminal=tty,
        no_color=not colour,
        color_system="auto" if colour else None,
        highlight=False,
        width=None if tty else 250,
        soft_wrap=not tty,
    )


def emit(renderable: Any, stream: IO[str] | None = None) -> None:
    """Print a table or text without the trailing spaces rich pads lines with."""
    out = console(stream)
    with out.capture() as captured:
        out.print(renderable)
    text = "\n".join(line.rstrip() for line in captured.get().splitlines())
    (stream or sys.stdout).write(text + "\n")


def error_line(message: str, hint: str | None = None, prefix: str = "syncctl") -> str:
    """The one line every failure prints on stderr."""
    line = f"{prefix}: {message}"
    if hint:
        line += f" (hint: {hint})"
    return " ".join(line.split())


def print_error(message: str, hint: str | None = None) -> None:
    sys.stderr.write(error_line(message, hint) + "\n")
    sys.stderr.flush()


def print_json(value: Any) -> None:
    """``--json`` output: indented for a person at a terminal, compact for a pipe."""
    if is_terminal(sys.stdout):
        sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(json.dumps(value, separators=(",", ":"), ensure_ascii=False) + "\n")


def print_json_text(text: str) -> None:
    """Like :func:`print_json`, for JSON the database built already (compact)."""
    if is_terminal(sys.stdout):
        print_json(json.loads(text))
    else:
        sys.stdout.write(text + "\n")


# -- JSON shapes (spec §5) ---------------------------------------------------------------


def log_json(log: SyncLog) -> dict[str, Any]:
    return {
        "id": log.id,
        "integration": log.integration,
        "trigger": log.trigger,
        "status": log.status,
        "attempt": log.attempt,
        "started_at": format_ts(log.started_at),
        "completed_at": format_ts(log.completed_at),
        "duration_ms": log.duration_ms,
        "records_count": log.records_count,
        "error_message": log.error_message,
        "error_hint": log.error_hint,
    }


def show_json(summary: dict[str, Any], integration: Integration, logs: list[SyncLog]) -> dict[str, Any]:
    """``show --json``: the ``list --json`` element, then the settings and the last logs."""
    return {
        **summary,
        "interval": format_interval(integration.sync_interval),
        "config": integration.config,
        "created_at": format_ts(integration.created_at),
        "updated_at": format_ts(integration.updated_at),
        "logs": [log_json(log) for log in logs],
    }


# -- tables ------------------------------------------------------------------------------


def _styled(text: str, style: str | None) -> str:
    from rich.markup import escape

    return f"[{style}]{escape(text)}[/]" if style else escape(text)


def _duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    return f"{ms / 1000:.1f}s" if ms < 60_000 else human_duration(ms / 1000)


def _table(columns: tuple[str, ...], right: tuple[str, ...] = ()):  # noqa: ANN202
    """A borderless table whose last column (the error) may wrap; numbers align right."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, no_wrap=column != columns[-1], justify="right" if column in right else "left")
    return table


def list_table(integrations: list[Integration], now: datetime) -> None:

    if not integrations:
        emit("No integrations yet. Add one: syncctl add NAME --url URL --interval 1h")
        return
    table = _table(
        ("NAME", "STATE", "INTERVAL", "LAST SYNC", "NEXT SYNC", "RECORDS", "FAILS", "LAST ERROR"),
        right=("RECORDS", "FAILS"),
    )
    for i in integrations:
        last = "-"
        if i.last_sync_at:
            last = f"{human_relative(i.last_sync_at, now)} {i.last_status or ''}".strip()
        error = ""
        if i.last_error and (i.state == "disabled" or i.consecutive_failures or i.last_status == "FAILED"):
            error = i.last_error + (f" — {i.last_hint}" if i.last_hint else "")
        table.add_row(
            _styled(i.name, None),
            _styled(i.state, _STATE_STYLE.get(i.state)),
            format_interval(i.sync_interval),
            _styled(last, _STATUS_STYLE.get(i.last_status or "")),
            human_relative(i.next_sync_at, now) if i.state == "active" else "-",
            str(i.records_count),
            str(i.consecutive_failures),
            _styled(error, "red" if error else None),
        )
    emit(table)


def history_table(logs: list[SyncLog], now: datetime) -> None:

    if not logs:
        emit("No sync logs match.")
        return
    table = _table(
        ("ID", "INTEGRATION", "STATUS", "TRIGGER", "STARTED", "DURATION", "RECORDS", "ERROR"),
        right=("ID", "DURATION", "RECORDS"),
    )
    for log in logs:
        error = (log.error_message or "") + (f" — {log.error_hint}" if log.error_hint else "")
        table.add_row(
            str(log.id),
            _styled(log.integration, None),
            _styled(log.status, _STATUS_STYLE.get(log.status)),
            f"{log.trigger}" + (f" #{log.attempt}" if log.attempt > 1 else ""),
            f"{format_ts(log.started_at)} ({human_relative(log.started_at, now)})",
            _duration(log.duration_ms),
            "-" if log.records_count is None else str(log.records_count),
            _styled(error, "red" if log.status == "FAILED" else None),
        )
    emit(table)


def show_text(integration: Integration, logs: list[SyncLog], now: datetime) -> None:
    from rich.table import Table

    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    cfg = integration.config
    rows = [
        ("name", integration.name),
        ("url", integration.url),
        ("state", _styled(integration.state, _STATE_STYLE.get(integration.state))),
        ("interval", format_interval(integration.sync_interval)),
        (
            "next sync",
            f"{format_ts(integration.next_sync_at) or '-'} ({human_relative(integration.next_sync_at, now)})"
            if integration.next_sync_at
            else "-",
        ),
        (
            "last sync",
            f"{format_ts(integration.last_sync_at)} {integration.last_status}"
            if integration.last_sync_at
            else "never",
        ),
        ("records", str(integration.records_count)),
        ("failures", str(integration.consecutive_failures)),
    ]
    if integration.last_error:
        rows.append(("last error", _styled(integration.last_error, "red")))
    if integration.last_hint:
        rows.append(("hint", _styled(integration.last_hint, None)))
    for header, value in cfg.get("headers", {}).items():
        rows.append(("header", _styled(f"{header}: {value}", None)))
    for param, value in cfg.get("params", {}).items():
        rows.append(("param", _styled(f"{param}={value}", None)))
    rate = cfg.get("rate_limit")
    rows += [
        ("records path", cfg.get("records_path") or "(auto)"),
        ("key", cfg.get("key", "id")),
        ("paginate", f"{cfg.get('paginate', 'none')} (max {cfg.get('max_pages', 1000)} pages)"),
        ("timeout", f"{cfg.get('timeout', 30):g} s"),
        ("rate limit", rate["text"] if rate else "none"),
        ("max retries", str(cfg.get("max_retries", 3))),
        ("created", format_ts(integration.created_at)),
    ]
    for header, value in rows:
        info.add_row(header, value if value.startswith("[") else _styled(value, None))
    emit(info)
    emit("\n[bold]Last 10 syncs[/]" if logs else "\nNo syncs yet.")
    if logs:
        history_table(logs, now)


def sync_line(result: SyncResult) -> None:
    """``sync``: one line per integration, as each finishes."""
    if result.status == "SUCCESS":
        sys.stdout.write(
            f"{result.name}: {result.records_count} records in {_duration(result.duration_ms)}\n"
        )
        sys.stdout.flush()
    elif result.status == "SKIPPED":
        sys.stdout.write(f"{result.name}: skipped (removed meanwhile)\n")
    else:
        print_error(f"{result.name}: {result.error_message}", result.error_hint)


def run_summary(report: RunReport) -> None:

    if not report.results:
        emit("Nothing was due.")
        return
    table = _table(("INTEGRATION", "STATUS", "TRIGGER", "RECORDS", "DURATION", "ERROR"), right=("RECORDS", "DURATION"))
    for r in report.results:
        table.add_row(
            _styled(r.name, None),
            _styled(r.status, _STATUS_STYLE.get(r.status)),
            r.trigger or "-",
            str(r.records_count),
            _duration(r.duration_ms),
            _styled(r.error_message or "", "red" if r.error_message else None),
        )
    emit(table)
    ok = sum(r.status == "SUCCESS" for r in report.results)
    emit(f"{ok} of {len(report.results)} syncs succeeded.")
