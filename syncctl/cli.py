"""The command line. Each command parses its options, calls one function and renders
the result; domain errors become exit codes in one place, ``main``."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from syncctl import __version__, render
from syncctl.config import IntegrationOptions, build_config, validate_name, validate_url
from syncctl.errors import BusyError, SyncctlError, UsageError
from syncctl.models import SyncLog
from syncctl.schedule import (
    format_interval,
    parse_age,
    parse_duration,
    parse_interval,
    plan_on_new_interval,
    plan_on_resume,
)
from syncctl.store import Store, default_db_path, is_url
from syncctl.timeutil import human_relative, parse_ts, timedelta, utcnow

if TYPE_CHECKING:
    from syncctl.engine import SyncSettings

app = typer.Typer(
    name="syncctl",
    help="Keep dashboard data fresh: sync HTTP/JSON APIs into SQLite, from cron.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


# The commands that create the database when it is missing (spec §2). Every other one
# refuses a missing file (exit 3): a crontab line with a mistyped path must be loud.
CREATES_DATABASE = frozenset({"add"})


@dataclass
class AppState:
    db_path: Path | str  # a file, or a postgresql:// URL
    explicit: bool = False  # --db or SYNCCTL_DB was given
    create: bool = False  # the command may create a missing database
    _store: Store | None = None

    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.db_path, create=self.create)
        return self._store


def _state(ctx: typer.Context) -> AppState:
    return ctx.ensure_object(AppState) if ctx.obj is None else ctx.obj


def _now() -> datetime:
    return utcnow()


def _recover(store: Store) -> None:
    """Every command that looks at logs first finishes those of dead processes."""
    from syncctl.engine import recover_orphans

    recover_orphans(store, _now())


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"syncctl {__version__}\n")
        raise typer.Exit()


@app.callback(epilog="Example: syncctl --db /var/lib/syncctl/syncctl.db list")
def _global(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="SYNCCTL_DB",
            show_envvar=True,
            metavar="PATH|URL",
            # A str: a Path would fold postgresql:// into postgresql:/. The store names
            # what is wrong with the file or the server, and the fix.
            help="The database file, or postgresql://user@host/db "
            "[default: $XDG_DATA_HOME/syncctl/syncctl.db].",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    ctx.obj = AppState(
        db_path=(db if is_url(db) else Path(db)) if db else default_db_path(),
        explicit=db is not None,
        create=ctx.invoked_subcommand in CREATES_DATABASE,
    )


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
NamesArg = Annotated[list[str] | None, typer.Argument(metavar="NAME…", show_default=False)]
AllOption = Annotated[bool, typer.Option("--all", help="Every integration.")]


def _names_or_all(names: list[str] | None, all_: bool, command: str) -> None:
    if bool(names) == all_:
        raise UsageError(
            f"{command} takes integration names or --all (one of the two)",
            f"e.g. syncctl {command} weather, or syncctl {command} --all",
        )


# -- managing integrations -----------------------------------------------------------------


UrlOption = Annotated[str, typer.Option("--url", metavar="URL", help="The http(s) URL to GET.")]
HeaderOption = Annotated[
    list[str],
    typer.Option("--header", "-H", metavar="'NAME: VALUE'", help="A header (repeatable); secrets as ${VAR}."),
]
ParamOption = Annotated[
    list[str],
    typer.Option("--param", "-p", metavar="KEY=VALUE", help="A query parameter (repeatable); secrets as ${VAR}."),
]
RecordsPathOption = Annotated[
    str | None, typer.Option(metavar="PATH", help="Dotted path to the array of records, e.g. data.items.")
]
KeyOption = Annotated[
    str | None, typer.Option(metavar="FIELD", help="The record field that identifies it [default: id].")
]
PaginateOption = Annotated[
    str | None, typer.Option(metavar="MODE", help="none, link, next-url:PATH, cursor:PATH:PARAM or page:PARAM.")
]
MaxPagesOption = Annotated[int | None, typer.Option(metavar="N", help="Never fetch more pages than this.")]
TimeoutOption = Annotated[float | None, typer.Option(metavar="SECONDS", help="Seconds per request.")]
RateLimitOption = Annotated[str | None, typer.Option(metavar="RATE", help="At most N/s, N/m or N/h requests.")]
MaxRetriesOption = Annotated[
    int | None, typer.Option(metavar="N", help="Failed scheduled retries before it is disabled.")
]


@app.command(
    epilog="Example: syncctl add weather --url 'https://api.example.com/v1/obs' "
    "--interval 15m --header 'Authorization: Bearer ${WEATHER_TOKEN}' "
    "--records-path data.items --paginate link"
)
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="A lowercase slug: [a-z0-9][a-z0-9._-]{0,63}.")],
    url: UrlOption,
    interval: Annotated[
        str,
        typer.Option(metavar="INTERVAL", help="5m, 15m, 1h, 1d, '2 hours', hourly, daily, weekly, or manual."),
    ] = "1h",
    header: HeaderOption = [],  # noqa: B006 - Typer reads the default, never mutates it
    param: ParamOption = [],  # noqa: B006
    records_path: RecordsPathOption = None,
    key: KeyOption = None,
    paginate: PaginateOption = "none",
    max_pages: MaxPagesOption = 1000,
    timeout: TimeoutOption = 30.0,
    rate_limit: RateLimitOption = None,
    max_retries: MaxRetriesOption = 3,
) -> None:
    """Register an integration; its first sync is due at once."""
    seconds = parse_interval(interval)
    # The option aliases are Optional for `edit`; add's own defaults above are never None
    # (an empty --paginate '' means the default, none).
    config = build_config(IntegrationOptions(
        headers=header, params=param, records_path=records_path, key=key, paginate=paginate or "none",
        max_pages=max_pages, timeout=timeout, rate_limit=rate_limit, max_retries=max_retries,
    ))
    store = _state(ctx).store()
    integration = store.add_integration(
        name=validate_name(name), url=validate_url(url), config=config, interval=seconds, now=_now()
    )
    when = "its first sync is due now" if seconds else "it syncs only when you run: syncctl sync " + name
    sys.stdout.write(f"added {integration.name} ({format_interval(seconds)}); {when}\n")


@app.command(epilog="Example: syncctl edit weather --timeout 60 --records-path data.items")
def edit(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME")],
    url: Annotated[str | None, typer.Option("--url", metavar="URL", help="The http(s) URL to GET.")] = None,
    header: HeaderOption = [],  # noqa: B006
    param: ParamOption = [],  # noqa: B006
    records_path: RecordsPathOption = None,
    key: KeyOption = None,
    paginate: PaginateOption = None,
    max_pages: MaxPagesOption = None,
    timeout: TimeoutOption = None,
    rate_limit: RateLimitOption = None,
    max_retries: MaxRetriesOption = None,
) -> None:
    """Change an integration's settings, keeping its logs, records and schedule.

    Each option given replaces that setting (--header and --param replace all headers or
    all parameters); the others stay as they are. An empty --records-path or --rate-limit
    ('') goes back to the default.
    """
    store = _state(ctx).store()
    integration = store.get(name)
    options = IntegrationOptions.from_config(integration.config)
    given = {
        "headers": header or None, "params": param or None, "records_path": records_path, "key": key,
        "paginate": paginate, "max_pages": max_pages, "timeout": timeout, "rate_limit": rate_limit,
        "max_retries": max_retries,
    }
    if url is None and all(value is None for value in given.values()):
        raise UsageError("edit needs at least one option to change", "see: syncctl edit --help")
    defaults = IntegrationOptions()
    for field_name, value in given.items():
        if value is not None:  # '' means "back to the default"
            setattr(options, field_name, value if value != "" else getattr(defaults, field_name))
    config = build_config(options)
    new_url = validate_url(url if url is not None else integration.url)
    store.update_integration(integration.id, url=new_url, config=config, now=_now())
    sys.stdout.write(f"updated {name}\n")


@app.command(epilog="Example: syncctl remove weather --yes")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete an integration with its sync logs and stored records."""
    store = _state(ctx).store()
    integration = store.get(name)
    _recover(store)
    if not yes:
        if not (render.is_terminal(sys.stdin) and render.is_terminal(sys.stderr)):
            raise UsageError(
                f"refusing to remove {name} without confirmation", f"run: syncctl remove {name} --yes"
            )
        if not typer.confirm(
            f"Remove {name} with its logs and {integration.records_count} records?", err=True
        ):
            raise typer.Exit(1)
    removed = store.remove_integration(integration.id)
    if isinstance(removed, SyncLog):
        from syncctl.engine import holder_text

        raise BusyError(
            f"{name} is being synced right now ({holder_text(removed)})",
            f"try again when it finishes; follow it with: syncctl history {name}",
        )
    logs, records = removed
    sys.stdout.write(f"removed {name} ({logs} logs, {records} records)\n")


