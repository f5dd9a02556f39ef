"""Output: JSON for scripts, rich tables for people, one-line errors for everyone.

rich is imported only when a table is drawn, so ``--json`` and cron runs stay fast.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from syncctl.models import Integration, SyncLog, SyncResult
from syncctl.schedule import format_interval
from syncctl.timeutil import format_ts, human_duration, human_relative, parse_ts

if TYPE_CHECKING:
    from rich.console import Console

    from syncctl.check import CheckReport
    from syncctl.config import IntegrationConfig
    from syncctl.health import Report as HealthReport
    from syncctl.runner import RunReport

_STATUS_STYLE = {"SUCCESS": "green", "FAILED": "red", "RUNNING": "yellow", "PENDING": "yellow"}
_STATE_STYLE = {"active": "green", "manual": "cyan", "paused": "yellow", "disabled": "red"}


class OutputClosed(Exception):
    """The reader of our output went away (``syncctl show NAME | head -1``): not an
    error. Deliberately not an OSError, so nothing between the write and ``cli.main``
    mistakes it for one of ours (click turns a broken pipe into exit 1)."""


class _Output:
    """stdout or stderr as syncctl writes to them: characters the stream's encoding
    cannot hold are replaced (``PYTHONIOENCODING=ascii``, a C locale), and a closed pipe
    raises :class:`OutputClosed`."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        reconfigure = getattr(stream, "reconfigure", None)
        if callable(reconfigure):
            reconfigure(errors="replace")

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise OutputClosed() from None
        except OSError as exc:
            raise self._refused(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise OutputClosed() from None
        except OSError as exc:
            raise self._refused(exc) from None

    def _refused(self, exc: OSError) -> Exception:
        """The output's device refused a write (a full disk, ``>/dev/full``, an I/O error):
        an environment fault, named as one (exit 3). What is still buffered is dropped, so
        exiting does not fail on it a second time."""
        from syncctl import errors

        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
        name = "standard error" if self._stream is sys.__stderr__ else "standard output"
        return errors.EnvironmentFault(
            f"cannot write {name}: {exc.strerror or exc}",
            "free space where the output goes, or send it elsewhere",
            kind="disk full" if exc.errno == errno.ENOSPC else "not writable",
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_output() -> tuple[IO[str], IO[str]]:
    """Wrap sys.stdout and sys.stderr (see :class:`_Output`); returns the originals."""
    original = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Output(sys.stdout), _Output(sys.stderr)  # type: ignore[assignment]
    return original


def _unicode_ok(stream: IO[str]) -> bool:
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    return encoding.startswith("utf")


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
        width=None if tty else 100_000,  # in a pipe every row stays one line, never cut
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
    # \u escapes where the output encoding cannot hold the characters: still valid JSON.
    ascii_only = not _unicode_ok(sys.stdout)
    if is_terminal(sys.stdout):
        sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=ascii_only) + "\n")
    else:
        sys.stdout.write(json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only) + "\n")


def print_json_text(text: str) -> None:
    """Like :func:`print_json`, for JSON the database built already (compact)."""
    if is_terminal(sys.stdout) or (not _unicode_ok(sys.stdout) and not text.isascii()):
        print_json(json.loads(text))
    else:  # 10,000 integrations are 3.7 MB: not copied again to add the newline
        sys.stdout.write(text)
        sys.stdout.write("\n")


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
        "not_modified": log.not_modified,
        "records_deleted": log.records_deleted,
        "schema_changes": log.schema_changes,
    }


def running_json(log: SyncLog | None) -> dict[str, Any] | None:
    """The sync running now: when it started, and the process and host running it."""
    if log is None:
        return None
    from syncctl.liveness import host_of

    return {"started_at": format_ts(log.started_at), "pid": log.pid, "host": host_of(log.owner)}


