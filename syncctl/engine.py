"""Sync one integration: claim -> fetch -> store -> log -> reschedule. Also crash
recovery, which finishes the logs of syncs whose process is gone."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncctl import liveness
from syncctl.errors import DatabaseError, SyncctlError, SyncError, with_retry_promise
from syncctl.health import resume_hint
from syncctl.models import Integration, Status, SyncLog, SyncResult, Trigger
from syncctl.schedule import RETRY_BASE_SECONDS, SYNC_TIMEOUT, Plan, plan_after_sync
from syncctl.store import Store
from syncctl.store_records import TableWrite

if TYPE_CHECKING:
    import requests

    from syncctl.fetch import Cancel, Connector, Page, RateLimiter

INTERRUPTED_HINT = with_retry_promise(
    "nothing to fix if the machine restarted (if it repeats, check what kills syncctl: an OOM kill, a "
    "service timeout)"
)


@dataclass
class SyncSettings:
    """What every sync in one command shares."""

    sync_timeout: float = SYNC_TIMEOUT
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    clock: Callable[[], datetime] | None = None
    rng: random.Random = field(default_factory=random.Random)
    global_limiter: RateLimiter | None = None
    allow_mass_delete: bool = False  # sync --allow-mass-delete: the safety valve off, once
    # OAuth2 access tokens this command obtained, by integration (without SYNCCTL_SECRET_KEY
    # they are kept only for the run).
    token_cache: dict[Any, Any] = field(default_factory=dict)


def outcome_plan(
    now: datetime, *, succeeded: bool, rng: random.Random | None = None, retry_after: float | None = None
) -> Callable[[Integration, SyncLog], Plan]:
    """The schedule after an attempt that succeeded or failed (an interrupted one fails)."""

    def plan(integration: Integration, log: SyncLog) -> Plan:
        return plan_after_sync(
            trigger=log.trigger,
            succeeded=succeeded,
            interval=integration.sync_interval,
            slot_at=integration.slot_at,
            next_sync_at=integration.next_sync_at,
            failures=integration.consecutive_failures,
            max_retries=integration.max_retries,
            started=log.started_at,
            now=now,
            retry_after=retry_after,
            rng=rng,
        )

    return plan


@dataclass
class SyncNotes:
    """What a sync noticed that makes a success look wrong (spec §11: warnings)."""

    hashed: int = 0
    shared: int = 0  # records stored over another of their page with the same key
    whole_body_arrays: list[tuple[str, int]] = field(default_factory=list)
    table: TableWrite | None = None  # what the sync changed of its data table's columns
    tokens: Any = None  # the OAuth2 token keeper (its warnings: stored tokens it could not use)

    def see(self, page: Page) -> None:
        from syncctl.records import shared_keys

        self.hashed += page.hashed
        self.shared += shared_keys(page.records)
        if page.whole_body and page.arrays and not self.whole_body_arrays:
            self.whole_body_arrays = page.arrays

    type_name: Callable[[str], str] = str  # the dialect's name of a column type

    def warning(self, integration: Integration, connector: Connector) -> str | None:
        """The hint a SUCCESS log carries, or None."""
        from syncctl.records import hashed_warning, shared_key_warning, whole_body_warning

        name, config = integration.name, integration.config
        found = []
        if self.whole_body_arrays:
            found.append(_warning(name, *whole_body_warning(*self.whole_body_arrays[0])))
        if self.hashed:
            found.append(_warning(name, *hashed_warning(self.hashed, config.key)))
        if self.shared:
            found.append(_warning(name, *shared_key_warning(self.shared, config.key)))
        schema = self.schema_warning(integration)
        if schema:
            found.append(schema)
        if connector.graphql_errors:
            found.append(f"warning: the source answered with records and errors: {'; '.join(connector.graphql_errors[:3])}")
        found += self.token_warnings
        if config.pagination.paginated and not connector.complete and not connector.not_modified:
            found.append(
                f"warning: stopped at --max-pages {config.max_pages} with more pages to fetch: "
                f"syncctl edit {name} --max-pages N"
            )
        return "; ".join(found) or None


    @property
    def token_warnings(self) -> list[str]:
        return list(self.tokens.warnings) if self.tokens is not None else []

    def failure_warnings(self, integration: Integration) -> str | None:
        """What a FAILED log's hint says after its fix: columns its committed pages
        changed, and stored tokens it could not use (often why a refresh was refused)."""
        found = [w for w in (self.schema_warning(integration), *self.token_warnings) if w]
        return "; ".join(found) or None

    def schema_warning(self, integration: Integration) -> str | None:
        """What the sync changed of its table's columns (spec §15: never silent), carried
        by its log's hint whether it succeeded or failed after the change was committed."""
        if self.table is None or not self.table.changes or self.table.created:
            return None
        from syncctl.tables import describe

        return columns_warning(integration.data_table, integration.name, describe(self.table.changes, self.type_name))


