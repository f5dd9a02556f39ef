"""The store's notification aggregate (spec §10): targets, what each was told of each
subject, and the outbox of messages not delivered yet; and the run-due heartbeat and
freshness reads that notifications and metrics are decided from. A mixin of
``syncctl.store.Store``: the same connection and transactions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from syncctl.timeutil import format_ts, parse_ts


class NotifyStore:
    """Notification targets, their state and outbox; run-due ticks and freshness."""

    # -- freshness (spec §10) --------------------------------------------------------------

    def record_tick(self, host: str, pid: int, now: datetime) -> None:
        """The heartbeat: one row per host, rewritten by every run-due tick."""
        with self.transaction():
            self.conn.execute(
                "INSERT INTO run_due_ticks (host, ticked_at, pid) VALUES (?, ?, ?)"
                " ON CONFLICT (host) DO UPDATE SET ticked_at = excluded.ticked_at, pid = excluded.pid",
                (host, format_ts(now), pid),
            )

    def last_tick_at(self) -> datetime | None:
        """When run-due last ticked, on any host (None: never)."""
        return parse_ts(self.conn.execute("SELECT max(ticked_at) FROM run_due_ticks").fetchone()[0])

    def metrics_rows(self) -> list[tuple[Any, ...]]:
        """Per integration, by name: name, enabled, last success, last sync finished, its
        duration (ms), the records it returned, records stored, consecutive failures, syncs
        succeeded, syncs failed, and when it goes stale (``dialect.stale_at_sql``). One lean query
        (no config decoding): the metrics file is written after every tick. Timestamps as
        stored text (ISO 8601, Z) on both backends."""
        rows = self.conn.execute(
            "SELECT name, sync_enabled, last_success_at, last_sync_at, last_duration_ms, last_records_count,"
            " records_count,"
            f" consecutive_failures, syncs_succeeded, syncs_failed, {self.dialect.stale_at_sql}"
            " FROM integrations ORDER BY name"
        ).fetchall()
        if self.dialect.text_times:
            return rows
        return [tuple(format_ts(v) if isinstance(v, datetime) else v for v in row) for row in rows]

    def metrics_fingerprint(self) -> str:
        """What every per-integration metric depends on but the clock: any change to an
        integration (each stamps updated_at), one added or removed, a sync finished. One
        cheap scan: the clock's part is :meth:`next_staleness_change`."""
        count, changed, syncs = self.conn.execute(
            "SELECT count(*), max(updated_at), coalesce(sum(syncs_succeeded + syncs_failed), 0) FROM integrations"
        ).fetchone()
        return f"{count} {format_ts(parse_ts(changed))} {int(syncs)}"

    def next_staleness_change(self, now: datetime) -> datetime | None:
        """The next moment an integration goes stale with time alone (None: none will).
        Going fresh again takes a sync, which changes :meth:`metrics_fingerprint`."""
        (at,) = self.conn.execute(self.dialect.next_stale_sql, [format_ts(now)]).fetchone()
        return parse_ts(at)

    # -- notification targets and their delivery state --------------------------------------

    def add_notify_target(self, url: str, events: list[str], after: int, now: datetime) -> int:
        with self.transaction():
            added = self._insert_id(
                "INSERT INTO notify_targets (url, events, after, created_at) VALUES (?, ?, ?, ?)",
                (url, ",".join(events), after, format_ts(now)),
            )
            return added  # no conflict clause: never None

    def notify_targets(self) -> list[dict[str, Any]]:
        """Every target: id, url (with its ${VAR} references), events (a list), after,
        last_sent_at, last_error."""
        rows = self._query(
            "SELECT id, url, events, after, last_sent_at, last_error FROM notify_targets ORDER BY id"
        )
        return [{**r, "events": r["events"].split(",") if r["events"] else []} for r in rows]

    def has_notify_targets(self) -> bool:
        """Cheap: asked on every tick."""
        return self.conn.execute("SELECT 1 FROM notify_targets LIMIT 1").fetchone() is not None

    def update_notify_target(self, target_id: int, events: list[str], after: int) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE notify_targets SET events = ?, after = ? WHERE id = ?", (",".join(events), after, target_id)
            )

    def remove_notify_target(self, target_id: int) -> bool:
        with self.transaction():
            return self.conn.execute("DELETE FROM notify_targets WHERE id = ?", [target_id]).rowcount > 0

    def announce(
        self, decide: Callable[[dict[str, Any], dict[tuple[int, str], dict[str, Any]]], list[dict[str, Any]]],
        now: datetime,
    ) -> None:
        """One transaction: read every target and what each was last told, let ``decide``
        return the changes, store them, and queue the messages they carry. So two
        processes ticking at once never queue the same event twice.

        ``decide(targets_by_id, states)`` returns dicts with target_id, subject, state,
        announced, notified (bool: refresh notified_at), and message (None or (event,
        title, body)); states are keyed by (target_id, subject)."""
        stamp = format_ts(now)
        with self.transaction():
            targets = {t["id"]: t for t in self.notify_targets()}
            states = {
                (r["target_id"], r["subject"]): r
                for r in self._query("SELECT * FROM notify_state")
            }
            for change in decide(targets, states):
                key = (change["target_id"], change["subject"])
                old = states.get(key)
                if change["message"] is not None:
                    self.queue_notification(change["target_id"], *change["message"], now=now)
                if change["state"] is None:
                    self.conn.execute("DELETE FROM notify_state WHERE target_id = ? AND subject = ?", key)
                    continue
                changed_at = old["changed_at"] if old and old["state"] == change["state"] else stamp
                notified_at = stamp if change["notified"] else (old["notified_at"] if old else None)
                self.conn.execute(
                    "INSERT INTO notify_state (target_id, subject, state, announced, changed_at,"
                    " notified_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (target_id, subject) DO UPDATE SET"
                    " state = excluded.state, announced = excluded.announced, changed_at = excluded.changed_at,"
                    " notified_at = excluded.notified_at",
                    (*key, change["state"], int(change["announced"]), changed_at, notified_at),
                )

    def queue_notification(self, target_id: int, event: str, title: str, body: str, *, now: datetime) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO notify_outbox (target_id, event, title, body, created_at) VALUES (?, ?, ?, ?, ?)",
                (target_id, event, title, body, format_ts(now)),
            )

    def claim_notifications(self, now: datetime, *, expire_before: datetime, lease_before: datetime) -> list[dict]:
        """The queued notifications to deliver now, claimed for this process (another
        process's claim older than ``lease_before`` is taken over). Those queued before
        ``expire_before`` are dropped: their target keeps the last delivery error."""
        with self.transaction():
            self.conn.execute("DELETE FROM notify_outbox WHERE created_at < ?", [format_ts(expire_before)])
            rows = list(self._query(
                "SELECT o.id, o.target_id, o.event, o.title, o.body, o.attempts, t.url FROM notify_outbox o"
                " JOIN notify_targets t ON t.id = o.target_id"
                " WHERE o.claimed_at IS NULL OR o.claimed_at < ? ORDER BY o.id",
                [format_ts(lease_before)],
            ))
            self.conn.executemany(
                "UPDATE notify_outbox SET claimed_at = ?, attempts = attempts + 1 WHERE id = ?",
                [(format_ts(now), r["id"]) for r in rows],
            )
        return rows

    def notification_delivered(self, message_id: int | None, target_id: int, now: datetime) -> None:
        with self.transaction():
            if message_id is not None:
                self.conn.execute("DELETE FROM notify_outbox WHERE id = ?", [message_id])
            self.conn.execute(
                "UPDATE notify_targets SET last_sent_at = ?, last_error = NULL WHERE id = ?",
                (format_ts(now), target_id),
            )

    def notification_failed(self, message_id: int | None, target_id: int, error: str) -> None:
        """Keep the message for a later tick (released from this process's claim)."""
        with self.transaction():
            if message_id is not None:
                self.conn.execute("UPDATE notify_outbox SET claimed_at = NULL WHERE id = ?", [message_id])
            self.conn.execute("UPDATE notify_targets SET last_error = ? WHERE id = ?", (error, target_id))
