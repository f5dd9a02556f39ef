"""The command line. Each command parses its options, calls one function and renders
the result; domain errors become exit codes in one place, ``main``.

No ``from __future__ import annotations`` here: typer reads every command's signature on
every run (the cron tick included), and real annotations spare it evaluating ~450 strings
(about 5 ms a run)."""

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from syncctl import __version__, render, runlock, settings
from syncctl.config import (
    IntegrationOptions,
    build_config,
    validate_name,
    validate_url,
)
from syncctl.errors import BusyError, SyncctlError, UsageError
from syncctl.models import SyncLog
from syncctl.schedule import (
    SYNC_TIMEOUT,
    checked_sync_timeout,
    format_interval,
    parse_age,
    parse_duration,
    parse_interval,
    plan_on_new_interval,
    plan_on_resume,
)
from syncctl.store import Store, default_db_path, is_url
from syncctl.tables import OFF as TABLE_OFF
from syncctl.tables import default_table_name, parse_table
from syncctl.timeutil import human_relative, parse_ts, timedelta, utcnow

if TYPE_CHECKING:
    from syncctl.engine import SyncSettings

app = typer.Typer(
    name="syncctl",
    help="Keep dashboard data fresh: sync HTTP/JSON APIs into SQLite or PostgreSQL, from cron.",
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

    def discard_new_database(self) -> None:
        """Remove the database this command created, when it ends refused: the next
        command must find the path missing as before (exit 3), not an empty database."""
        if self._store is not None:
            self._store.close()
            self._store = None
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(OSError):
                Path(f"{self.db_path}{suffix}").unlink()

    def store(self, *, create: bool = False) -> Store:
        """The database; only ``add`` (``create``) and ``notify add`` (``create=True``)
        may create it: for any other command a missing file is a mistyped path (exit 3)."""
        if self._store is None:
            self._store = Store.open(self.db_path, create=self.create or create)
            for notice in self._store.notices:  # what a migration chose, said once
                render.print_error(f"note: {notice}")
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
TableOption = Annotated[
    str | None,
    typer.Option(metavar="NAME|off", help="The typed table of its records [default: the name, - and . as _]."),
]


@app.command(
    epilog="Example: syncctl add weather --url 'https://api.example.com/v1/obs' "
    "--interval 15m --header 'Authorization: Bearer ${WEATHER_TOKEN}' "
    "--records-path data.items --paginate link"
)
@settings.options("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="A lowercase slug: [a-z0-9][a-z0-9._-]{0,63}.")],
    url: UrlOption,
    interval: Annotated[
        str,
        typer.Option(metavar="INTERVAL", help="5m, 15m, 1h, 1d, '2 hours', hourly, daily, weekly, or manual."),
    ] = "1h",
    table: TableOption = None,
    options: IntegrationOptions | None = None,
) -> None:
    """Register an integration; its first sync is due at once."""
    seconds = parse_interval(interval)
    config = build_config(options)
    validate_name(name)
    table_name = parse_table(table) if table is not None else default_table_name(name)
    url = validate_url(url)  # all of it before the database is opened: a refused add creates none
    store = _state(ctx).store()
    integration = store.add_integration(
        name=name, url=url, config=config, interval=seconds, now=_now(),
        table=None if table_name == TABLE_OFF else table_name,
    )
    when = "its first sync is due now" if seconds else "it syncs only when you run: syncctl sync " + name
    sys.stdout.write(f"added {integration.name} ({format_interval(seconds)}); {when}\n")


@app.command(epilog="Example: syncctl edit weather --timeout 60 --records-path data.items")
@settings.options("edit")
def edit(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME")],
    url: Annotated[str | None, typer.Option("--url", metavar="URL", help="The http(s) URL to GET.")] = None,
    table: TableOption = None,
    options: IntegrationOptions | None = None,
) -> None:
    """Change an integration's settings, keeping its logs, records and schedule.

    Each option given replaces that setting (--header and --param replace all headers or
    all parameters); the others stay as they are. An empty value ('') goes back to the
    default. Adding --incremental seeds its cursor from the records stored already.
    --table NAME renames the data table (or builds it from the records stored, when it
    was off); --table off drops it.
    """
    from syncctl import manifest

    store = _state(ctx).store()
    integration = store.get(name)
    given = options
    if url is None and not given.given() and table is None:
        raise UsageError("edit needs at least one option to change", "see: syncctl edit --help")
    config = build_config(integration.config.to_options().merged(given))
    new_url = validate_url(url if url is not None else integration.url)
    table_name = integration.data_table
    if table is not None:  # renamed, dropped (off) or made from the records stored
        chosen = parse_table(table) if table else default_table_name(name)
        table_name = None if chosen == TABLE_OFF else chosen
    manifest.change_integration(store, integration, url=new_url, config=config, table=table_name, now=_now())
    sys.stdout.write(f"updated {name}\n")


@app.command(
    epilog="Examples: syncctl check crm; syncctl check --url 'http://127.0.0.1:8001/db/items.json' --json"
)
@settings.options("check")
def check(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(metavar="[NAME]", help="An integration to try.")] = None,
    url: Annotated[str | None, typer.Option("--url", metavar="URL", help="Try this URL with add's options.")] = None,
    json_: JsonOption = False,
    options: IntegrationOptions | None = None,
) -> None:
    """A dry run: fetch the first page (and the second), write nothing, and say what a
    sync would find and which option fixes each problem. Exit 1 if a sync would fail or
    warn. With --url it needs no database."""
    from syncctl.check import report_json, run_check

    given = options
    if (name is None) == (url is None):
        raise UsageError("check takes an integration NAME or --url URL (one of the two)",
                         "e.g. syncctl check crm, or syncctl check --url https://api.example.com/items")
    tokens = None
    if name is not None:
        store = _state(ctx).store()
        integration = store.get(name)
        config = build_config(integration.config.to_options().merged(given))
        target, fix = integration.url, f"syncctl edit {name}"
        if config.auth is not None and config.auth.kind == "oauth2" and config.auth == integration.config.auth:
            from syncctl.auth import keeper_for
            from syncctl.errors import SyncError

            try:  # the held token and the one-refresh rule, shared with syncs
                tokens = keeper_for(integration.id, store, os.environ, {}, _now)
            except SyncError as exc:
                raise UsageError(exc.message, exc.hint) from None
    else:
        config, target, fix = build_config(given), validate_url(url), "add to syncctl add:"
    report = run_check(target, config, tokens=tokens)
    if json_:
        render.print_json(report_json(report))
    else:
        render.check_text(report, fix)
    if not report.ok:
        raise typer.Exit(1)