@app.command("list", epilog="Example: syncctl list --json | jq '.[] | select(.state != \"active\")'")
def list_(ctx: typer.Context, json_: JsonOption = False) -> None:
    """One row per integration: state, schedule, last sync, records, failures."""
    store = _state(ctx).store()
    _recover(store)
    if json_:
        render.print_json_text(store.summaries_json())
    else:
        render.list_table(store.list_integrations(), _now())


@app.command(epilog="Example: syncctl show weather --json")
def show(
    ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME")], json_: JsonOption = False
) -> None:
    """Everything about one integration, and its last 10 syncs."""
    store = _state(ctx).store()
    integration = store.get(name)
    _recover(store)
    integration = store.get(name)
    logs = store.history(integration_id=integration.id, limit=10)
    if json_:
        summary = json.loads(store.summaries_json(name))[0]
        render.print_json(render.show_json(summary, integration, logs))
    else:
        render.show_text(integration, logs, _now())


@app.command("set-interval", epilog="Example: syncctl set-interval weather 30m")
def set_interval(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME")],
    interval: Annotated[str, typer.Argument(metavar="INTERVAL", help="5m, 1h, daily, '2 hours', manual, …")],
) -> None:
    """Change how often an integration syncs (or 'manual' for never on its own)."""
    store = _state(ctx).store()
    integration = store.get(name)
    seconds = parse_interval(interval)
    now = _now()
    next_at = plan_on_new_interval(seconds, integration.last_sync_at, now)
    store.set_interval(integration.id, seconds, next_at, now)
    when = f"next sync {human_relative(next_at, now)}" if next_at else "manual syncs only"
    if next_at and not integration.sync_enabled:
        when += f" once resumed (it is {integration.state})"
    sys.stdout.write(
        f"{name}: every {format_interval(seconds)}; {when}\n" if seconds else f"{name}: {when}\n"
    )


