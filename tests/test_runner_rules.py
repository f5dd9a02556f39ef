"""The runner's and the engine's rules on plain values, without a database or a
subprocess: what a finished tick tells cron (runner.verdict), what makes a success look
wrong (engine.SyncNotes), and the min-records guard."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from syncctl.config import IntegrationConfig
from syncctl.engine import SyncNotes, check_min_records
from syncctl.errors import SyncError
from syncctl.models import SyncResult
from syncctl.pagination import Pagination
from syncctl.runlock import Holder
from syncctl.runner import RunReport, verdict

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
LOCK = Path("/var/lib/syncctl/syncctl.db")


@dataclass
class Disabled:
    """The fields of an Integration the verdict reads."""

    name: str
    consecutive_failures: int
    last_error: str
    hint: str | None = None


def test_a_busy_lock_is_silent_exit_0_with_a_note_for_verbose():
    report = RunReport(locked_by="pid 12, for 1m", holder=Holder(pid=12, started_at=NOW - timedelta(minutes=1)))
    told = verdict(report, now=NOW, sync_timeout=300, lock_file=LOCK)
    assert told.complaints == [], "a lock busy for a minute is normal: nothing for cron to mail"
    assert told.exit_code == 0
    assert told.notes == ["another run-due is running (pid 12, for 1m); nothing to do"]


def test_a_lock_held_past_any_sync_is_one_line_and_exit_1():
    held = Holder(pid=12, started_at=NOW - timedelta(minutes=16))  # 2 × 300 s + 5 min = 15 min
    told = verdict(RunReport(locked_by="pid 12", holder=held), now=NOW, sync_timeout=300, lock_file=LOCK)
    assert told.exit_code == 1
    [(message, hint)] = told.complaints
    assert message.startswith("run-due pid 12 has held /var/lib/syncctl/syncctl.db.lock for 16m"), message
    assert hint is not None and "12" in hint


def test_each_integration_disabled_by_the_tick_is_one_line_with_its_resume_hint():
    gone = Disabled("crm", 4, "HTTP 503", hint="a remote fault; then run: syncctl resume crm")
    told = verdict(RunReport(disabled=[gone]), now=NOW, sync_timeout=300, lock_file=LOCK)
    assert told.complaints == [(
        "crm is now disabled after 4 failed attempts; last error: HTTP 503",
        "a remote fault; then run: syncctl resume crm",
    )]
    assert told.exit_code == 1


@pytest.mark.parametrize(("statuses", "code"), [((), 0), (("SUCCESS",), 0), (("SUCCESS", "FAILED"), 1)])
def test_any_failed_sync_makes_the_tick_exit_1(statuses, code):
    report = RunReport(results=[SyncResult(f"i{n}", status) for n, status in enumerate(statuses)])
    assert verdict(report, now=NOW, sync_timeout=300, lock_file=LOCK).exit_code == code


@dataclass
class FakeConnector:
    complete: bool = True
    not_modified: bool = False
    graphql_errors: list[str] = field(default_factory=list)


@dataclass
class FakeIntegration:
    name: str = "crm"
    config: IntegrationConfig = field(default_factory=IntegrationConfig)
    data_table: str | None = "crm"


def test_a_clean_success_carries_no_warning():
    assert SyncNotes().warning(FakeIntegration(), FakeConnector()) is None


def test_records_keyed_by_hash_warn_with_the_key_option():
    notes = SyncNotes(hashed=3)
    warning = notes.warning(FakeIntegration(), FakeConnector())
    assert warning is not None and warning.startswith("warning: 3 records lack the key field 'id'"), warning
    assert warning.endswith("syncctl edit crm --key FIELD"), warning


def test_a_sync_cut_by_max_pages_warns_and_a_304_does_not():
    paged = FakeIntegration(config=IntegrationConfig(pagination=Pagination.parse("link"), max_pages=5))
    assert "stopped at --max-pages 5" in (SyncNotes().warning(paged, FakeConnector(complete=False)) or "")
    assert SyncNotes().warning(paged, FakeConnector(complete=False, not_modified=True)) is None


def test_graphql_errors_beside_records_are_a_warning():
    warning = SyncNotes().warning(FakeIntegration(), FakeConnector(graphql_errors=["field 'x' is deprecated"]))
    assert warning == "warning: the source answered with records and errors: field 'x' is deprecated"


def test_fewer_records_than_the_guard_fail_the_sync():
    check_min_records(1, 1)  # enough: nothing raised
    with pytest.raises(SyncError) as refused:
        check_min_records(0, 1)
    assert refused.value.message == "returned 0 records, at least 1 expected"
