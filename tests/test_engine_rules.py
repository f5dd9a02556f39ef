"""The engine's rules against a fake store, without a database or a subprocess: what a
sync stores, when it may sweep deletions, how it ends its log. The source is a real HTTP
server on 127.0.0.1 (tests/httpsources.py); the store records each verb it is asked."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from syncctl.config import Deletes, IntegrationConfig
from syncctl.dialect import SQLITE
from syncctl.engine import Engine, SyncSettings
from syncctl.fetch import Cancel, new_session
from syncctl.models import Integration, Status, SyncLog
from syncctl.pagination import Pagination
from tests.httpsources import json_body

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
LOG_ID = 7


def integration(url: str, **config: Any) -> Integration:
    return Integration(
        id=1, name="crm", url=url, config=IntegrationConfig(**config), sync_interval=3600, sync_enabled=True,
        disabled_reason=None, next_sync_at=NOW, slot_at=NOW, last_sync_at=None, last_status=None, last_error=None,
        last_hint=None, consecutive_failures=0, records_count=0, created_at=NOW, updated_at=NOW, state="active",
    )  # fmt: skip


@dataclass
class FakeStore:
    """The verbs the engine calls, recorded; answers set by each test."""

    claimed: Any = None
    unseen: tuple[int, int] = (0, 0)
    finish_fails: int = 0  # how many finish_sync calls raise a bug first
    calls: list[tuple[str, Any]] = field(default_factory=list)
    dialect: Any = SQLITE
    path: Any = None

    def unfinished_logs(self, integration_id: int | None = None) -> list[SyncLog]:
        return []

    def claim(self, integration_id: int, **kwargs: Any) -> Any:
        self.calls.append(("claim", integration_id))
        return self.claimed

    def get_by_id(self, integration_id: int) -> Integration | None:
        return None

    def upsert_records(self, integration_id: int, records: list[tuple[str, str]], stamp: datetime, **kw: Any) -> None:
        self.calls.append(("upsert", [key for key, _ in records]))

    def unseen_records(self, integration_id: int, stamp: datetime) -> tuple[int, int]:
        self.calls.append(("unseen", stamp))
        return self.unseen

    def sweep_records(self, integration_id: int, stamp: datetime, *, remove: bool, now: datetime, log_id: int) -> int:
        self.calls.append(("sweep", remove))
        return self.unseen[0]

    def finish_sync(self, log_id: int, **kw: Any) -> SyncLog:
        self.calls.append(("finish", kw))
        if self.finish_fails:
            self.finish_fails -= 1
            raise ValueError("a bug deciding the schedule")
        return SyncLog(id=log_id, integration_id=1, integration="crm", trigger="manual", status=kw["status"].value,
                       attempt=1, started_at=NOW, completed_at=NOW, duration_ms=5, records_count=kw["records_count"],
                       error_message=kw["error_message"], error_hint=kw["error_hint"])  # fmt: skip

    def history_entry(self, log_id: int) -> SyncLog | None:
        return None

    def verbs(self) -> list[str]:
        return [name for name, _ in self.calls]

    def finished(self) -> dict[str, Any]:
        [kw] = [kw for name, kw in self.calls if name == "finish"][-1:]
        return kw


def run(store: FakeStore, subject: Integration, **settings: Any) -> Any:
    engine = Engine(store, SyncSettings(sync_timeout=30, env={}, clock=lambda: NOW, rng=random.Random(1), **settings),
                    new_session())  # type: ignore[arg-type]
    return engine.run_claimed(LOG_ID, subject, "manual", cancel=Cancel())


def paged(source: Any, *pages: Any) -> str:
    """Pages chained by Link headers; each a JSON value or a Behaviour."""
    urls = [source.url(f"/p{n}") for n in range(len(pages))]
    for n, page in enumerate(pages):
        headers = {"Link": f'<{urls[n + 1]}>; rel="next"'} if n + 1 < len(pages) else None
        source.add(f"/p{n}", page if callable(page) else json_body(page, headers=headers))
    return urls[0]


LINK = Pagination.parse("link")


def test_each_page_is_stored_as_it_comes_and_the_log_ends_with_their_count(source):
    store = FakeStore()
    result = run(store, integration(paged(source, [{"id": 1}, {"id": 2}], [{"id": 3}]), pagination=LINK))
    assert store.verbs() == ["upsert", "upsert", "finish"]  # deletes keep: no sweep asked
    assert [keys for name, keys in store.calls if name == "upsert"] == [["1", "2"], ["3"]]
    assert (store.finished()["status"], store.finished()["records_count"]) == (Status.SUCCESS, 3)
    assert (result.status, result.records_count) == ("SUCCESS", 3)


def test_a_failed_page_keeps_what_was_stored_and_never_sweeps(source):
    store = FakeStore(unseen=(5, 10))
    url = paged(source, [{"id": 1}], json_body({"error": "gone"}, status=404))
    result = run(store, integration(url, pagination=LINK, deletes=Deletes.REMOVE))
    assert store.verbs() == ["upsert", "finish"], "a failed sync must not look for records to delete"
    finished = store.finished()
    assert (finished["status"], finished["records_count"]) == (Status.FAILED, 1)
    assert "404" in finished["error_message"] and finished["error_hint"]
    assert result.status == "FAILED"


def test_a_complete_full_sync_sweeps_what_it_did_not_see_with_its_own_stamp(source):
    store = FakeStore(unseen=(1, 10))
    run(store, integration(paged(source, [{"id": 1}]), deletes=Deletes.MARK))
    assert store.verbs() == ["upsert", "unseen", "sweep", "finish"]
    assert ("unseen", NOW) in store.calls and ("sweep", False) in store.calls  # mark: not removed
    assert store.finished()["records_deleted"] == 1


def test_a_sync_cut_short_by_max_pages_does_not_sweep(source):
    store = FakeStore(unseen=(1, 10))
    url = paged(source, [{"id": 1}], [{"id": 2}])
    run(store, integration(url, pagination=LINK, deletes=Deletes.REMOVE, max_pages=1))
    assert store.verbs() == ["upsert", "finish"]
    assert store.finished()["status"] is Status.SUCCESS


@pytest.mark.parametrize(("allow", "verbs"), [(False, ["upsert", "unseen", "finish"]),
                                              (True, ["upsert", "unseen", "sweep", "finish"])])
def test_more_deletions_than_max_delete_fail_the_sync_unless_allowed_once(source, allow, verbs):
    store = FakeStore(unseen=(9, 10))  # 90 % of the records gone: more than --max-delete's default
    run(store, integration(paged(source, [{"id": 1}]), deletes=Deletes.REMOVE), allow_mass_delete=allow)
    assert store.verbs() == verbs
    finished = store.finished()
    if allow:
        assert finished["status"] is Status.SUCCESS
    else:
        assert finished["status"] is Status.FAILED
        assert finished["error_message"].startswith("refused to delete 9 of 10 records")
        assert "--allow-mass-delete" in finished["error_hint"]


def test_a_bug_while_finishing_still_ends_the_log_failed(source):
    store = FakeStore(finish_fails=1)
    result = run(store, integration(paged(source, [{"id": 1}])))
    first, second = [kw for name, kw in store.calls if name == "finish"]
    assert first["status"] is Status.SUCCESS
    assert second["status"] is Status.FAILED
    assert second["error_message"].startswith("internal error while finishing the sync: ValueError")
    assert result.status == "FAILED"


def test_a_claim_someone_else_holds_is_busy_and_fetches_nothing(source):
    source.add("/items", json_body([{"id": 1}]))  # what a sync would fetch
    running = SyncLog(id=3, integration_id=1, integration="crm", trigger="schedule", status="RUNNING", attempt=1,
                      started_at=NOW - timedelta(seconds=20), completed_at=None, duration_ms=None, records_count=None,
                      error_message=None, error_hint=None, pid=4242, owner="host-b:4242")  # fmt: skip
    store = FakeStore(claimed=running)
    engine = Engine(store, SyncSettings(env={}, clock=lambda: NOW), new_session())  # type: ignore[arg-type]
    result = engine.sync(1, manual=True, cancel=Cancel())
    assert result.status == "BUSY"
    assert store.verbs() == ["claim"]
    assert source.count("/items") == 0