def columns_warning(table: str | None, name: str, described: str) -> str:
    """The words of a sync's schema changes in its log's hint (spec §15)."""
    return f"warning: the columns of table {table} changed: {described} (see them with: syncctl schema {name})"


def _warning(name: str, problem: str, option: str) -> str:
    """A SUCCESS log's warning: what is wrong, and the edit that fixes it."""
    return f"warning: {problem}: syncctl edit {name} {option}"


def interrupted_by(signal_name: str | None) -> tuple[str, str]:
    """The message and hint of a sync a signal interrupted."""
    return f"interrupted by {signal_name}", "it is rescheduled for the next run; nothing to fix"


def signal_plan(now: datetime) -> Callable[[Integration, SyncLog], Plan]:
    """Interrupted by a signal: not the source's fault, so no failure is counted; a
    scheduled sync is due again at the next run."""

    def plan(integration: Integration, log: SyncLog) -> Plan:
        if log.trigger == "manual" or integration.sync_interval is None:
            return Plan(integration.next_sync_at, integration.slot_at, integration.consecutive_failures)
        return Plan(now, integration.slot_at, integration.consecutive_failures)

    return plan


def fallback_plan(now: datetime) -> Callable[[Integration, SyncLog], Plan]:
    """When deciding the schedule failed (a bug): count the failure of a scheduled sync and
    try again after the first retry delay, without deciding anything else (no disable)."""

    def plan(integration: Integration, log: SyncLog) -> Plan:
        if log.trigger == Trigger.MANUAL or integration.sync_interval is None:
            return Plan(integration.next_sync_at, integration.slot_at, integration.consecutive_failures)
        retry_at = now + timedelta(seconds=RETRY_BASE_SECONDS)
        return Plan(retry_at, integration.slot_at, integration.consecutive_failures + 1)

    return plan


def recover_orphans(
    store: Store, now: datetime, rng: random.Random | None = None, integration_id: int | None = None
) -> list[SyncLog]:
    """Mark FAILED every RUNNING log whose sync has died (``liveness.is_orphan``: its
    process is gone, or its lease expired); each counts as a failure for retry scheduling.
    A live sync is never touched. Returns the logs recovered."""
    recovered = []
    for log in store.unfinished_logs(integration_id):
        if not liveness.is_orphan(log.pid, log.owner, lease_expired=log.lease_expired,
                                  leases_decide=store.dialect.leases_decide):
            continue
        if log.lease_expired and liveness.host_of(log.owner) != liveness.hostname():
            message, hint = lease_expired(log)
        else:
            message = (f"interrupted: process {log.pid} ended before the sync finished "
                       "(killed, or the machine restarted)")
            hint = INTERRUPTED_HINT
        disabled_hint = resume_hint(log.integration, hint)
        if log.schema_changes:  # its committed pages changed the columns: said, as by a sync that fails
            from syncctl.tables import Change, describe

            listed = [Change(c["column"], c["change"], c["type"], c.get("from")) for c in log.schema_changes]
            hint += "; " + columns_warning(store.data_table(log.integration_id), log.integration, describe(listed, str))
        done = store.finish_sync(
            log.id,
            integration_id=log.integration_id,
            status=Status.FAILED,
            now=now,
            records_count=None,
            error_message=message,
            error_hint=hint,
            plan=outcome_plan(now, succeeded=False, rng=rng),
            disabled_hint=disabled_hint,
        )
        if done is not None:
            recovered.append(log)
    return recovered


def lease_expired(log: SyncLog) -> tuple[str, str]:
    """The message and hint of a sync whose lease ran out: its host died, was cut off from
    the database, or was paused past the lease."""
    where = f"pid {log.pid} on host {liveness.host_of(log.owner) or '?'}"
    return (
        f"interrupted: lease expired ({where} stopped renewing it: the host died, lost the "
        "database, or was paused)",
        with_retry_promise("if it repeats, check that host and its network"),
    )