# -- integrations as code (spec §17) ---------------------------------------------------------


FileArg = Annotated[str, typer.Argument(metavar="FILE|-", help="A TOML file of [integrations.NAME] tables, or - for stdin.")]


def _read_manifest(path: str) -> Any:
    """The file (or stdin), parsed and validated; any problem is one line, exit 2."""
    from syncctl import manifest

    source = "stdin" if path == "-" else path
    if not path:  # '' would read the current folder
        raise UsageError("invalid FILE '': no path", "pass a TOML file written by syncctl export, or - for stdin")
    try:  # bytes: the locale's encoding (a C locale: ASCII) says nothing about a TOML file's
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}", "pass a TOML file written by syncctl export, or -") from None
    try:
        text = raw.decode("utf-8-sig")  # TOML is UTF-8; a byte-order mark some editors write is let through
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read {source}: not UTF-8 (byte {exc.start} is 0x{raw[exc.start]:02x})",
                         "TOML files are UTF-8: save it as UTF-8") from None  # fmt: skip
    return manifest.parse(text, source)


@app.command(epilog="Example: syncctl export -o integrations.toml   (or: syncctl export weather crm)")
def export(
    ctx: typer.Context,
    names: NamesArg = None,
    output: Annotated[str | None, typer.Option("--output", "-o", metavar="FILE", help="Write here, not stdout.")] = None,
) -> None:
    """Write integrations (all, or those named) and notification targets as TOML for
    syncctl apply: defaults left out, secrets only as their ${VAR} references."""
    from syncctl import manifest

    store = _state(ctx).store()
    chosen = store.resolve(names or [], all_=not names)
    text = manifest.export(chosen, store.notify_targets() if not names else [])
    if output is None:
        sys.stdout.write(text)
        return
    if not output:
        raise UsageError("invalid -o '': no path", "pass a file to write, or leave -o out to write to stdout")
    from syncctl import files

    try:  # atomically, leaving no temporary file behind when it fails (-o naming a folder)
        files.replace(Path(output), lambda out: out.write(text.encode("utf-8")))
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}", "pass a writable path with -o") from None


