-- syncctl database schema: the one source of truth.
--
-- The file is a sequence of numbered steps. Each "-- step N" section is applied once, in
-- order of its number, in its own transaction (with what the code does for that step
-- besides its SQL: store.Store._after_step). The table schema_steps lists the steps a
-- database has (numbers are reserved as work starts, so step 5 may land before step 4);
-- PRAGMA user_version holds the highest, and a database whose version is newer than this
-- file's last step is refused. A fresh database runs every step; an older one runs the
-- steps it lacks. Never edit a released step: add a new one at the end.

-- step 1
CREATE TABLE integrations (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT    NOT NULL UNIQUE,
    url                  TEXT    NOT NULL,
    config               TEXT    NOT NULL DEFAULT '{}',  -- JSON; secrets only as ${VAR}
    sync_interval        INTEGER,                        -- seconds; NULL = manual only
    sync_enabled         INTEGER NOT NULL DEFAULT 1,     -- 0 = paused or auto-disabled
    disabled_reason      TEXT,                           -- 'paused' | 'failures' | NULL
    next_sync_at         TEXT,                           -- when run-due picks it up next
    slot_at              TEXT,                           -- the schedule slot that sync belongs to
    last_sync_at         TEXT,                           -- when the last sync finished
    last_status          TEXT,                           -- 'SUCCESS' | 'FAILED' | NULL
    last_error           TEXT,
    last_hint            TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    records_count        INTEGER NOT NULL DEFAULT 0,
    created_at           TEXT    NOT NULL,
    updated_at           TEXT    NOT NULL
);

-- "What is due" reads only enabled, scheduled integrations, oldest slot first.
CREATE INDEX integrations_due ON integrations (next_sync_at)
    WHERE sync_enabled = 1 AND sync_interval IS NOT NULL;

CREATE TABLE sync_logs (
    id             INTEGER PRIMARY KEY,
    integration_id INTEGER NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    trigger        TEXT    NOT NULL CHECK (trigger IN ('schedule', 'retry', 'manual')),
    status         TEXT    NOT NULL CHECK (status IN ('PENDING', 'RUNNING', 'SUCCESS', 'FAILED')),
    attempt        INTEGER NOT NULL DEFAULT 1,
    started_at     TEXT    NOT NULL,
    completed_at   TEXT,
    duration_ms    INTEGER,
    records_count  INTEGER,
    error_message  TEXT,
    error_hint     TEXT,
    pid            INTEGER,                              -- the process running it
    owner          TEXT                                  -- boot id + pid + process start time
);

-- "The last N logs of one integration", newest first.
CREATE INDEX sync_logs_integration ON sync_logs (integration_id, id);
-- Crash recovery looks only at unfinished rows.
CREATE INDEX sync_logs_unfinished ON sync_logs (integration_id)
    WHERE status IN ('PENDING', 'RUNNING');
-- history --since and prune --older-than.
CREATE INDEX sync_logs_started ON sync_logs (started_at);

CREATE TABLE records (
    integration_id INTEGER NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    key            TEXT    NOT NULL,
    data           TEXT    NOT NULL,                     -- JSON
    synced_at      TEXT    NOT NULL,
    PRIMARY KEY (integration_id, key)
) WITHOUT ROWID;

-- step 2
-- An auto-disable nobody has announced yet. Whoever disables an integration (a failed
-- sync, or crash recovery run by any command) sets it; run-due prints the notice once
-- (cron mails it) and clears it; resume clears it too.
ALTER TABLE integrations ADD COLUMN disable_notice INTEGER NOT NULL DEFAULT 0;

-- step 3
-- One unfinished (PENDING or RUNNING) log per integration, as a rule of the schema: a
-- claim is an insert that fails when someone already holds the integration. An older
-- database could hold duplicates; all but the newest of each integration are finished
-- first (as crash recovery would have) so that the index can be built.
UPDATE sync_logs
   SET status = 'FAILED',
       completed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
       duration_ms = MAX(0, CAST((julianday('now') - julianday(started_at)) * 86400000 AS INTEGER)),
       error_message = 'interrupted: a second unfinished log of the same integration, finished by the schema upgrade',
       error_hint = 'nothing to fix: it is retried at the next run'
 WHERE status IN ('PENDING', 'RUNNING')
   AND id NOT IN (SELECT MAX(id) FROM sync_logs WHERE status IN ('PENDING', 'RUNNING') GROUP BY integration_id);
