"""SQL rules the store's aggregates share, each written once (both dialects)."""

from __future__ import annotations

from syncctl.models import UNFINISHED_STATUSES

# A sync that has not finished: at most one per integration (sync_logs_one_running).
UNFINISHED = "status IN ({})".format(", ".join(f"'{s.value}'" for s in UNFINISHED_STATUSES))
# Due (spec §6): enabled, scheduled, and its next sync at or before ``?`` (now).
DUE = "sync_enabled = 1 AND sync_interval IS NOT NULL AND next_sync_at <= ?"
# What storing a record that is already stored does: the new data, and a record seen
# again is no longer marked deleted.
UPSERT_RECORD_SQL = (
    "ON CONFLICT (integration_id, key) DO UPDATE SET data = excluded.data,"
    " synced_at = excluded.synced_at, deleted_at = NULL"
)
