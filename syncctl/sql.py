"""SQL rules the store's aggregates share, each written once (both dialects)."""

# A sync that has not finished: at most one per integration (sync_logs_one_running).
UNFINISHED = "status IN ('PENDING', 'RUNNING')"
# What storing a record that is already stored does: the new data, and a record seen
# again is no longer marked deleted.
UPSERT_RECORD_SQL = (
    "ON CONFLICT (integration_id, key) DO UPDATE SET data = excluded.data,"
    " synced_at = excluded.synced_at, deleted_at = NULL"
)
