"""Benchmark databases, built through the real schema (``Store.open``) and then filled
with bulk ``executemany`` inserts in one transaction.

- ``big``: 10,000 integrations and 1,000,000 sync_logs rows, nothing due (cached).
- ``due``: N integrations, all due, each with its own URL path on the bench source.
- ``records``: one integration with link pagination over the bench source's pages.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from syncctl.config import IntegrationConfig
from syncctl.store import Store, schema_steps

# Bump when the generated data changes, so cached databases are rebuilt.
GENERATOR_VERSION = 1

INTEGRATIONS = 10_000
LOGS = 1_000_000
INTERVALS = [300, 900, 900, 1800, 3600, 3600, 3600, 21600, 43200, 86400]
ERRORS = [
    (
        "HTTP 503 Service Unavailable from https://api.example.com/v1/items: the source failed",
        "a remote fault; syncctl will retry",
    ),
    (
        "timed out waiting for api.example.com (after 30 s)",
        "the source is slow or down: raise --timeout, or check the source",
    ),
    (
        "HTTP 401 Unauthorized from https://api.example.com/v1/items: the credentials were refused",
        "check the credentials in ${API_TOKEN} (set in the environment syncctl runs in)",
    ),
]


def ts(moment: datetime) -> str:
    """``2026-11-22T10:15:00.000Z``, the format syncctl stores."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def config(paginate: str = "none", headers: dict[str, str] | None = None) -> str:
    """An integration's config in the shape ``syncctl add`` stores."""
    return json.dumps(
        {
            "headers": headers if headers is not None else {"Authorization": "Bearer ${API_TOKEN}"},
            "params": {"per_page": "100"},
            "records_path": None,
            "key": "id",
            "paginate": paginate,
            "max_pages": 1000,
            "timeout": 30.0,
            "rate_limit": None,
            "max_retries": 3,
        },
        separators=(",", ":"),
    )


def _fingerprint() -> str:
    steps = "".join(f"{n}:{sql}" for n, sql in schema_steps())
    return hashlib.sha256(f"{GENERATOR_VERSION}\n{steps}".encode()).hexdigest()[:12]


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal", ".lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def copy_db(template: Path, target: Path) -> None:
    """A fresh copy of a (checkpointed) database file, without stale -wal/-shm files."""
    _remove(target)
    shutil.copyfile(template, target)


def _finish(store: Store) -> None:
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()


def _integration_rows(now: datetime, rng: random.Random) -> Iterator[tuple]:
    for i in range(1, INTEGRATIONS + 1):
        interval = rng.choice(INTERVALS)
        kind = rng.random()
        enabled, reason = 1, None
        if kind < 0.03:
            interval = None  # manual only
        elif kind < 0.05:
            enabled, reason = 0, "paused"
        elif kind < 0.06:
            enabled, reason = 0, "failures"
        failed = reason == "failures" or rng.random() < 0.05
        last = now - timedelta(seconds=rng.randint(60, 3600))
        # Every scheduled slot lies in the future: a run-due tick finds nothing due.
        nxt = now + timedelta(days=30, seconds=rng.randint(0, 86400)) if interval else None
        error, hint = rng.choice(ERRORS) if failed else (None, None)
        created = now - timedelta(days=400)
        yield (
            i,
            f"integration-{i:05d}",
            f"https://api{i % 97}.example.com/v1/items/{i}",
            config("link" if i % 5 == 0 else "none"),
            interval,
            enabled,
            reason,
            ts(nxt) if nxt else None,
            ts(nxt) if nxt else None,
            ts(last),
            "FAILED" if failed else "SUCCESS",
            error,
            hint,
            (4 if reason == "failures" else 1) if failed else 0,
            rng.randint(0, 5000),
            ts(created),
            ts(last),
        )


def _log_rows(now: datetime, rng: random.Random) -> Iterator[tuple]:
    # Logs of all integrations interleave in time, as cron would write them.
    start = now - timedelta(days=365)
    step = (now - start).total_seconds() / LOGS
    base = start.timestamp()
    for n in range(1, LOGS + 1):
        started = base + n * step
        duration = rng.randint(80, 4000)
        failed = rng.random() < 0.04
        error, hint = rng.choice(ERRORS) if failed else (None, None)
        begun = datetime.fromtimestamp(started, timezone.utc)
        done = datetime.fromtimestamp(started + duration / 1000, timezone.utc)
        yield (
            n,
            rng.randint(1, INTEGRATIONS),
            "retry" if failed and rng.random() < 0.5 else ("manual" if n % 50 == 0 else "schedule"),
            "FAILED" if failed else "SUCCESS",
            2 if failed else 1,
            ts(begun),
            ts(done),
            duration,
            None if failed else rng.randint(0, 500),
            error,
            hint,
            4242,
            "bench-host:00000000-0000-0000-0000-000000000000:4242:123456",
        )


def build_big(cache_dir: Path, log=print) -> Path:  # noqa: ANN001
    """The 10,000-integration, 1,000,000-log database, built once per schema version."""
    path = cache_dir / f"big-{_fingerprint()}.db"
    if path.exists():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    for old in cache_dir.glob("big-*.db*"):
        old.unlink()
    tmp = cache_dir / "big.building.db"
    _remove(tmp)
    started = time.perf_counter()
    log(f"building {INTEGRATIONS:,} integrations and {LOGS:,} sync logs (cached afterwards)…")
    rng = random.Random(20261122)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    store = Store.open(tmp)
    conn = store.conn
    with store.transaction():
        conn.executemany(
            "INSERT INTO integrations (id, name, url, config, sync_interval, sync_enabled,"
            " disabled_reason, next_sync_at, slot_at, last_sync_at, last_status, last_error,"
            " last_hint, consecutive_failures, records_count, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _integration_rows(now, rng),
        )
        conn.executemany(
            "INSERT INTO sync_logs (id, integration_id, trigger, status, attempt, started_at,"
            " completed_at, duration_ms, records_count, error_message, error_hint, pid, owner)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _log_rows(now, rng),
        )
    _finish(store)
    tmp.rename(path)
    _remove(tmp)
    log(f"built {path.name} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f} s")
    return path


def build_due(path: Path, base_url: str, count: int) -> Path:
    """``count`` integrations, all due now, each with its own URL path."""
    _remove(path)
    store = Store.open(path)
    now = datetime.now(timezone.utc) - timedelta(minutes=5)
    with store.transaction():
        store.conn.executemany(
            "INSERT INTO integrations (name, url, config, sync_interval, sync_enabled,"
            " next_sync_at, slot_at, created_at, updated_at) VALUES (?, ?, ?, 3600, 1, ?, ?, ?, ?)",
            (
                (
                    f"due-{i:04d}",
                    f"{base_url}/slow/{i}",
                    config(headers={}),
                    ts(now),
                    ts(now),
                    ts(now),
                    ts(now),
                )
                for i in range(1, count + 1)
            ),
        )
    _finish(store)
    return path


def data_table_name(integration: str) -> str:
    """The data table ``syncctl add`` gives an integration by default (spec §15)."""
    from syncctl.tables import default_table_name

    return default_table_name(integration)


def build_records(path: Path, url: str, name: str = "feed") -> Path:
    """One manual integration reading ``url`` with RFC 8288 link pagination."""
    _remove(path)
    store = Store.open(path)
    store.add_integration(
        name=name,
        url=url,
        config=IntegrationConfig.from_json(json.loads(config("link", headers={})) | {"params": {}}),
        interval=None,
        now=datetime.now(timezone.utc),
        table=data_table_name(name),
    )
    _finish(store)
    return path