@app.command(epilog="Example: syncctl pause weather crm")
def pause(ctx: typer.Context, names: NamesArg = None, all_: AllOption = False) -> None:
    """Stop scheduled syncs (a manual sync still works)."""
    _names_or_all(names, all_, "pause")
    store = _state(ctx).store()
    integrations = store.resolve(names or [], all_)
    store.pause([i.id for i in integrations], _now())
    for i in integrations:
        sys.stdout.write(f"paused {i.name}\n")


@app.command(epilog="Example: syncctl resume weather")
def resume(ctx: typer.Context, names: NamesArg = None, all_: AllOption = False) -> None:
    """Re-enable scheduled syncs (also after auto-disable) and clear the failure streak."""
    _names_or_all(names, all_, "resume")
    store = _state(ctx).store()
    integrations = store.resolve(names or [], all_)
    now = _now()
    resumed = store.resume(
        [i.id for i in integrations], now, lambda i: plan_on_resume(i.slot_at, i.sync_interval, now)
    )
    for i in resumed:
        when = f"next sync {human_relative(i.next_sync_at, now)}" if i.next_sync_at else "manual only"
        sys.stdout.write(f"resumed {i.name}; {when}\n")


# -- syncing -------------------------------------------------------------------------------


def _settings(sync_timeout: float, max_rps: float | None = None) -> SyncSettings:
    from syncctl.engine import SyncSettings

    if not 0 < sync_timeout <= 86400:
        raise UsageError(f"invalid --sync-timeout {sync_timeout:g}", "use a number of seconds up to 86400")
    limiter = None
    if max_rps is not None:
        if not 0 < max_rps <= 100_000:
            raise UsageError(f"invalid --max-rps {max_rps:g}", "use a positive number, e.g. 10")
        from syncctl.fetch import RateLimiter

        limiter = RateLimiter(max_rps)
    return SyncSettings(sync_timeout=sync_timeout, clock=_now, global_limiter=limiter)