@app.command(epilog="Example: syncctl apply integrations.toml --dry-run; syncctl export | syncctl apply -")
def apply(
    ctx: typer.Context,
    file: FileArg,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    prune: Annotated[bool, typer.Option("--prune", help="Remove integrations and targets not in the file.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --prune: do not ask.")] = False,
    json_: JsonOption = False,
) -> None:
    """Make the database's integrations and notification targets match the file, in one
    transaction, and print the plan carried out (+ created, ~ changed, - removed).
    Paused, disabled, failures, next sync and cursors are left alone."""
    from syncctl import manifest

    document = _read_manifest(file)
    state = _state(ctx)
    new_database = isinstance(state.db_path, Path) and not state.db_path.exists()
    if new_database:  # planned against an empty one: a refused or dry run creates no file
        plan = manifest.plan({}, {n: d.form() for n, d in document.integrations.items()}, prune=prune,
                             file_targets={u: t.form() for u, t in document.targets.items()})  # fmt: skip
    else:
        store = state.store()
        _recover(store)
        plan = manifest.plan_for(store, document, prune=prune)
    removals = plan.remove + [f"notify target {url}" for url in plan.notify_remove]
    if removals and not dry_run and not yes:  # a removal is confirmed, whatever it removes
        if not (render.is_terminal(sys.stdin) and render.is_terminal(sys.stderr)) or file == "-":
            raise UsageError(
                f"refusing to remove {', '.join(removals)} without confirmation",
                f"check with: syncctl apply {file} --prune --dry-run; then add --yes",
            )
        asked = f"Remove {', '.join(plan.remove)} with their logs and records?" if plan.remove else ""
        if plan.notify_remove:
            asked = f"{asked} Remove {', '.join(removals[len(plan.remove):])}?".lstrip()
        if not typer.confirm(asked, err=True):
            raise typer.Exit(1)
    if not dry_run and not plan.empty:
        try:
            plan = manifest.carry_out(state.store(create=True), document, plan, prune=prune, now=_now())
        except BaseException:
            if new_database:
                state.discard_new_database()
            raise
    if json_:
        render.print_json({**plan.to_json(), "dry_run": dry_run})
        return
    for line in plan.lines():
        sys.stdout.write(line + "\n")
    if dry_run:
        sys.stdout.write("dry run: nothing was changed\n")


@app.command(epilog="Example: syncctl export | syncctl diff - && echo in step")
def diff(
    ctx: typer.Context,
    file: FileArg,
    prune: Annotated[bool, typer.Option("--prune", help="Count integrations not in the file as differences.")] = False,
    json_: JsonOption = False,
) -> None:
    """The plan apply would carry out, changing nothing. Exit 0 when the database
    matches the file, 1 when it does not, 2 for an invalid file."""
    from syncctl import manifest

    document = _read_manifest(file)
    store = _state(ctx).store()
    plan = manifest.plan_for(store, document, prune=prune)
    if json_:
        render.print_json(plan.to_json())
    else:
        for line in plan.lines():
            sys.stdout.write(line + "\n")
    if not plan.empty:
        raise typer.Exit(1)