class Engine:
    """Runs syncs against one database connection (one Engine per thread)."""

    def __init__(self, store: Store, settings: SyncSettings, session: requests.Session) -> None:
        self.store = store
        self.settings = settings
        self.session = session

    def now(self) -> datetime:
        from syncctl.timeutil import utcnow

        return (self.settings.clock or utcnow)()

    def sync(self, integration_id: int, *, manual: bool, cancel: Cancel) -> SyncResult:
        """Sync one integration and record the attempt. Never raises for a sync failure:
        one broken integration never stops the others."""
        started_clock = time.monotonic()
        recover_orphans(self.store, self.now(), self.settings.rng, integration_id)
        claimed = self.store.claim(
            integration_id,
            manual=manual,
            now=self.now(),
            pid=os.getpid(),
            owner=liveness.owner_token(),
        )
        if claimed is None:
            integration = self.store.get_by_id(integration_id)
            return SyncResult(integration.name if integration else f"#{integration_id}", "SKIPPED")
        if isinstance(claimed, SyncLog):
            lock_file = self.store.path if self.store.dialect.has_lock_file else None
            return _busy(claimed, self.now(), lock_file, self.settings.sync_timeout)
        return self.run_claimed(*claimed, cancel=cancel, started_clock=started_clock)

    def run_claimed(
        self, log_id: int, integration: Integration, trigger: str, *, cancel: Cancel,
        started_clock: float | None = None,
    ) -> SyncResult:
        """Fetch, store, log and reschedule a sync claimed at ``started_clock`` (monotonic;
        default now): its --sync-timeout counts from there. Never raises for a sync failure."""
        from syncctl.fetch import Cancelled, Connector, deadlines
        from syncctl.models import dumps
        from syncctl.records import cursor_param, later
        from syncctl.secrets import Secrets

        deadline = (time.monotonic() if started_clock is None else started_clock) + self.settings.sync_timeout
        count = 0
        # Before anything that can raise: every message this sync records is redacted
        # with the values of every variable the integration refers to.
        secrets = Secrets(self.settings.env)
        secrets.learn(integration.url, dumps(integration.config.to_json()))
        config = integration.config
        # Every record this sync stores carries this stamp: a deletion sweep takes those
        # that do not (whatever the clock does meanwhile).
        stamp = self.now()
        cursor = integration.cursor
        notes = SyncNotes()
        table = None if integration.data_table is None else TableWrite(
            integration.name, log_id, freeze=config.schema == "freeze"
        )
        notes.table, notes.type_name = table, self.store.dialect.type_name
        with deadlines.watching(cancel, deadline):  # a cancel ends blocked reads at once
            try:
                notes.tokens = self._tokens(integration)
                connector = Connector(
                    integration.url,
                    config,
                    tokens=notes.tokens,
                    session=self.session,
                    secrets=secrets,
                    deadline=deadline,
                    cancel=cancel,
                    global_limiter=self.settings.global_limiter,
                    rng=self.settings.rng,
                    cursor=cursor_param(cursor, config.lookback) if config.incremental else None,
                    validators=(integration.etag, integration.last_modified),
                )
                for page in connector.pages():
                    if config.incremental:
                        advanced = later(cursor, page.cursor)
                        self.store.upsert_records(integration.id, page.records, stamp, cursor=advanced,
                                                  objects=page.objects, table=table)
                        cursor = advanced
                    else:
                        self.store.upsert_records(integration.id, page.records, stamp, objects=page.objects,
                                                  table=table)
                    count += len(page.records)
                    notes.see(page)
                if not connector.not_modified:  # a 304 fetched nothing and changed nothing
                    check_min_records(count, config.min_records)
                deleted = self._sweep(integration, connector, stamp, log_id)
            except Cancelled:
                signalled = cancel.reason not in (None, "timeout")
                error = interrupted_by(cancel.reason) if signalled else self._timeout()
                return self._fail(log_id, integration, trigger, count, error, None, signalled=signalled, notes=notes)
            except SyncError as exc:
                if time.monotonic() >= deadline:
                    return self._fail(log_id, integration, trigger, count, self._timeout(), None, notes=notes)
                hint = exc.hint.replace("{name}", integration.name) if exc.hint else None
                error = (secrets.redact(exc.message), secrets.redact(hint) if hint else None)
                return self._fail(log_id, integration, trigger, count, error, exc.retry_after, notes=notes)
            except DatabaseError:
                raise  # the environment refused a write: the runner reports and logs it
            except Exception as exc:  # a bug must not stop the other syncs: record it
                error = (
                    secrets.redact(f"internal error: {type(exc).__name__}: {exc}"),
                    "please report this as a syncctl bug, with the integration's config",
                )
                return self._fail(log_id, integration, trigger, count, error, None, notes=notes)
        warning = notes.warning(integration, connector)
        now = self.now()
        finished = self._finish(
            log_id, integration.id, Status.SUCCESS, now, count, (None, warning) if warning else None,
            outcome_plan(now, succeeded=True),
            not_modified=connector.not_modified,
            records_deleted=deleted,
            validators=connector.validators if connector.conditional and not connector.not_modified else None,
        )
        return self._result(integration, trigger, log_id, finished, Status.SUCCESS, count, None)

    def _tokens(self, integration: Integration) -> Any:
        """The OAuth2 token keeper of an integration that uses one (None otherwise): the
        database holds its tokens, encrypted, when SYNCCTL_SECRET_KEY is set."""
        if integration.config.auth is None or integration.config.auth.kind != "oauth2":
            return None
        from syncctl.auth import keeper_for

        return keeper_for(integration.id, self.store, self.settings.env, self.settings.token_cache, self.now)

    def _sweep(self, integration: Integration, connector: Connector, stamp: datetime, log_id: int) -> int:
        """After a complete full sync, mark or remove the records it did not see, unless
        that is more than --max-delete of them (SyncError: nothing is deleted)."""
        from syncctl.config import Deletes
        from syncctl.records import decide_sweep

        config = integration.config
        if (
            config.deletes is Deletes.KEEP
            or config.incremental is not None
            or not connector.complete
            or connector.not_modified
        ):
            return 0
        missing, live = self.store.unseen_records(integration.id, stamp)
        if not missing:
            return 0
        decision = decide_sweep(missing, live, config.max_delete, self.settings.allow_mass_delete)
        if not decision.allowed:
            raise SyncError(
                f"refused to delete {missing} of {live} records ({decision.share:.0f}%, more than "
                f"--max-delete {config.max_delete:g}%); nothing was deleted",
                "did the source return a truncated list? check it with: syncctl check {name}; if the "
                "deletions are real, run once: syncctl sync {name} --allow-mass-delete",
            )
        return self.store.sweep_records(
            integration.id, stamp, remove=config.deletes is Deletes.REMOVE, now=self.now(), log_id=log_id
        )

    def _timeout(self) -> tuple[str, str]:
        limit = f"{self.settings.sync_timeout:g}"
        return (
            f"sync took longer than --sync-timeout ({limit} s) and was stopped",
            "the source is slow or drips data: raise --sync-timeout, lower --max-pages, or check the source",
        )

    def _fail(
        self,
        log_id: int,
        integration: Integration,
        trigger: str,
        count: int,
        error: tuple[str, str | None],
        retry_after: float | None,
        *,
        signalled: bool = False,
        notes: SyncNotes | None = None,
    ) -> SyncResult:
        """Record a failed attempt; one interrupted by a signal is rescheduled, not counted.
        What the sync noticed (:meth:`SyncNotes.failure_warnings`) follows the fix in its hint."""
        now = self.now()
        # A message may quote the source (its keys, its bytes): lone surrogates from a
        # "\ud800" escape are not UTF-8, and SQLite would refuse the whole log update.
        error = (_storable_text(error[0]), _storable_text(error[1]) if error[1] else error[1])
        disabled_hint = resume_hint(integration.name, error[1])
        noted = notes.failure_warnings(integration) if notes is not None else None
        if noted:
            error = (error[0], f"{error[1]}; {noted}" if error[1] else noted)
        schedule = (
            signal_plan(now)
            if signalled
            else outcome_plan(now, succeeded=False, rng=self.settings.rng, retry_after=retry_after)
        )
        decided: list[Plan] = []  # what the transaction decided (its last try, should it retry)

        def plan(integration: Integration, log: SyncLog) -> Plan:
            decided[:] = [schedule(integration, log)]
            return decided[0]

        finished = self._finish(log_id, integration.id, Status.FAILED, now, count, error, plan,
                                disabled_hint=disabled_hint)
        result = self._result(integration, trigger, log_id, finished, Status.FAILED, count, error)
        if finished is not None and decided and decided[0].disable:
            result.error_hint = disabled_hint  # no retry will come: say how to resume (issue 19)
        return result

    def _finish(
        self,
        log_id: int,
        integration_id: int,
        status: Status,
        now: datetime,
        count: int,
        error: tuple[str, str | None] | None,
        plan: Callable[[Integration, SyncLog], Plan],
        **outcome: Any,
    ) -> SyncLog | None:
        """End the log this engine claimed (``outcome``: what else ``Store.finish_sync``
        records of a success); the finished log, or None if someone else ended it. Should
        anything unexpected raise on the way (a bug deciding the schedule), the log still
        ends: FAILED, with a plan that decides nothing (:func:`fallback_plan`), so no
        RUNNING row outlives the sync."""
        try:
            return self.store.finish_sync(
                log_id,
                integration_id=integration_id,
                status=status,
                now=now,
                records_count=count,
                error_message=error[0] if error else None,
                error_hint=error[1] if error else None,
                plan=plan,
                **outcome,
            )
        except SyncctlError:  # already named (the database's own faults): no second try helps
            raise
        except Exception as exc:  # the transaction rolled back: the log is still RUNNING
            message = f"internal error while finishing the sync: {type(exc).__name__}: {exc}"
            if error:
                message += f" (the sync had failed: {error[0]})"
            return self.store.finish_sync(
                log_id,
                integration_id=integration_id,
                status=Status.FAILED,
                now=now,
                records_count=count,
                error_message=_storable_text(message),
                error_hint="please report this as a syncctl bug, with the integration's config",
                plan=fallback_plan(now),
            )

    def _result(
        self,
        integration: Integration,
        trigger: str,
        log_id: int,
        log: SyncLog | None,
        status: Status,
        count: int,
        error: tuple[str, str | None] | None,
    ) -> SyncResult:
        """What the sync reports: its finished ``log``; when someone else ended it first
        (a signal handler, crash recovery), the log as they left it."""
        log = log or self.store.history_entry(log_id)
        if log is None:
            return SyncResult(name=integration.name, status=status.value, trigger=trigger, log_id=log_id,
                              records_count=count, error_message=error[0] if error else None,
                              error_hint=error[1] if error else None)  # fmt: skip
        return SyncResult(
            name=integration.name,
            status=log.status,
            trigger=trigger,
            log_id=log_id,
            records_count=count,
            duration_ms=log.duration_ms or 0,
            error_message=log.error_message,
            error_hint=log.error_hint,
            not_modified=log.not_modified,
            records_deleted=log.records_deleted,
        )