@app.command(epilog="Example: syncctl sync weather   (or: syncctl sync --all)")
def sync(
    ctx: typer.Context,
    names: NamesArg = None,
    all_: AllOption = False,
    sync_timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds one sync may take in all.")
    ] = 300.0,
) -> None:
    """Sync now, whatever the schedule or pause state. Exit 1 if any failed."""
    from syncctl.runner import Stopped, flush_and_exit, run_syncs

    _names_or_all(names, all_, "sync")
    store = _state(ctx).store()
    integrations = store.resolve(names or [], all_)
    settings = _settings(sync_timeout)
    _recover(store)
    progress = render.Progress([i.name for i in integrations]) if render.is_terminal(sys.stderr) else None
    try:
        with progress or contextlib.nullcontext():
            report = run_syncs(
                store, integrations, manual=True, concurrency=4, settings=settings,
                on_result=progress.done if progress else render.sync_line,
            )
    except Stopped as stopped:
        render.print_error(
            f"sync interrupted by {_signame(stopped.report.signal)}",
            "unfinished syncs were logged as interrupted",
        )
        flush_and_exit(128 + (stopped.report.signal or 2))
    if len(integrations) > 1:
        sys.stdout.write(render.outcome_line(report.results) + "\n")
    if report.failed:
        raise typer.Exit(1)
    if report.busy:
        raise typer.Exit(BusyError.exit_code)


def _signame(signum: int | None) -> str:
    import signal

    return signal.Signals(signum).name if signum else "a signal"


@app.command(
    "run-due",
    epilog="Example (crontab): * * * * * SYNCCTL_DB=/var/lib/syncctl/"
    "syncctl.db /usr/local/bin/syncctl run-due",
)
def run_due(
    ctx: typer.Context,
    concurrency: Annotated[int, typer.Option(metavar="N", help="Syncs at once.")] = 4,
    max_rps: Annotated[
        float | None, typer.Option(metavar="RPS", help="Requests per second, all syncs together.")
    ] = None,
    sync_timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds one sync may take in all.")
    ] = 300.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print a summary and notes.")] = False,
) -> None:
    """Sync every integration that is due (the cron entry point). Silent when all is well."""
    from syncctl import runner

    if not 1 <= concurrency <= 256:
        raise UsageError(f"invalid --concurrency {concurrency}", "use 1 to 256")
    settings = _settings(sync_timeout, max_rps)
    store = _state(ctx).store()
    verbose = verbose or render.is_terminal(sys.stdout)

    def on_result(result):  # noqa: ANN001, ANN202
        if result.status == "FAILED":
            render.print_error(f"{result.name}: {result.error_message}", result.error_hint)
        elif result.status == "BUSY" and verbose:
            render.print_error(f"note: skipped {result.error_message}")

    try:
        report = runner.run_due(
            store, now=_now, concurrency=concurrency, settings=settings, on_result=on_result
        )
    except runner.Stopped as stopped:
        signum = stopped.report.signal or 15
        render.print_error(
            f"run-due stopped by {_signame(signum)}",
            "unfinished syncs were logged as interrupted and are due at the next run",
        )
        runner.flush_and_exit(128 + signum)
    if report.locked_by is not None:
        if verbose:
            render.print_error(f"note: another run-due is running ({report.locked_by}); nothing to do")
        return
    for integration in report.disabled:
        render.print_error(
            f"{integration.name} is now disabled after "
            f"{render.plural(integration.consecutive_failures, 'failed attempt')}; last error: {integration.last_error}",
            f"fix the cause, then run: syncctl resume {integration.name}",
        )
    if verbose:
        render.run_summary(report)
    if report.failed or report.disabled:
        raise typer.Exit(1)


# -- looking back --------------------------------------------------------------------------