@app.command(epilog="Example: syncctl reset crm")
def reset(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME")]) -> None:
    """Forget the incremental cursor and the conditional-request validators: the next
    sync fetches everything. Stored records stay."""
    store = _state(ctx).store()
    integration = store.get(name)
    store.reset_sync_state(integration.id, _now())
    sys.stdout.write(f"reset {name}; its next sync is a full one\n")


@app.command(epilog="Example: syncctl records crm --limit 5 --json | jq .")
def records(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME")],
    limit: Annotated[int, typer.Option(metavar="N", help="At most this many records.")] = 20,
    include_deleted: Annotated[
        bool, typer.Option("--include-deleted", help="Also records marked deleted (--deletes mark).")
    ] = False,
    json_: JsonOption = False,
    csv_: Annotated[bool, typer.Option("--csv", help="CSV: a header of top-level fields, a row each.")] = False,
) -> None:
    """The stored records of one integration, most recently synced first."""
    if not 1 <= limit <= 100_000_000:
        raise UsageError(f"invalid --limit {limit}", "use a number from 1 to 100,000,000")
    if json_ and csv_:
        raise UsageError("--json and --csv exclude each other", "pick one")
    store = _state(ctx).store()
    integration = store.get(name)
    found = store.stored_records(integration.id, limit=limit, include_deleted=include_deleted)
    if csv_:
        render.records_csv(found)
    elif json_:
        render.print_json(found)
    elif not found:
        sys.stdout.write(f"No records stored for {name}.\n")
    else:  # one JSON object a line (greppable, and jq reads it)
        for record in found:
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")


@app.command("schema", epilog="Example: syncctl schema weather --json | jq '.columns[].name'")
def schema_(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME")], json_: JsonOption = False) -> None:
    """The data table of an integration's records: each column, its type, the field it
    holds and when it was added."""
    store = _state(ctx).store()
    integration = store.get(name)
    table, columns, exists = store.table_schema(integration.id)
    from syncctl.tables import KEY_COLUMN, SYNCED_COLUMN, Column

    own = [Column(KEY_COLUMN, "text", ""), Column(SYNCED_COLUMN, "timestamp", "")] if table else []
    document = render.schema_json(integration, table, own + columns, store.dialect.type_name)
    if table and store.dialect.name == "sqlite":  # _synced_at: ISO 8601 text on SQLite
        document["columns"][1]["type"] = "TEXT"
    if json_:
        render.print_json(document)
    else:
        render.schema_text(document, exists)


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
        render.print_json_text(store.summaries_json(now=_now()))
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
    running = next(iter(store.unfinished_logs(integration.id)), None)  # who is syncing it now
    if json_:
        summary = json.loads(store.summaries_json(name, now=_now()))[0]
        render.print_json(render.show_json(summary, integration, logs, running))
    else:
        render.show_text(integration, logs, _now(), running)


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

SyncTimeoutOption = Annotated[float, typer.Option(metavar="SECONDS", help="Seconds one sync may take in all.")]


def _settings(sync_timeout: float, max_rps: float | None = None) -> "SyncSettings":
    from syncctl.engine import SyncSettings

    checked_sync_timeout(sync_timeout)
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
    sync_timeout: SyncTimeoutOption = SYNC_TIMEOUT,
    allow_mass_delete: Annotated[
        bool, typer.Option("--allow-mass-delete", help="This once, delete more than --max-delete allows.")
    ] = False,
) -> None:
    """Sync now, whatever the schedule or pause state. Exit 1 if any failed."""
    from syncctl.runner import Stopped, flush_and_exit, run_syncs

    _names_or_all(names, all_, "sync")
    store = _state(ctx).store()
    integrations = store.resolve(names or [], all_)
    settings = _settings(sync_timeout)
    settings.allow_mass_delete = allow_mass_delete
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
    sync_timeout: SyncTimeoutOption = SYNC_TIMEOUT,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print a summary and notes.")] = False,
    ping: Annotated[
        str | None,
        typer.Option(metavar="URL", envvar="SYNCCTL_PING_URL", show_envvar=True,
                     help="Healthchecks/Cronitor URL: pinged at /start, on success, and at /fail."),
    ] = None,
    metrics_file: Annotated[  # str: typer would turn '' into Path('.')
        str | None,
        typer.Option(metavar="PATH", help="Rewrite Prometheus metrics here after every tick (node_exporter)."),
    ] = None,
    status_dir: Annotated[
        str | None,
        typer.Option(metavar="DIR", envvar="SYNCCTL_STATUS_DIR", show_envvar=True,
                     help="Rewrite the status page and badges here after every tick (see status-page)."),
    ] = None,
) -> None:
    """Sync every integration that is due (the cron entry point). Silent when all is well."""
    from syncctl import runner

    if not 1 <= concurrency <= 256:
        raise UsageError(f"invalid --concurrency {concurrency}", "use 1 to 256")
    settings = _settings(sync_timeout, max_rps)
    pinger = _pinger(ping)
    metrics_file = _check_metrics_file(metrics_file)
    status_dir = _check_status_dir(status_dir, "--status-dir")
    store = _state(ctx).store()
    verbose = verbose or render.is_terminal(sys.stdout)
    failures: list[str] = []  # the lines a /fail ping carries

    def complain(message: str, hint: str | None = None) -> None:
        render.print_error(message, hint)
        failures.append(render.error_line(message, hint))

    def on_result(result):  # noqa: ANN001, ANN202
        if result.status == "FAILED":
            complain(f"{result.name}: {result.error_message}", result.error_hint)
        elif result.status == "BUSY" and verbose:
            render.print_error(f"note: skipped {result.error_message}")

    def finish_tick(report: runner.RunReport) -> None:
        for message, hint in runner.after_tick(
            store, report, now=_now(), sync_timeout=settings.sync_timeout, metrics_file=metrics_file,
            env=dict(os.environ), status_dir=status_dir,
        ):
            render.print_error(message, hint)
        if pinger is not None:
            pinger.fail(failures) if failures else pinger.success()
            if verbose:
                for error in pinger.errors:
                    render.print_error(f"note: {error}")

    try:
        report = runner.run_due(
            store, now=_now, concurrency=concurrency, settings=settings, on_result=on_result,
            on_start=pinger.start if pinger is not None else None,
        )
    except runner.Stopped as stopped:
        signum = stopped.report.signal or 15
        complain(
            f"run-due stopped by {_signame(signum)}",
            "unfinished syncs were logged as interrupted and are due at the next run",
        )
        finish_tick(stopped.report)
        runner.flush_and_exit(128 + signum)
    verdict = runner.verdict(report, now=_now(), sync_timeout=settings.sync_timeout,
                             lock_file=store.path if store.dialect.has_lock_file else None)  # fmt: skip
    for message, hint in verdict.complaints:
        complain(message, hint)
    if verbose:
        for note in verdict.notes:
            render.print_error(f"note: {note}")
    finish_tick(report)
    if verbose and report.locked_by is None:
        render.run_summary(report)
    if verdict.exit_code:
        raise typer.Exit(verdict.exit_code)