DROP INDEX sync_logs_unfinished;
CREATE UNIQUE INDEX sync_logs_one_running ON sync_logs (integration_id)
    WHERE status IN ('PENDING', 'RUNNING');

-- step 4
-- Freshness (spec section 10). The last successful sync, for staleness and metrics
-- (backfilled from the logs, or from the last sync when that one succeeded).
ALTER TABLE integrations ADD COLUMN last_success_at TEXT;
UPDATE integrations SET last_success_at = CASE WHEN last_status = 'SUCCESS' THEN last_sync_at ELSE (SELECT max(completed_at) FROM sync_logs l WHERE l.integration_id = integrations.id AND l.status = 'SUCCESS') END;
-- When the current failure streak began (NULL when not failing), and when automatic syncing
-- was turned off (a pause or an auto-disable; NULL while enabled): the health check's "since".
ALTER TABLE integrations ADD COLUMN failing_since TEXT;
UPDATE integrations SET failing_since = last_sync_at WHERE consecutive_failures > 0;
ALTER TABLE integrations ADD COLUMN disabled_at TEXT;
UPDATE integrations SET disabled_at = updated_at WHERE sync_enabled = 0;
-- Finished syncs by outcome: Prometheus counters must never go down, and prune deletes logs.
ALTER TABLE integrations ADD COLUMN syncs_succeeded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE integrations ADD COLUMN syncs_failed INTEGER NOT NULL DEFAULT 0;
-- How long the last finished sync took (its start is last_sync_at minus this), and how
-- many records it returned.
ALTER TABLE integrations ADD COLUMN last_duration_ms INTEGER;
ALTER TABLE integrations ADD COLUMN last_records_count INTEGER;
UPDATE integrations SET last_duration_ms = (SELECT duration_ms FROM sync_logs l WHERE l.integration_id = integrations.id AND l.completed_at IS NOT NULL ORDER BY l.id DESC LIMIT 1), last_records_count = (SELECT records_count FROM sync_logs l WHERE l.integration_id = integrations.id AND l.completed_at IS NOT NULL ORDER BY l.id DESC LIMIT 1);
UPDATE integrations SET syncs_succeeded = (SELECT count(*) FROM sync_logs l WHERE l.integration_id = integrations.id AND l.status = 'SUCCESS'), syncs_failed = (SELECT count(*) FROM sync_logs l WHERE l.integration_id = integrations.id AND l.status = 'FAILED');

-- The heartbeat: when run-due last ticked on each host (idle and lock-busy ticks too).
CREATE TABLE run_due_ticks (
    host      TEXT    PRIMARY KEY,
    ticked_at TEXT    NOT NULL,
    pid       INTEGER NOT NULL
);

-- Notification targets (Apprise URLs; secrets only as ${VAR} references).
CREATE TABLE notify_targets (
    id            INTEGER PRIMARY KEY,
    url           TEXT    NOT NULL,
    events        TEXT    NOT NULL,                     -- comma-separated event names
    after         INTEGER NOT NULL DEFAULT 1,           -- 'failing' after N consecutive failures
    created_at    TEXT    NOT NULL,
    last_sent_at  TEXT,
    last_error    TEXT                                  -- redacted
);

-- What each target was last told about each subject (an integration, or run-due itself):
-- an event goes out once per change of this state, across processes.
CREATE TABLE notify_state (
    target_id   INTEGER NOT NULL REFERENCES notify_targets (id) ON DELETE CASCADE,
    subject     TEXT    NOT NULL,                       -- 'integration:<id>' | 'run-due'
    state       TEXT    NOT NULL,                       -- ok | failing | disabled | stale | stuck
    announced   INTEGER NOT NULL DEFAULT 0,             -- 1: this state was sent to the target
    changed_at  TEXT    NOT NULL,
    notified_at TEXT,
    PRIMARY KEY (target_id, subject)
) WITHOUT ROWID;

