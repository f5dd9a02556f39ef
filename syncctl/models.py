"""Domain objects shared by the store, the engine and the renderers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from itertools import repeat
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncctl.config import IntegrationConfig


class Status(str, Enum):
    """A sync log's status, stored verbatim."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


UNFINISHED_STATUSES = (Status.PENDING, Status.RUNNING)  # a sync not finished (sql.UNFINISHED)


class Trigger(str, Enum):
    """What started a sync, stored verbatim."""

    SCHEDULE = "schedule"
    RETRY = "retry"
    MANUAL = "manual"


@dataclass
class Integration:
    """One row of ``integrations``, with its config decoded."""

    id: int
    name: str
    url: str
    config: IntegrationConfig
    sync_interval: int | None
    sync_enabled: bool
    disabled_reason: str | None
    next_sync_at: datetime | None
    slot_at: datetime | None
    last_sync_at: datetime | None
    last_status: str | None
    last_error: str | None
    last_hint: str | None
    consecutive_failures: int
    records_count: int
    created_at: datetime
    updated_at: datetime
    state: str  # active | manual | paused | disabled: derived by the store (STATE_SQL)
    running_since: datetime | None = None  # when its unfinished sync started, if one runs now
    last_success_at: datetime | None = None
    stale_at: datetime | None = None  # when it goes (went) stale: derived by the store (STALE_AT_SQL)
    failing_since: datetime | None = None  # when the current failure streak began
    disabled_at: datetime | None = None  # when it was paused or auto-disabled

    def is_stale(self, now: datetime) -> bool:
        """Stale (spec §10): the store's STALE_AT_SQL says when; None means never."""
        return self.stale_at is not None and self.stale_at < now
    cursor: Any = None  # the incremental cursor (a record's FIELD value), None when reset
    etag: str | None = None  # the validators of the last full response (conditional requests)
    last_modified: str | None = None
    data_table: str | None = None  # its records' typed table (spec §15); None: --table off
    hint: str | None = None  # the hint for its state (a disabled one's: how to resume it); store.HINT_SQL

    @property
    def max_retries(self) -> int:
        return self.config.max_retries


@dataclass
class SyncLog:
    """One row of ``sync_logs``, with its integration's name."""

    id: int
    integration_id: int
    integration: str
    trigger: str
    status: str
    attempt: int
    started_at: datetime
    completed_at: datetime | None
    duration_ms: int | None
    records_count: int | None
    error_message: str | None
    error_hint: str | None
    pid: int | None = None
    owner: str | None = None
    lease_expired: bool = False  # its lease ran out on the database's clock (unfinished logs)
    not_modified: bool = False  # a 304: the source had nothing new
    records_deleted: int = 0  # records a deletion sweep marked or removed
    # What it changed of its data table's columns (spec §15): [{column, change, type, from}]
    schema_changes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SyncResult:
    """What one sync attempt came to, for the CLI to render."""

    name: str
    status: str  # SUCCESS | FAILED | BUSY | SKIPPED
    trigger: str | None = None
    log_id: int | None = None
    records_count: int = 0
    duration_ms: int = 0
    error_message: str | None = None
    error_hint: str | None = None  # on a SUCCESS: a warning (it looks wrong)
    not_modified: bool = False
    records_deleted: int = 0


def dumps_all(values: list[Any]) -> list[str | None]:
    """``dumps`` of each value, None staying None: a whole column of a data table at C
    speed (no Python frame per value when there is no None)."""
    if _c_encode is None:
        return [None if v is None else dumps(v) for v in values]
    if None in values:
        return [None if v is None else "".join(_c_encode(v, 0)) for v in values]
    return list(map("".join, map(_c_encode, values, repeat(0))))


def _c_encoder() -> Any:
    from json.encoder import JSONEncoder, c_make_encoder, encode_basestring

    if c_make_encoder is None:
        return None
    return c_make_encoder(None, JSONEncoder().default, encode_basestring, None, ":", ",", False, False, True)


_c_encode = _c_encoder()


def _json_encoder(item_separator: str, key_separator: str) -> Callable[[Any], str] | None:
    """A reusable C JSON encoder (``ensure_ascii=False``), or None without the C accelerator.

    json.dumps builds a new encoder on every call, which costs about as much as encoding
    a typical record; a sync stores every record (spec §8: records/s). No cycle check:
    values come from json.loads, our config or our output shapes.
    """
    from json.encoder import JSONEncoder, c_make_encoder, encode_basestring

    if c_make_encoder is None:
        return None
    default = JSONEncoder().default
    encode = c_make_encoder(
        None, default, encode_basestring, None, key_separator, item_separator, False, False, True
    )
    return lambda value: "".join(encode(value, 0))


_encode = _json_encoder(",", ":")


def dumps(value: Any) -> str:
    """Compact JSON as stored in the database."""
    if _encode is None:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return _encode(value)