def _pinger(url: str | None):  # noqa: ANN202
    """The pings of this tick (spec §10), or None without --ping / SYNCCTL_PING_URL."""
    if not url:
        return None
    from syncctl.ping import Pinger
    from syncctl.secrets import check_references

    check_references(url, "--ping URL")
    if not url.lower().startswith(("http://", "https://")):
        raise UsageError(f"invalid --ping URL {url!r}", "use the http(s) URL of the check, e.g. https://hc-ping.com/UUID")
    return Pinger(url, dict(os.environ))


def _check_metrics_file(text: str | None) -> Path | None:
    """The metrics file: a regular file (replaced at every tick) in an existing folder.
    A device or a pipe is refused: the tick would replace /dev/null, or read a FIFO or
    /dev/zero forever."""
    if text is None:
        return None
    path = Path(text)
    hint = "give a file in an existing folder, e.g. /var/lib/node_exporter/textfile_collector/syncctl.prom"
    if not text.strip():
        raise UsageError("invalid --metrics-file '': no path", hint)
    if path.is_dir() or not path.parent.is_dir():
        raise UsageError(
            f"invalid --metrics-file {path}: " + ("it is a folder" if path.is_dir() else "its folder does not exist"),
            hint,
        )
    if path.exists() and not path.is_file():
        raise UsageError(f"invalid --metrics-file {path}: it is not a regular file (a device, pipe or socket)", hint)
    return path