def show_json(
    summary: dict[str, Any], integration: Integration, logs: list[SyncLog], running: SyncLog | None = None
) -> dict[str, Any]:
    """``show --json``: the ``list --json`` element, then the sync running now, the
    settings and the last logs."""
    return {
        **summary,
        "running": running_json(running),
        "interval": format_interval(integration.sync_interval),
        "config": integration.config.to_json(),
        "cursor": integration.cursor,
        "table": integration.data_table,
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
    """A borderless table of one-line rows; numbers align right."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold", collapse_padding=True)
    for column in columns:
        table.add_column(column, no_wrap=True, justify="right" if column in right else "left")
    return table


def _emit_rows(columns: tuple[str, ...], right: tuple[str, ...], rows: list[tuple[list[str], str]]) -> None:
    """A table whose last column is each row's problem (an error and its hint).

    In a pipe it stays a column, so every row is one greppable line. On a terminal the
    problem goes on the lines under its row, wrapped to the terminal's width: at 80
    columns a column of its own would get a handful of characters (or be dropped), and
    the error is what the reader came for.
    """
    stream = sys.stdout
    if not is_terminal(stream):
        table = _table(columns, right)
        for cells, problem in rows:
            table.add_row(*cells, _styled(problem, "red" if problem else None))
        emit(table)
        return
    out = console(stream)
    table = _table(columns[:-1], right)
    for cells, _ in rows:
        table.add_row(*cells)
    with out.capture() as captured:
        out.print(table)
    lines = captured.get().splitlines()
    from rich.markup import escape
    from rich.padding import Padding
    from rich.text import Text

    for index, line in enumerate(lines):
        stream.write(line.rstrip() + "\n")
        problem = rows[index - 1][1] if index > 0 else ""
        if problem:
            with out.capture() as note:
                out.print(Padding(Text.from_markup(f"[red]{escape(problem)}[/]"), (0, 0, 0, 4)))
            stream.write("\n".join(x.rstrip() for x in note.get().splitlines()) + "\n")


def _problem(error: str | None, hint: str | None) -> str:
    if not error:
        return hint or ""  # a success's warning
    return error + (f" (hint: {hint})" if hint else "")


def shown_hint(integration: Integration) -> str | None:
    """The hint an admin should act on now: for a disabled integration, how to turn it
    back on (the sync's own hint may promise a retry that will not happen)."""
    if integration.state != "disabled":
        return integration.last_hint
    return f"disabled after {plural(integration.consecutive_failures, 'failed attempt')}: {integration.hint}"


def list_table(integrations: list[Integration], now: datetime) -> None:
    if not integrations:
        emit("No integrations yet. Add one: syncctl add NAME --url URL --interval 1h")
        return
    rows = []
    for i in integrations:
        last = "-"
        if i.running_since:
            last = f"syncing ({human_duration((now - i.running_since).total_seconds())})"
        elif i.last_sync_at:
            last = f"{human_relative(i.last_sync_at, now)} {i.last_status or ''}".strip()
        error = ""
        if i.last_error and (i.state == "disabled" or i.consecutive_failures or i.last_status == "FAILED"):
            error = _problem(i.last_error, shown_hint(i))
        stale = i.is_stale(now)
        cells = [
            _styled(i.name, None),
            _styled(f"{i.state}, stale" if stale else i.state, "red" if stale else _STATE_STYLE.get(i.state)),
            format_interval(i.sync_interval),
            _styled(last, "yellow" if i.running_since else _STATUS_STYLE.get(i.last_status or "")),
            human_relative(i.next_sync_at, now) if i.state == "active" else "-",
            str(i.records_count),
            str(i.consecutive_failures),
        ]
        rows.append((cells, error))
    _emit_rows(
        ("NAME", "STATE", "INTERVAL", "LAST SYNC", "NEXT SYNC", "RECORDS", "FAILS", "LAST ERROR"),
        ("RECORDS", "FAILS"),
        rows,
    )


def history_table(logs: list[SyncLog], now: datetime) -> None:
    if not logs:
        emit("No sync logs match.")
        return
    terminal = is_terminal(sys.stdout)
    rows = []
    for log in logs:
        # A person at a terminal reads "3m ago" (the width goes to the error); scripts and
        # pipes get the full stamp too.
        started = human_relative(log.started_at, now)
        if not terminal:
            started = f"{format_ts(log.started_at)} ({started})"
        cells = [
            str(log.id),
            _styled(log.integration, None),
            _styled(log.status, _STATUS_STYLE.get(log.status)),
            f"{log.trigger}" + (f" #{log.attempt}" if log.attempt > 1 else ""),
            started,
            _duration(log.duration_ms),
            _records_cell(log),
        ]
        rows.append((cells, _problem(log.error_message, log.error_hint)))
    _emit_rows(
        ("ID", "INTEGRATION", "STATUS", "TRIGGER", "STARTED", "DURATION", "RECORDS", "ERROR"),
        ("ID", "DURATION", "RECORDS"),
        rows,
    )


def _records_cell(log: SyncLog) -> str:
    """``120``, ``unchanged`` (a 304), ``118, 2 deleted``."""
    if log.not_modified:
        return "unchanged"
    if log.records_count is None:
        return "-"
    return f"{log.records_count}, {log.records_deleted} deleted" if log.records_deleted else str(log.records_count)


def show_text(integration: Integration, logs: list[SyncLog], now: datetime, running: SyncLog | None = None) -> None:
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
            f"{format_ts(integration.next_sync_at)} ({human_relative(integration.next_sync_at, now)})"
            if integration.next_sync_at and integration.state == "active"
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
        ("freshness", freshness(integration, now)),
    ]
    if integration.running_since:
        started = human_relative(integration.running_since, now)
        where = ""
        if running is not None:
            from syncctl.liveness import host_of

            where = f" by pid {running.pid} on {host_of(running.owner) or 'this host'}"
        rows.insert(5, ("syncing", _styled(f"now, started {started}{where}", "yellow")))
    if integration.last_error:
        rows.append(("last error", _styled(integration.last_error, "red")))
    hint = shown_hint(integration)
    if hint:
        rows.append(("hint", _styled(hint, None)))
    rows += config_rows(cfg)
    rows.append(("table", f"{integration.data_table} (--schema {cfg.schema}; columns: syncctl schema {integration.name})"
                 if integration.data_table else "off (records only in the records table)"))
    if cfg.incremental:
        rows.append(("cursor", "none (the next sync is a full one)" if integration.cursor is None
                     else json.dumps(integration.cursor, ensure_ascii=False)))
    rows.append(("created", format_ts(integration.created_at)))
    for header, value in rows:
        info.add_row(header, value if value.startswith("[") else _styled(value, None))
    emit(info)
    emit("\n[bold]Last 10 syncs[/]" if logs else "\nNo syncs yet.")
    if logs:
        history_table(logs, now)


def config_rows(cfg: IntegrationConfig) -> list[tuple[str, str]]:
    """``show``'s lines for an integration's settings (secrets as their ${VAR})."""
    rows = [("header", _styled(f"{name}: {value}", None)) for name, value in cfg.headers.items()]
    rows += [("param", _styled(f"{name}={value}", None)) for name, value in cfg.params.items()]
    if cfg.auth is not None:
        rows.append(("auth", _styled(auth_text(cfg.auth), None)))
    if cfg.method != "GET" or cfg.body is not None:
        rows.append(("method", cfg.method))
    if cfg.body is not None:
        rows.append(("body", _styled(json.dumps(cfg.body, ensure_ascii=False), None)))
    rows += [
        ("records path", cfg.records_path or "(auto)"),
        ("key", cfg.key),
        ("paginate", f"{cfg.pagination.text} (max {cfg.max_pages} pages)"),
        ("timeout", f"{cfg.timeout:g} s"),
        ("rate limit", cfg.rate_limit.text if cfg.rate_limit else "none"),
        ("max retries", str(cfg.max_retries)),
    ]
    if cfg.incremental:
        lookback = f" (lookback {human_duration(cfg.lookback)})" if cfg.lookback else ""
        rows.append(("incremental", f"{cfg.incremental.text}{lookback}"))
    deletes = cfg.deletes.value
    if deletes != "keep":
        deletes += f" (at most {cfg.max_delete:g}% at once)"
    rows.append(("deletes", deletes))
    rows.append(("max staleness", human_duration(cfg.max_staleness) if cfg.max_staleness else "three intervals"))
    rows.append(("min records", str(cfg.min_records)))
    return rows


def auth_text(auth: Any) -> str:
    """How ``show`` words an integration's --auth (secrets as their ${VAR})."""
    if auth.kind == "basic":
        return auth.text
    parts = [f"oauth2 {auth.grant.replace('_', ' ')} at {auth.token_url}", f"client {auth.client_id}",
             f"secret {auth.client_secret}" if auth.client_secret else "no secret",
             f"client auth {auth.client_auth}"]  # fmt: skip
    if auth.refresh_token:
        parts.append(f"refresh token {auth.refresh_token}")
    if auth.scopes:
        parts.append(f"scope {' '.join(auth.scopes)}")
    parts += [f"token param {k}={v}" for k, v in auth.token_params]
    return "; ".join(parts)


def freshness(integration: Integration, now: datetime) -> str:
    """``stale: last success 3h ago (max staleness 45m)`` or ``fresh (…)`` for ``show``."""
    if integration.stale_at is None:
        return "never stale (manual only; set --max-staleness to watch it)"
    from syncctl.health import staleness

    since, limit = staleness(integration, now)
    if integration.is_stale(now):
        return _styled(f"stale: {since} (max staleness {limit})", "red")
    return f"fresh: {since} (stale after {limit} without a success)"


def sync_line(result: SyncResult) -> None:
    """``sync``: one line per integration, as each finishes."""
    if result.status == "SUCCESS":
        what = "unchanged (304 Not Modified)" if result.not_modified else plural(result.records_count, "record")
        if result.records_deleted:
            what += f", {result.records_deleted} deleted"
        sys.stdout.write(f"{result.name}: {what} in {_duration(result.duration_ms)}\n")
        if result.error_hint:
            print_error(f"{result.name}: {result.error_hint}")
        sys.stdout.flush()
    elif result.status == "SKIPPED":
        sys.stdout.write(f"{result.name}: skipped (removed meanwhile)\n")
    else:
        print_error(f"{result.name}: {result.error_message}", result.error_hint)


class Progress:
    """``sync`` on a terminal: a spinner naming what is still syncing and how many are
    done, with each result printed above it as it arrives."""

    def __init__(self, names: list[str]) -> None:
        self.remaining = list(names)
        self.total = len(names)
        self.status = console(sys.stderr).status(self._label())

    def _label(self) -> str:
        from rich.markup import escape

        shown = ", ".join(self.remaining[:3]) + ("…" if len(self.remaining) > 3 else "")
        done = self.total - len(self.remaining)
        return escape(f"syncing {shown} ({done} of {self.total} done)")

    def done(self, result: SyncResult) -> None:
        self.status.stop()
        if result.name in self.remaining:
            self.remaining.remove(result.name)
        sync_line(result)
        self.status.update(self._label())
        if self.remaining:
            self.status.start()

    def __enter__(self) -> Progress:
        self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.status.stop()


def run_summary(report: RunReport) -> None:

    if not report.results:
        emit("Nothing was due.")
        return
    rows = [
        (
            [
                _styled(r.name, None),
                _styled(r.status, _STATUS_STYLE.get(r.status)),
                r.trigger or "-",
                str(r.records_count),
                _duration(r.duration_ms),
            ],
            _problem(r.error_message, r.error_hint),
        )
        for r in report.results
    ]
    _emit_rows(("INTEGRATION", "STATUS", "TRIGGER", "RECORDS", "DURATION", "ERROR"), ("RECORDS", "DURATION"), rows)
    emit(outcome_line(report.results))


def plural(count: int, noun: str) -> str:
    """``1 record``, ``2 records``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def outcome_line(results: list[SyncResult]) -> str:
    """``3 of 4 syncs succeeded (1 failed).`` after run-due -v and sync."""
    ok = sum(r.status == "SUCCESS" for r in results)
    failed = sum(r.status == "FAILED" for r in results)
    line = f"{ok} of {plural(len(results), 'sync')} succeeded"
    return line + (f" ({failed} failed)." if failed else ".")


# -- health (spec §10) ---------------------------------------------------------------------


def health_json(report: HealthReport) -> dict[str, Any]:
    return {
        "status": report.status.value,
        "checked_at": format_ts(report.checked_at),
        "last_tick_at": format_ts(report.last_tick_at),
        "problems": [
            {
                "integration": p.integration,
                "kind": p.kind.value,
                "message": p.message,
                "hint": p.hint,
                "since": format_ts(p.since),
            }
            for p in report.problems
        ],
    }


def health_text(report: HealthReport) -> str:
    """The Nagios/Icinga plugin output: ``SYNCCTL <STATE> - <summary> | <perfdata>``, then
    one line per problem with its hint."""
    from syncctl.health import Kind

    if report.problems:
        shown = [f"{p.integration or 'run-due'} {p.kind.value.replace('_', ' ')}" for p in report.problems[:5]]
        more = f" and {len(report.problems) - 5} more" if len(report.problems) > 5 else ""
        summary = f"{plural(len(report.problems), 'problem')}: {', '.join(shown)}{more}"
    else:
        summary = f"{plural(report.integrations, 'integration')}, none stale, failing or disabled"
        if report.last_tick_at is not None:
            summary += f"; last run-due tick {human_relative(report.last_tick_at, report.checked_at)}"
    age = (
        f"{max(0, int((report.checked_at - report.last_tick_at).total_seconds()))}s"
        if report.last_tick_at is not None
        else "U"
    )
    perfdata = " ".join(
        [f"integrations={report.integrations}"]
        + [f"{kind.value}={report.count(kind)}" for kind in (Kind.STALE, Kind.DISABLED, Kind.FAILING, Kind.PAUSED)]
        + [f"last_tick_age={age};;180"]
    )
    lines = [f"SYNCCTL {report.status.value} - {summary} | {perfdata}"]
    for p in report.problems:
        lines.append(" ".join(f"{p.integration + ': ' if p.integration else ''}{p.message} (hint: {p.hint})".split()))
    return "\n".join(lines) + "\n"


def notify_table(targets: list[dict[str, Any]], now: datetime) -> None:
    if not targets:
        emit("No notification targets. Add one: syncctl notify add URL")
        return
    rows = [
        (
            [
                str(t["id"]),
                _styled(t["url"], None),
                ",".join(t["events"]),
                str(t["after"]),
                human_relative(parse_ts(t["last_sent_at"]), now) if t["last_sent_at"] else "never",
            ],
            t["last_error"] or "",
        )
        for t in targets
    ]
    _emit_rows(("ID", "URL", "EVENTS", "AFTER", "LAST SENT", "LAST ERROR"), ("ID", "AFTER"), rows)


def records_csv(records: list[Any]) -> None:
    """``records --csv``: a header of the records' top-level fields (in the order first
    seen), one row each; nested values as JSON."""
    import csv

    if not records:
        return  # no rows, no columns: an empty file
    fields: dict[str, None] = {}
    for record in records:
        if isinstance(record, dict):
            fields.update(dict.fromkeys(str(k) for k in record))
        else:  # a bare number or string: its own column, as in the data table (spec §15)
            fields["value"] = None
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(fields)
    for record in records:
        row = {str(k): v for k, v in record.items()} if isinstance(record, dict) else {"value": record}
        writer.writerow([_csv_cell(row.get(name)) for name in fields])


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def check_text(report: CheckReport, fix_prefix: str) -> None:
    """``check``: what a sync would find, then each problem with the command that fixes it."""
    lines = [f"url: {report.url}"]
    if report.auth:
        lines.append(f"auth: {report.auth}")
    if report.status is not None:
        lines.append(f"response: HTTP {report.status}, {report.content_type or 'no content type'}"
                     f" ({plural(report.pages_fetched, 'page')} fetched)")
    if report.error is None:
        where = {None: "the whole body, as one record", "": "the body (an array)"}.get(
            report.records_at, f"at {report.records_at!r}")
        lines.append(f"records: {report.records} on the first page, {where}")
        for path, count in report.other_arrays:
            lines.append(f"  also an array of {count} objects at {path!r}")
        if report.records:
            lines.append(f"key: {report.records_with_key} of {report.records} carry {report.key!r}")
        lines.append(f"pagination: {report.pagination}"
                     + (f" (the response suggests {report.detected_pagination})" if report.detected_pagination else ""))
        if report.sample is not None:
            lines.append("sample: " + json.dumps(report.sample, ensure_ascii=False)[:2000])
    for line in lines:
        sys.stdout.write(line + "\n")
    if report.error is not None:
        print_error(report.error[0], report.error[1])
    for problem in report.problems:
        fix = f"{fix_prefix} {problem.option}" if problem.option else None
        print_error(f"problem: {problem.message}", fix)
    if report.ok:
        sys.stdout.write("ok: a sync would succeed without a warning\n")


def schema_json(integration: Integration, table: str | None, columns: list[Any], type_name: Any) -> dict[str, Any]:
    """``schema --json`` (spec §15): the data table and each column, with the field it
    holds and when it was added (``_key`` and ``_synced_at`` first, with no field)."""
    from syncctl.tables import KEY_COLUMN, SYNCED_COLUMN

    own = (KEY_COLUMN, SYNCED_COLUMN)  # a field's column never has these names (it gets _2…)
    return {
        "integration": integration.name,
        "table": table,
        "columns": [
            {"name": c.name, "type": type_name(c.type), "path": None if c.name in own else c.dotted,
             "added_at": c.added_at}
            for c in columns
        ],
    }


def schema_text(document: dict[str, Any], exists: bool) -> None:
    """``schema``: the table's columns as a table (what a dashboard author reads)."""
    if document["table"] is None:
        emit(f"{document['integration']} keeps no data table (--table off); turn it on with: "
             f"syncctl edit {document['integration']} --table NAME")
        return
    from rich.table import Table

    state = "" if exists else " (made by its first sync)"
    table = Table(title=f"table {document['table']}{state}", title_justify="left", box=None, pad_edge=False)
    for header in ("column", "type", "field", "added"):
        table.add_column(header)
    for column in document["columns"]:
        table.add_row(*(_styled(str(v) if v is not None else "-", None)
                        for v in (column["name"], column["type"], column["path"], column["added_at"])))  # fmt: skip
    emit(table)
