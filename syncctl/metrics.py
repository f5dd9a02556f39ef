"""Prometheus metrics (spec section 10): the text exposition format, written with
prometheus_client (imported only here, only when metrics are asked for). Timestamps of
the last success and the last sync, not "seconds since": Prometheus computes ages with
``time() - …``, and a stopped exporter then shows stale data instead of frozen ages."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from syncctl.store import Store
from syncctl.timeutil import format_ts, parse_ts


def _seconds(stamp: str | None) -> float | None:
    moment = parse_ts(stamp)
    return moment.timestamp() if moment is not None else None


def exposition(store: Store, now: datetime) -> bytes:
    """Every metric of every integration, and run-due's last tick."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    rows = store.metrics_rows()
    last_tick = store.last_tick_at()
    stamp = format_ts(now)

    def gauge(name: str, doc: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=["integration"])

    last_success = gauge("syncctl_last_success_timestamp_seconds", "When the last successful sync finished.")
    last_sync = gauge("syncctl_last_sync_timestamp_seconds", "When the last sync (of any outcome) started.")
    duration = gauge("syncctl_last_sync_duration_seconds", "How long the last sync took.")
    records = gauge("syncctl_last_sync_records", "Records the last sync returned.")
    stored = gauge("syncctl_records_stored", "Records stored for the integration.")
    failures = gauge("syncctl_consecutive_failures", "Failed scheduled attempts in a row.")
    stale = gauge("syncctl_stale", "1 when the last success is older than max_staleness.")
    enabled = gauge("syncctl_enabled", "1 when scheduled syncing is on (not paused or disabled).")
    syncs = CounterMetricFamily(
        "syncctl_syncs", "Finished syncs by outcome.", labels=["integration", "status"]
    )
    for (name, is_enabled, success_at, sync_at, duration_ms, last_records, records_count,
         consecutive, succeeded, failed, stale_at) in rows:
        labels = [name]
        success = _seconds(success_at)
        if success is not None:
            last_success.add_metric(labels, success)
        finished = _seconds(sync_at)
        if finished is not None:
            last_sync.add_metric(labels, finished - (duration_ms or 0) / 1000)
            if duration_ms is not None:
                duration.add_metric(labels, duration_ms / 1000)
            if last_records is not None:
                records.add_metric(labels, last_records)
        stored.add_metric(labels, records_count)
        failures.add_metric(labels, consecutive)
        stale.add_metric(labels, 1 if stale_at is not None and stale_at < stamp else 0)
        enabled.add_metric(labels, 1 if is_enabled else 0)
        syncs.add_metric([name, "success"], succeeded)
        syncs.add_metric([name, "failed"], failed)
    tick = GaugeMetricFamily(
        "syncctl_run_due_last_tick_timestamp_seconds", "When run-due last ticked (on any host)."
    )
    if last_tick is not None:
        tick.add_metric([], last_tick.timestamp())
    families = [last_success, last_sync, duration, records, stored, failures, stale, enabled, syncs, tick]

    class _Collector:
        def collect(self) -> Any:
            return iter(families)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry)


_FINGERPRINT = "# syncctl data "
_TICK = "syncctl_run_due_last_tick_timestamp_seconds"


def write_file(store: Store, path: Path, now: datetime) -> None:
    """Rewrite ``path`` atomically for node_exporter's textfile collector; readable by all
    (it holds no secret). Written as :mod:`syncctl.files` writes (one writer at a time).

    At 10,000 integrations prometheus_client takes ~0.4 s to write the 120,000 samples, four
    idle ticks' worth. So the file's first line is a comment with a fingerprint of what the
    samples depend on (integrations' count, last change and syncs) and the next moment one
    goes stale with time alone; while the fingerprint holds and that moment has not come,
    only the last sample (run-due's last tick, the last family) is written anew, into the
    previous version kept as ``.NAME.spare`` (not a ``*.prom`` file: the collector skips it),
    which is then swapped in (``files.renew_tail``)."""
    from syncctl import files

    path = Path(path)
    data = store.metrics_fingerprint()
    with files.locked(path.parent):  # a lock-busy tick beside run-due's own
        if _renew_tick(store, path, data, now):
            return
        until = store.next_staleness_change(now)
        line = f"{_FINGERPRINT}{data} until {format_ts(until) if until else 'never'}\n"
        content = line.encode("utf-8") + exposition(store, now)
        files.replace(path, lambda out: out.write(content))


def _reusable_line(line: bytes, data: str, now: datetime) -> bool:
    """Was the file with this first line written for ``data``, and does no integration
    go stale between then and ``now``?"""
    prefix = f"{_FINGERPRINT}{data} until ".encode()
    if not line.startswith(prefix):
        return False
    until = line[len(prefix):].strip().decode("ascii", "replace")
    if until == "never":
        return True
    try:
        return now < parse_ts(until)  # type: ignore[operator]
    except ValueError:
        return False


def _renew_tick(store: Store, path: Path, data: str, now: datetime) -> bool:
    """Rewrite only the last-tick sample if the file was written for the same data and
    still holds (see :func:`_reusable_line`); False when it must be written whole."""
    from syncctl import files

    marker = f"# TYPE {_TICK} gauge\n".encode()
    try:
        with open(path, "rb") as previous:
            if not _reusable_line(previous.readline(), data, now):
                return False
            size = os.fstat(previous.fileno()).st_size
            previous.seek(max(0, size - 4096))
            tail = previous.read()
            at = tail.rfind(marker)
            if at < 0 or tail[at + len(marker):].rstrip(b"\n").count(b"\n"):
                return False
            keep = size - len(tail) + at + len(marker)
            last_tick = store.last_tick_at()
            sample = f"{_TICK} {_go_float(last_tick.timestamp())}\n".encode() if last_tick is not None else b""
            files.renew_tail(path, previous, keep, sample)
    except OSError:
        return False
    return True


def _go_float(value: float) -> str:
    """A sample value as prometheus_client writes it (floatToGoString, for a positive
    timestamp): not worth importing prometheus_client for one number."""
    text = repr(float(value))
    dot = text.find(".")
    if dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text