@app.command(epilog="Example: syncctl history weather --status failed --since 24h --json | jq .")
def history(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(metavar="[NAME]", help="Only this integration.")] = None,
    limit: Annotated[int, typer.Option(metavar="N", help="At most this many logs.")] = 20,
    status: Annotated[str | None, typer.Option(metavar="STATUS", help="success, failed or running.")] = None,
    since: Annotated[
        str | None, typer.Option(metavar="AGE", help="Only logs started within, e.g. 24h, 7d.")
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Sync logs, newest first."""
    if not 1 <= limit <= 1_000_000:
        raise UsageError(f"invalid --limit {limit}", "use a number from 1 up")
    statuses = {"success": "SUCCESS", "failed": "FAILED", "running": "RUNNING"}
    if status is not None and status.lower() not in statuses:
        raise UsageError(f"invalid --status {status!r}", "use success, failed or running")
    now = _now()
    since_at = _parse_since(since, now) if since is not None else None
    store = _state(ctx).store()
    integration_id = store.get(name).id if name is not None else None
    _recover(store)
    logs = store.history(
        integration_id=integration_id,
        limit=limit,
        status=statuses[status.lower()] if status else None,
        since=since_at,
    )
    if json_:
        render.print_json([render.log_json(log) for log in logs])
    else:
        render.history_table(logs, now)


def _parse_since(text: str, now: datetime) -> datetime:
    if parse_duration(text) is not None:
        return now - timedelta(seconds=parse_age(text, "--since"))
    try:
        return parse_ts(text)  # type: ignore[return-value]
    except ValueError:
        raise UsageError(
            f"invalid --since {text!r}",
            "use a duration such as 30m, 24h, 7d, or a time like 2026-11-22T10:00:00Z",
        ) from None


@app.command(epilog="Example: syncctl prune --older-than 90d")
def prune(
    ctx: typer.Context,
    older_than: Annotated[str, typer.Option(metavar="AGE", help="Delete logs older than this, e.g. 90d.")],
) -> None:
    """Delete old sync logs, keeping each integration's newest 10. Records are untouched."""
    seconds = parse_age(older_than, "--older-than")
    cutoff = _now() - timedelta(seconds=seconds)
    removed = _state(ctx).store().prune(cutoff)
    total = sum(removed.values())
    sys.stdout.write(
        f"removed {total} logs started before {cutoff:%Y-%m-%d %H:%M} UTC"
        " (kept each integration's newest 10)\n"
    )
    for name, count in sorted(removed.items()):
        sys.stdout.write(f"  {name}: {count}\n")


@app.command(epilog="Example: syncctl demo")
def demo(ctx: typer.Context) -> None:
    """A self-contained tour: a local HTTP source, three integrations, one run-due.

    It always works on a new database: the --db path if no file is there yet, else a
    temporary one, so it never adds its samples to a database in use.
    """
    from syncctl.demo import run_demo

    state = _state(ctx)
    path = state.db_path
    fresh = state.explicit and isinstance(path, Path) and not path.exists()
    raise typer.Exit(run_demo(path if fresh else None))


# -- the entry point -------------------------------------------------------------------------


def _usage_error(exc: Exception) -> int:
    """One line for a parse error (unknown option, bad value, missing argument): exit 2."""
    formatter = getattr(exc, "format_message", None)
    message = formatter() if callable(formatter) else str(exc)
    if type(exc).__name__ == "NoArgsIsHelpError":  # `syncctl` alone: its message is the help
        sys.stderr.write(message.rstrip("\n") + "\n")
        return UsageError.exit_code
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", None) or "syncctl"
    render.print_error(message.rstrip("."), f"see: {command} --help")
    return UsageError.exit_code


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every failure becomes one line on stderr and a documented exit code."""
    original = render.guard_output()
    try:
        code = _run(argv)
        sys.stdout.flush()  # a reader that left after our last write is noticed here
    except render.OutputClosed:
        code = _reader_left()
    finally:
        sys.stdout, sys.stderr = original
    sys.exit(code)


def _reader_left() -> int:
    """A reader such as `head` went away: not an error of ours. What is still buffered
    goes nowhere, so exiting cannot fail on it either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


def _run(argv: list[str] | None) -> int:
    code = 0
    try:
        result = app(args=argv, prog_name="syncctl", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        render.print_error("aborted")
        code = 130
    except SyncctlError as exc:
        render.print_error(exc.message, exc.hint)
        code = exc.exit_code
    except typer.TyperException as exc:  # the command line did not parse
        code = _usage_error(exc)
    except KeyboardInterrupt:
        render.print_error("interrupted")
        code = 130
    except render.OutputClosed:
        code = _reader_left()
    except Exception as exc:  # a bug: still one line, and the traceback on request
        if os.environ.get("SYNCCTL_DEBUG"):
            raise
        render.print_error(f"internal error: {type(exc).__name__}: {exc}",
                           "please report this bug; SYNCCTL_DEBUG=1 shows the traceback")
        code = 1
    return code