-- Notifications not delivered yet: retried on later ticks for up to an hour.
CREATE TABLE notify_outbox (
    id         INTEGER PRIMARY KEY,
    target_id  INTEGER NOT NULL REFERENCES notify_targets (id) ON DELETE CASCADE,
    event      TEXT    NOT NULL,
    title      TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    claimed_at TEXT,                                    -- a process is delivering it now
    attempts   INTEGER NOT NULL DEFAULT 0
);

-- step 5
-- Faithful and frugal syncs (spec §11). The incremental cursor (JSON: a record's FIELD
-- value) and the validators of the last full response, for conditional requests.
ALTER TABLE integrations ADD COLUMN cursor TEXT;
ALTER TABLE integrations ADD COLUMN etag TEXT;
ALTER TABLE integrations ADD COLUMN last_modified TEXT;
-- A record a complete full sync no longer saw, with --deletes mark.
ALTER TABLE records ADD COLUMN deleted_at TEXT;
ALTER TABLE sync_logs ADD COLUMN not_modified INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_logs ADD COLUMN records_deleted INTEGER NOT NULL DEFAULT 0;
CREATE VIEW live_records AS SELECT * FROM records WHERE deleted_at IS NULL;

-- step 6
-- A lease on the database's clock: an unfinished log's process renews it while the sync
-- runs; one whose lease expired is reaped by any command on any host (PostgreSQL), or,
-- on one host, when its process is gone.
ALTER TABLE sync_logs ADD COLUMN lease_until TEXT;

-- step 7
-- Tables for dashboards (spec §15): each integration's live records also in a typed
-- table of its own (``data_table``: its name; NULL with --table off), the columns that
-- table has (``data_columns``: the field each holds, its logical type, when it was
-- added), and the schema changes each sync made (``schema_changes``: a JSON list).
-- Tables of integrations that already have records are built from them by the code that
-- applies this step (store.Store.adopt_data_tables), in the same transaction.
ALTER TABLE integrations ADD COLUMN data_table TEXT;
CREATE UNIQUE INDEX integrations_data_table ON integrations (data_table) WHERE data_table IS NOT NULL;
CREATE TABLE data_columns (
    integration_id INTEGER NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    name           TEXT    NOT NULL,                    -- the column in the data table
    type           TEXT    NOT NULL,                    -- null | boolean | integer | real | timestamp | text | json
    path           TEXT    NOT NULL,                    -- the field, as a JSON array of names
    position       INTEGER NOT NULL,
    added_at       TEXT    NOT NULL,
    PRIMARY KEY (integration_id, name)
) WITHOUT ROWID;
ALTER TABLE sync_logs ADD COLUMN schema_changes TEXT;

-- step 8
-- A disabled integration's hint: how to turn it back on (health.resume_hint), written
-- when it is disabled; list --json, show and health give it instead of the last
-- sync's hint, which may promise a retry that will not happen.
ALTER TABLE integrations ADD COLUMN disabled_hint TEXT;

-- step 9
-- OAuth2 tokens (spec §16), only encrypted (syncctl.tokens): the access token and its
-- expiry, the latest refresh token of a rotating chain, an HMAC of the refresh token the
-- chain began with (a new one in ${VAR} wins), the key's id, and a lease held while one
-- process asks the token endpoint (one refresh at a time, across processes and hosts).
CREATE TABLE oauth_tokens (
    integration_id   INTEGER PRIMARY KEY REFERENCES integrations (id) ON DELETE CASCADE,
    key_id           TEXT,
    seed             TEXT,
    access_token     TEXT,
    expires_at       TEXT,
    refresh_token    TEXT,
    refreshing_until TEXT,
    refreshing_owner TEXT,
    updated_at       TEXT    NOT NULL
);