def _check_status_dir(text: str | None, option: str) -> Path | None:
    """The status page's folder (created when missing, spec §19): not a file. Unset (or
    an empty SYNCCTL_STATUS_DIR): none; an empty value given explicitly is refused, never
    taken as the current folder."""
    hint = "give a folder (created when missing) that a web server serves, e.g. /var/www/syncctl"
    if text is None:
        return None
    if not text.strip():
        raise UsageError(f"invalid {option} '': no folder", hint)
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise UsageError(f"invalid {option} {path}: it is a file", hint)
    return path


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
        raise UsageError(f"invalid --limit {limit}", "use a number from 1 to 1,000,000")
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


# -- freshness (spec §10) -------------------------------------------------------------------


@app.command(
    epilog="Example (Icinga/Nagios, a container health check): syncctl health || echo unhealthy"
)
def health(
    ctx: typer.Context,
    json_: JsonOption = False,
    sync_timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="run-due's --sync-timeout (a run-due is stuck after 2× this + 5m).")
    ] = SYNC_TIMEOUT,
) -> None:
    """A Nagios/Icinga-style check: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

    CRITICAL: no run-due tick for 3 minutes, a stuck run-due, a stale or a disabled
    integration. WARNING: a failing integration, or one paused for more than 7 days.
    """
    from syncctl import health as rules
    from syncctl.errors import DatabaseError

    checked_sync_timeout(sync_timeout)
    state = _state(ctx)
    now = _now()
    try:
        if isinstance(state.db_path, Path) and not state.db_path.exists():  # a check never creates it
            raise DatabaseError(
                f"database {state.db_path} does not exist", "check --db or SYNCCTL_DB, or create it with syncctl add"
            )
        store = state.store()
        report = rules.check(
            now, store.list_integrations(), store.last_tick_at(),
            runlock.read_holder(store.path) if store.dialect.has_lock_file else None, sync_timeout,
        )
    except (DatabaseError, OSError) as exc:
        why = render.error_line(getattr(exc, "message", None) or str(exc), getattr(exc, "hint", None), "cannot read")
        if json_:
            render.print_json({"status": "UNKNOWN", "checked_at": render.format_ts(now), "last_tick_at": None,
                               "problems": [], "error": why})
        else:
            sys.stdout.write(f"SYNCCTL UNKNOWN - {why}\n")
        raise typer.Exit(rules.CheckStatus.UNKNOWN.exit_code) from None
    if json_:
        render.print_json(render.health_json(report))
    else:
        sys.stdout.write(render.health_text(report))
    raise typer.Exit(report.status.exit_code)


@app.command(epilog="Example: syncctl metrics > /var/lib/node_exporter/textfile_collector/syncctl.prom")
def metrics(ctx: typer.Context) -> None:
    """Print Prometheus metrics (text exposition format) for every integration."""
    from syncctl.metrics import exposition

    sys.stdout.write(exposition(_state(ctx).store(), _now()).decode("utf-8"))