def check_min_records(count: int, minimum: int) -> None:
    """The guard of spec §10: a "success" with fewer records than ``--min-records`` is a
    failure (it counts towards retries and auto-disable, and deletes nothing)."""
    if count < minimum:
        records = "record" if count == 1 else "records"
        raise SyncError(
            f"returned {count} {records}, at least {minimum} expected",
            "the source answered without an error but sent too few records: check the URL, its "
            "parameters and --records-path (syncctl show {name}); if fewer is normal, lower the guard: "
            "syncctl edit {name} --min-records N",
        )


def _storable_text(text: str) -> str:
    """``text`` as valid UTF-8: lone surrogates become their ``\\udXXX`` escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def holder_text(log: SyncLog) -> str:
    """``pid 123`` on this host, ``pid 123 on host web-2`` on another."""
    host = liveness.host_of(log.owner)
    return f"pid {log.pid}" + (f" on host {host}" if host and host != liveness.hostname() else "")


def _busy(holder: SyncLog, now: datetime, db_path: Path | None, sync_timeout: float) -> SyncResult:
    from syncctl import runlock
    from syncctl.timeutil import human_duration

    seconds = (now - holder.started_at).total_seconds()
    hint = f"wait for it to finish; follow it with: syncctl history {holder.integration}"
    own_timeout = runlock.sync_timeout_of(db_path, holder.pid) if db_path is not None else None
    if runlock.too_long(seconds, own_timeout or sync_timeout):
        hint = runlock.stuck_hint(holder.pid)
    return SyncResult(
        holder.integration,
        "BUSY",
        error_message=f"{holder.integration} is being synced by another process right now "
        f"({holder_text(holder)}, started {human_duration(max(0.0, seconds))} ago)",
        error_hint=hint,
    )
