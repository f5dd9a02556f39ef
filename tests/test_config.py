"""The typed integration config (issue 10's design): each default once, parsed once,
stored as JSON that older releases' configs still load from; pagination modes that
produce the next request. Pure: no HTTP, no database (but for the CLI round trips)."""

from __future__ import annotations

import json

import pytest

from syncctl.config import (
    DEFAULTS,
    Deletes,
    IntegrationConfig,
    IntegrationOptions,
    build_config,
)
from syncctl.errors import UsageError
from syncctl.pagination import (
    CursorPagination,
    LinkPagination,
    NextUrlPagination,
    PagePagination,
    PageRequest,
    PageSeen,
    Pagination,
)
from tests.helpers import query

# What the first release stored (tests/test_cli_manage.py's shape): no new keys at all.
RELEASED = {
    "headers": {"Authorization": "Bearer ${T}"}, "params": {"limit": "100", "f": ["a", "b"]},
    "records_path": "data.items", "key": "id", "paginate": "cursor:meta.next:after", "max_pages": 50,
    "timeout": 12.5, "rate_limit": {"text": "100/m", "per_second": 100 / 60}, "max_retries": 5,
}  # fmt: skip


def test_a_config_stored_by_the_released_version_loads_with_new_defaults():
    config = IntegrationConfig.from_json(json.dumps(RELEASED))
    assert config.pagination == CursorPagination("meta.next", "after")
    assert config.rate_limit.text == "100/m" and config.max_pages == 50 and config.timeout == 12.5
    assert config.incremental is None and config.deletes is Deletes.KEEP and config.max_delete == 50
    assert config.max_staleness is None and config.min_records == 0
    assert IntegrationConfig.from_json("{}") == DEFAULTS
    # and it is written back with the same keys and values, plus the new ones
    assert config.to_json().items() >= RELEASED.items()


def test_every_option_round_trips_through_json_and_back_to_options():
    config = build_config(IntegrationOptions(
        headers=["Accept: application/json"], params=["a=1", "a=2"], records_path="rows", key="pk",
        paginate="page:p", max_pages=7, timeout=5, rate_limit="2/s", max_retries=1,
        incremental="updated_at:since", lookback="10m", deletes="mark", max_delete=20,
        max_staleness="3h", min_records=1,
    ))
    assert IntegrationConfig.from_json(json.dumps(config.to_json())) == config
    assert build_config(config.to_options()) == config
    assert config.lookback == 600 and config.max_staleness == 10800 and config.deletes is Deletes.MARK


@pytest.mark.parametrize(("options", "wrong"), [
    ({"incremental": "updated_at"}, "--incremental"),
    ({"incremental": ":since"}, "--incremental"),
    ({"lookback": "10m"}, "--lookback needs --incremental"),
    ({"deletes": "purge"}, "--deletes"),
    ({"max_delete": 101}, "--max-delete"),
    ({"max_staleness": "30s"}, "smallest is 1 minute"),
    ({"max_staleness": "soon"}, "--max-staleness"),
    ({"min_records": -1}, "--min-records"),
    ({"paginate": "cursor:next"}, "--paginate"),
])  # fmt: skip
def test_invalid_options_are_refused_with_a_hint(options, wrong):
    with pytest.raises(UsageError) as refused:
        build_config(IntegrationOptions(**options))
    assert wrong in refused.value.message and refused.value.hint


def test_an_empty_value_in_edit_goes_back_to_the_config_default():
    current = build_config(IntegrationOptions(deletes="remove", max_staleness="2h", records_path="rows"))
    merged = current.to_options().merged(IntegrationOptions(deletes="", max_staleness="", records_path=""))
    back = build_config(merged)
    assert back.deletes == DEFAULTS.deletes and back.max_staleness is None and back.records_path is None


# -- pagination: the next request -----------------------------------------------------------


def seen(body=None, *, number=1, url="http://h/items?x=1", links=None, empty=False):  # noqa: ANN001, ANN201
    return PageSeen(number, body, url, links or {}, empty)


def test_each_pagination_mode_produces_the_next_request():
    assert Pagination.parse("none").next(seen({})) is None
    link = Pagination.parse("link")
    assert isinstance(link, LinkPagination)
    assert link.next(seen(links={"next": {"url": "/items?page=2"}})) == PageRequest("http://h/items?page=2")
    assert link.next(seen()) is None
    nxt = Pagination.parse("next-url:next_url")
    assert isinstance(nxt, NextUrlPagination)
    assert nxt.next(seen({"next_url": "?_next=5"})) == PageRequest("http://h/items?_next=5")
    assert nxt.next(seen({"next_url": None})) is None
    cursor = Pagination.parse("cursor:meta.next:after")
    assert cursor.next(seen({"meta": {"next": "abc"}})) == PageRequest(None, (("after", "abc"),))
    assert cursor.next(seen({"meta": {"next": ""}})) is None
    page = Pagination.parse("page:p")
    # Page numbers are numbers: a query string writes them as text, a JSON body keeps them numbers.
    assert isinstance(page, PagePagination) and page.first() == PageRequest(None, (("p", 1),))
    assert page.next(seen([1], number=3)) == PageRequest(None, (("p", 4),))
    assert page.next(seen([], number=3, empty=True)) is None
    assert [Pagination.parse(t).text for t in ("none", "link", "next-url:a.b", "cursor:c:d", "page:p")] == [
        "none", "link", "next-url:a.b", "cursor:c:d", "page:p"]
    # body:PATH in place of a query PARAM (spec §16), and back to the same text.
    in_body = Pagination.parse("cursor:data.pageInfo.endCursor:body:variables.after")
    assert in_body.next(seen({"data": {"pageInfo": {"endCursor": 7}}})) == PageRequest(None, (("body:variables.after", 7),))
    assert in_body.text == "cursor:data.pageInfo.endCursor:body:variables.after"
    assert Pagination.parse("page:body:variables.page").first() == PageRequest(None, (("body:variables.page", 1),))


# -- through the CLI --------------------------------------------------------------------------


def test_add_and_edit_store_the_new_options_and_show_displays_them(cli, db_path):
    added = cli("add", "crm", "--url", "https://api.example.com/c", "--incremental", "updated_at:since",
                "--lookback", "5m", "--deletes", "mark", "--max-delete", "20", "--max-staleness", "2h",
                "--min-records", "1")
    assert added.returncode == 0, added.stderr
    config = json.loads(query(db_path, "SELECT config FROM integrations")[0]["config"])
    assert config["incremental"] == "updated_at:since" and config["lookback"] == 300
    assert config["deletes"] == "mark" and config["max_delete"] == 20
    assert config["max_staleness"] == 7200 and config["min_records"] == 1
    shown = cli("show", "crm")
    for text in ("updated_at:since (lookback 5m)", "mark (at most 20% at once)", "2h", "min records"):
        assert text in shown.stdout
    assert cli("edit", "crm", "--deletes", "", "--max-staleness", "").returncode == 0
    config = json.loads(query(db_path, "SELECT config FROM integrations")[0]["config"])
    assert config["deletes"] == "keep" and config["max_staleness"] is None and config["min_records"] == 1
    refused = cli("edit", "crm", "--min-records", "-3")
    assert refused.returncode == 2 and "--min-records" in refused.stderr