@app.command(
    "status-page",
    epilog="Example: syncctl status-page /var/www/html/syncctl   (or: run-due --status-dir DIR)",
)
def status_page(
    ctx: typer.Context,
    directory: Annotated[str, typer.Argument(metavar="DIR", help="Where to write (created when missing).")],
    details: Annotated[
        bool, typer.Option("--details", help="Add each failing integration's last error and hint (redacted).")
    ] = False,
) -> None:
    """Write a status page and badges: DIR/index.html, DIR/status.json, DIR/badges/NAME.svg|json.

    Only names, states, times and counts (no URL, header, parameter or error unless
    --details). Files are replaced atomically, and only when their content changes."""
    from syncctl import errors
    from syncctl import status_page as page

    folder = _check_status_dir(directory, "DIR")
    store = _state(ctx).store()
    _recover(store)
    try:
        page.write(store, folder, _now(), details=details)
    except OSError as exc:  # a full disk, a read-only or foreign folder: named as such, exit 3
        raise errors.from_os_error(exc, folder, "write the page elsewhere") from None


notify_app = typer.Typer(
    help="Notifications through Apprise URLs (Slack, Teams, Discord, email, ntfy, json:// webhooks…).",
    epilog="Example: syncctl notify add 'slack://${SLACK_TOKEN}/#ops' && syncctl notify test",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(notify_app, name="notify")


@notify_app.command(
    "add",
    epilog="Example: syncctl notify add 'slack://${SLACK_TOKEN}/#ops' --events failing,disabled,recovered",
)
def notify_add(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(metavar="URL", help="An Apprise URL; secrets as ${VAR}.")],
    events: Annotated[
        str | None,
        typer.Option(metavar="LIST", help="Comma-separated: failing, disabled, recovered, stale, stuck, schema, or all "
                    "[default: all but schema]."),
    ] = None,
    after: Annotated[int, typer.Option(metavar="N", help="Send 'failing' after N consecutive failures.")] = 1,
) -> None:
    """Tell a target about integrations that fail, are disabled, go stale or recover."""
    from syncctl.notify import parse_events, validate_target

    chosen = parse_events(events)
    url = validate_target(url, after)
    target_id = _state(ctx).store(create=True).add_notify_target(url, chosen, after, _now())
    sys.stdout.write(f"added notification target #{target_id} ({', '.join(chosen)}); try it: syncctl notify test {target_id}\n")


@notify_app.command("list", epilog="Example: syncctl notify list --json")
def notify_list(ctx: typer.Context, json_: JsonOption = False) -> None:
    """The notification targets, with their last delivery and its error."""
    targets = _state(ctx).store().notify_targets()
    if json_:
        render.print_json(targets)
    else:
        render.notify_table(targets, _now())


def _target(store: Store, target_id: int) -> dict:
    for target in store.notify_targets():
        if target["id"] == target_id:
            return target
    raise UsageError(f"no notification target #{target_id}", "see them with: syncctl notify list")


@notify_app.command("remove", epilog="Example: syncctl notify remove 2")
def notify_remove(ctx: typer.Context, target_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Stop notifying a target."""
    store = _state(ctx).store()
    target = _target(store, target_id)
    store.remove_notify_target(target_id)
    sys.stdout.write(f"removed notification target #{target_id} ({target['url']})\n")


@notify_app.command("test", epilog="Example: syncctl notify test 2")
def notify_test(
    ctx: typer.Context, target_id: Annotated[int | None, typer.Argument(metavar="[ID]")] = None
) -> None:
    """Send a test message (to one target, or to all). Exit 1 if a delivery failed."""
    from syncctl.notify import send_test

    store = _state(ctx).store()
    targets = [_target(store, target_id)] if target_id is not None else store.notify_targets()
    if not targets:
        raise UsageError("no notification targets yet", "add one: syncctl notify add URL")
    failed = False
    for target in targets:
        failure = send_test(store, target, _now(), dict(os.environ))
        if failure is None:
            sys.stdout.write(f"sent a test notification to #{target['id']} ({target['url']})\n")
        else:
            failed = True
            render.print_error(f"notification target #{target['id']} ({target['url']}): {failure[0]}", failure[1])
    if failed:
        raise typer.Exit(1)


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
    except SyncctlError as exc:  # the output's device refused the last of it (>/dev/full)
        with contextlib.suppress(SyncctlError, render.OutputClosed):
            render.print_error(exc.message, exc.hint)
        code = exc.exit_code
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
