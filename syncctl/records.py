"""Records as pure functions: where a page's records are, how each is keyed and stored,
how incremental cursors compare, and whether a deletion sweep may run. No HTTP and no
database: unit-tested on plain values (tests/test_records.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from syncctl.errors import SyncError
from syncctl.models import dumps
from syncctl.secrets import Secrets

FALLBACK_RECORD_FIELDS = ("data", "items", "results", "records")
HASH_PREFIX = "sha256:"


# -- where the records are ---------------------------------------------------------------


def lookup(body: Any, path: str) -> Any:
    """The value at a dotted ``path`` (``data.items``, ``meta.next``, ``0.id``), or None."""
    for part in path.split("."):
        if isinstance(body, dict) and part in body:
            body = body[part]
        elif isinstance(body, list) and part.isdigit() and int(part) < len(body):
            body = body[int(part)]
        else:
            return None
    return body


def _deepest(body: Any, path: str) -> tuple[str, list[str]]:
    """The longest prefix of ``path`` that exists, and the keys found there."""
    reached: list[str] = []
    for part in path.split("."):
        if isinstance(body, dict) and part in body:
            body = body[part]
            reached.append(part)
        else:
            break
    keys = [str(k) for k in body] if isinstance(body, dict) else []
    return ".".join(reached), keys


def records_at(body: Any, records_path: str | None) -> tuple[list[Any], str | None]:
    """The records in a page and where they were: the body if it is an array (``""``);
    else the array at ``records_path``; else the first of data/items/results/records
    that is an array (its name); else the object itself as one record (None)."""
    if isinstance(body, list):
        return body, ""
    if records_path:
        found = lookup(body, records_path)
        if isinstance(found, list):
            return found, records_path
        where, keys = _deepest(body, records_path)
        shown = ", ".join(keys[:12]) if keys else "none"
        raise SyncError(
            f"records path {records_path!r} not found in the response"
            + (f" (at {where!r} the keys are: {shown})" if where else f" (top-level keys: {shown})"),
            "point --records-path at the array of records: syncctl edit {name} --records-path data.items",
        )
    if isinstance(body, dict):
        for name in FALLBACK_RECORD_FIELDS:
            if isinstance(body.get(name), list):
                return body[name], name
    return [body], None


def extract_records(body: Any, records_path: str | None) -> list[Any]:
    """The records in a page (see :func:`records_at`)."""
    return records_at(body, records_path)[0]


def arrays_of_objects(body: Any, depth: int = 3) -> list[tuple[str, int]]:
    """(dotted path, length) of every non-empty array of objects in ``body`` within
    ``depth`` levels, shallowest first: where the records might be (Datasette's ``rows``)."""
    found: list[tuple[str, int]] = []
    level: list[tuple[str, Any]] = [("", body)]
    for _ in range(depth):
        below: list[tuple[str, Any]] = []
        for prefix, value in level:
            if not isinstance(value, dict):
                continue
            for name, item in value.items():
                path = f"{prefix}.{name}" if prefix else str(name)
                if isinstance(item, list) and item and all(isinstance(x, dict) for x in item[:20]):
                    found.append((path, len(item)))
                elif isinstance(item, dict):
                    below.append((path, item))
        level = below
    return found


# -- keys and stored form ----------------------------------------------------------------


def has_key(record: Any, key_field: str) -> bool:
    """Does the record carry a usable key field (a scalar, not null)?"""
    if not isinstance(record, dict):
        return False
    value = lookup(record, key_field) if "." in key_field else record.get(key_field)
    return value is not None and not isinstance(value, (dict, list))


def record_key(record: Any, key_field: str) -> str:
    """The record's key field, or a hash of its canonical JSON when it has none."""
    if isinstance(record, dict):
        value = lookup(record, key_field) if "." in key_field else record.get(key_field)
        if value is not None and not isinstance(value, (dict, list)):
            if isinstance(value, bool):
                return "true" if value else "false"
            return str(value)
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    import hashlib  # only for records without their key field (hashlib costs an idle tick ~2 ms)

    return HASH_PREFIX + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def hashed_count(records: list[Any], pairs: list[tuple[str, str]], key_field: str) -> int:
    """How many of a page's records were keyed by a hash because they lack the key field.
    Cheap: only keys that look like hashes are checked against their record."""
    return sum(
        1 for i, (key, _) in enumerate(pairs) if key.startswith(HASH_PREFIX) and not has_key(records[i], key_field)
    )


_SURROGATE = re.compile("[\ud800-\udfff]")


def _suspect(text: str) -> bool:
    """Might ``text`` hold what standard JSON in SQLite cannot: NaN, an infinite number
    (NaN, Infinity, or a literal such as 1e400 that overflows a double), a lone surrogate
    (a "\\ud800" escape; SQLite text must be valid UTF-8)? A cheap test, run once per
    record: substring tests, and the surrogate scan only for non-ASCII text; _storable
    decides."""
    return "NaN" in text or "Infinity" in text or (not text.isascii() and _SURROGATE.search(text) is not None)


def keyed(records: list[Any], key_field: str, secrets: Secrets | None = None) -> list[tuple[str, str]]:
    """(key, JSON) for each record as stored. A secret value the source echoes back is
    stored as ``[redacted]``: the page is checked once, and only the records holding a
    secret are rewritten (the records/s budget: nothing per record without secrets), in
    ``records`` too, so what is stored anywhere else comes from the scrubbed record."""
    pairs = [_pair(record, key_field) for record in records]
    if secrets is not None and secrets.in_records(data for _, data in pairs):
        for i, record in enumerate(records):
            if secrets.in_records((pairs[i][1],)):
                records[i] = secrets.scrub(record)  # the data table gets the scrubbed one too
                pairs[i] = _pair(records[i], key_field)
    return pairs


def _pair(record: Any, key_field: str) -> tuple[str, str]:
    key, data = record_key(record, key_field), dumps(record)
    if _suspect(data) or _suspect(key):
        key, data = _storable(record, key)
    return key, data


def _storable(record: Any, key: str) -> tuple[str, str]:
    """The record as standard JSON SQLite can store: lone surrogates stay escaped; NaN
    and infinite numbers fail the sync with a hint (JSON has no way to write them)."""
    try:
        data = json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise SyncError(
            f"record {_SURROGATE.sub('?', key)[:80]!r} holds NaN, Infinity or a number too large "
            "for a double, which standard JSON cannot hold",
            "fix the source to send finite numbers (or strings) in its records",
        ) from None
    if _SURROGATE.search(data):
        data = json.dumps(record, separators=(",", ":"), allow_nan=False)
    if _SURROGATE.search(key):
        key = key.encode("utf-8", "backslashreplace").decode("utf-8")
    return key, data


# -- what makes a success look wrong (spec §11: warnings, and check's problems) -----------


def whole_body_warning(path: str, length: int) -> tuple[str, str]:
    """(what is wrong, the option that fixes it): an object body taken as one record
    while it holds an array of objects."""
    return (
        f"the body is an object stored as one record, but it holds an array of {length} objects at {path!r}",
        f"--records-path {path}",
    )


def hashed_warning(missing: int, key_field: str, of: int | None = None, candidate: str | None = None) -> tuple[str, str]:
    """(what is wrong, the option that fixes it): records without their key field, keyed
    by a hash of their content."""
    counted = f"{missing} of {of} records lack" if of is not None else f"{missing} records lack"
    return (
        f"{counted} the key field {key_field!r} and are keyed by a hash of their content (a changed record is "
        "stored again)",
        f"--key {candidate or 'FIELD'}",
    )


def shared_keys(pairs: list[tuple[str, str]]) -> int:
    """How many of a page's (key, JSON) pairs are stored over another of the page with the
    same key and other content (the last one seen is kept). Identical records are not
    counted: nothing of them is lost."""
    keys = len({key for key, _ in pairs})
    return 0 if keys == len(pairs) else len(set(pairs)) - keys


def shared_key_warning(shared: int, key_field: str, candidate: str | None = None) -> tuple[str, str]:
    """(what is wrong, the option that fixes it): records that share their key with
    another of their page, so only the last of them is stored."""
    return (
        f"{shared} records had the same {key_field!r} as another record of their page and were stored over "
        "it (only the last is kept)",
        f"--key {candidate or 'FIELD'}",
    )


# -- incremental cursors -----------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def cursor_order(value: Any) -> tuple[str, Any] | None:
    """What a cursor value compares as: ("n", number) for numbers and numeric strings,
    ("t", aware datetime) for ISO 8601 timestamps, ("s", text) for other text; None for
    what cannot be a cursor (null, booleans, objects, arrays)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return ("n", value) if value == value else None  # NaN never orders
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if _NUMBER.fullmatch(text):
        return "n", float(text)
    if len(text) >= 10 and text[4:5] == "-" and text[:4].isdigit():
        moment = _timestamp(text)
        if moment is not None:
            return "t", moment
    return "s", text


def _timestamp(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00") if text[-1:] in "zZ" else text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def later(current: Any, candidate: Any) -> Any:
    """The larger of two cursor values, compared as numbers or timestamps when both are;
    a candidate that cannot be compared with the current cursor leaves it as it is."""
    new = cursor_order(candidate)
    if new is None:
        return current
    old = cursor_order(current)
    if old is None:
        return candidate
    if old[0] != new[0]:
        return current
    return candidate if new[1] > old[1] else current


def max_cursor(values: Iterable[Any], start: Any = None) -> Any:
    """The largest cursor value among ``values`` (and ``start``)."""
    best = start
    for value in values:
        best = later(best, value)
    return best


def page_cursor(records: list[Any], field: str, start: Any = None) -> Any:
    """The largest ``field`` value among a page's records (and ``start``)."""
    dotted = "." in field
    values = ((lookup(r, field) if dotted else r.get(field)) for r in records if isinstance(r, dict))
    return max_cursor(values, start)


def cursor_param(cursor: Any, lookback_seconds: float = 0) -> str | int | float | None:
    """The value sent as the incremental PARAM: the cursor, less the lookback for a
    timestamp (written back in the cursor's own style); None without a cursor. A number
    stays a number (a query makes it text; a JSON body keeps its type)."""
    order = cursor_order(cursor)
    if order is None:
        return None
    if order[0] == "t" and lookback_seconds:
        moment = order[1] - timedelta(seconds=lookback_seconds)
        text = moment.isoformat()
        if str(cursor).strip()[-1:] in "zZ":
            text = moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        elif "T" not in str(cursor) and " " in str(cursor):
            text = text.replace("T", " ")
        return text
    if isinstance(cursor, float) and cursor.is_integer():
        return int(cursor)
    if isinstance(cursor, (int, float)) and not isinstance(cursor, bool):
        return cursor
    return str(cursor)


# -- deletion sweeps ---------------------------------------------------------------------


@dataclass(frozen=True)
class SweepDecision:
    """Whether records unseen in a complete full sync may be marked or removed."""

    allowed: bool
    missing: int
    live: int
    max_delete: float

    @property
    def share(self) -> float:
        return 100.0 * self.missing / self.live if self.live else 0.0


def decide_sweep(missing: int, live: int, max_delete: float, allow_mass_delete: bool = False) -> SweepDecision:
    """A sweep that would delete more than ``max_delete`` percent of the live records is
    refused (the source returned a truncated list?), unless allowed once."""
    share = 100.0 * missing / live if live else 0.0
    return SweepDecision(allow_mass_delete or share <= max_delete, missing, live, max_delete)
