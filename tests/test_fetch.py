"""The HTTP JSON connector, seen through ``syncctl sync``: pagination, record extraction,
keys and upserts, retries within a sync and Retry-After, redirects and secret headers,
and what ``sync NAME… | --all`` does to the schedule (spec §5, §6, §7)."""

from __future__ import annotations

import email.utils
import json
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers import add, query, stored
from tests.httpsources import HTTPSource, json_body, raw_body, send, send_json, sequence, text_body


def logs(db_path, name: str) -> list[dict]:
    return query(
        db_path,
        "SELECT l.* FROM sync_logs l JOIN integrations i ON i.id = l.integration_id"
        " WHERE i.name = ? ORDER BY l.id",
        (name,),
    )


def integration(db_path, name: str) -> dict:
    return query(db_path, "SELECT * FROM integrations WHERE name = ?", (name,))[0]


def synced(cli, *args: str, env: dict | None = None):
    """Run ``syncctl sync ARGS``, expecting success."""
    result = cli("sync", *args, env=env)
    assert result.returncode == 0, result.stderr
    return result


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- pagination ------------------------------------------------------------------------------


def test_link_pagination_follows_rel_next_relative_and_absolute(cli, store, source, db_path):
    def handler(h) -> None:
        page = h.query.get("page", "1")
        if page == "1":
            assert h.query.get("limit") == "2"  # the integration's params go on the first page
            return send_json(h, [{"id": 1}, {"id": 2}], headers={"Link": '</items?page=2>; rel="next"'})
        if page == "2":
            nxt = source.url("/items") + "?page=3"
            return send_json(h,
                [{"id": 3}, {"id": 4}], headers={"Link": f'<{nxt}>; rel="next", </items?page=1>; rel="first"'}
            )
        return send_json(h, [{"id": 5}], headers={"Link": '</items?page=1>; rel="first"'})

    source.add("/items", handler)
    add(store, "linked", source.url("/items"), "--paginate", "link", "--param", "limit=2")

    result = synced(cli, "linked")

    assert sorted(stored(db_path, "linked")) == ["1", "2", "3", "4", "5"]
    assert [q.get("page") for q in source.queries()] == [None, "2", "3"]
    assert "linked: 5 records" in result.stdout
    assert [(log["status"], log["records_count"]) for log in logs(db_path, "linked")] == [("SUCCESS", 5)]


def test_next_url_pagination_reads_the_next_url_from_the_body(cli, store, source, db_path):
    def handler(h) -> None:
        after = h.query.get("after")
        if after is None:
            return send_json(h, {"data": [{"id": "a"}], "meta": {"next": "/feed?after=a"}})
        if after == "a":
            absolute = source.url("/feed") + "?after=b"
            return send_json(h, {"data": [{"id": "b"}], "meta": {"next": absolute}})
        return send_json(h, {"data": [{"id": "c"}], "meta": {"next": None}})

    source.add("/feed", handler)
    add(store, "feed", source.url("/feed"), "--paginate", "next-url:meta.next")

    synced(cli, "feed")

    assert sorted(stored(db_path, "feed")) == ["a", "b", "c"]
    assert len(source.requests) == 3


def test_cursor_pagination_sends_the_cursor_back_with_the_params(cli, store, source, db_path):
    pages = {None: ("c1", [{"id": 1}]), "c1": ("c2", [{"id": 2}]), "c2": (None, [{"id": 3}])}

    def handler(h) -> None:
        cursor, items = pages[h.query.get("cursor")]
        return send_json(h, {"items": items, "paging": {"next_cursor": cursor}})

    source.add("/things", handler)
    add(store, "things", source.url("/things"), "--paginate", "cursor:paging.next_cursor:cursor",
        "--param", "limit=1")

    synced(cli, "things")

    assert sorted(stored(db_path, "things")) == ["1", "2", "3"]
    sent = [(q.get("cursor"), q.get("limit")) for q in source.queries()]
    assert sent == [(None, "1"), ("c1", "1"), ("c2", "1")]


def test_page_pagination_counts_from_1_until_an_empty_page(cli, store, source, db_path):
    def handler(h) -> None:
        page = int(h.query["p"])
        items = [{"id": f"{page}-{i}"} for i in range(2)] if page <= 3 else []
        return send_json(h, {"results": items})

    source.add("/rows", handler)
    add(store, "rows", source.url("/rows"), "--paginate", "page:p", "--param", "per_page=2")

    synced(cli, "rows")

    assert len(stored(db_path, "rows")) == 6
    assert [(q["p"], q.get("per_page")) for q in source.queries()] == [
        ("1", "2"), ("2", "2"), ("3", "2"), ("4", "2"),
    ]
    assert logs(db_path, "rows")[0]["records_count"] == 6


@pytest.mark.parametrize("mode", ["page:page", "link"])
def test_max_pages_bounds_an_endless_source(cli, store, source, db_path, mode):
    def handler(h) -> None:
        page = int(h.query.get("page", "1"))
        return send_json(h, [{"id": page}], headers={"Link": f'</endless?page={page + 1}>; rel="next"'})

    source.add("/endless", handler)
    add(store, "endless", source.url("/endless"), "--paginate", mode, "--max-pages", "3")

    synced(cli, "endless")

    assert len(source.requests) == 3
    assert sorted(stored(db_path, "endless")) == ["1", "2", "3"]


# -- record extraction and keys ------------------------------------------------------------


EXTRACTION_CASES = {
    # name: (body, add options, expected keys)
    "top-level-array": ([{"id": 1}, {"id": 2}], [], ["1", "2"]),
    "records-path": (
        {"data": {"items": [{"id": "x"}], "total": 1}, "results": [{"id": "wrong"}]},
        ["--records-path", "data.items"], ["x"],
    ),
    "data-first": ({"data": [{"id": "d"}], "items": [{"id": "i"}]}, [], ["d"]),
    "items-before-results": (
        {"records": [{"id": "r"}], "results": [{"id": "s"}], "items": [{"id": "i"}]}, [], ["i"],
    ),
    "first-that-is-an-array": (
        {"data": {"not": "a list"}, "items": "nope", "results": [{"id": "s1"}, {"id": "s2"}],
         "records": [{"id": "r"}]},
        [], ["s1", "s2"],
    ),
    "records-last": ({"data": None, "records": [{"id": "r1"}]}, [], ["r1"]),
    "object-as-one-record": ({"id": "only", "temp": 21.5}, [], ["only"]),
    "custom-key": ([{"sku": "A-1", "id": 9}, {"sku": "B-2", "id": 9}], ["--key", "sku"], ["A-1", "B-2"]),
    "dotted-key": ([{"meta": {"uid": "u1"}}, {"meta": {"uid": "u2"}}], ["--key", "meta.uid"], ["u1", "u2"]),
}


def test_records_are_extracted_and_keyed_by_the_rules(cli, store, source, db_path):
    for name, (body, options, _) in EXTRACTION_CASES.items():
        source.add(f"/{name}", json_body(body))
        add(store, name, source.url(f"/{name}"), *options)

    synced(cli, "--all")

    for name, (_, _, expected) in EXTRACTION_CASES.items():
        assert sorted(stored(db_path, name)) == sorted(expected), name


def test_the_object_itself_is_stored_as_the_record(cli, store, source, db_path):
    source.add("/status", json_body({"id": "site", "up": True, "load": [1, 2]}))
    add(store, "status", source.url("/status"))

    synced(cli, "status")

    assert stored(db_path, "status") == {"site": {"id": "site", "up": True, "load": [1, 2]}}


def test_records_without_the_key_are_keyed_by_a_stable_hash(cli, store, source, db_path):
    body = [{"city": "Oslo", "t": 3}, {"t": 7, "city": "Rome"}, {"city": "Lima", "t": 18, "id": None}]
    source.add("/obs", json_body(body))
    add(store, "obs", source.url("/obs"))
    synced(cli, "obs")
    first = stored(db_path, "obs")

    # The same records with their fields in another order: canonical JSON, same keys.
    source.add("/obs", json_body(
        [{"t": 3, "city": "Oslo"}, {"city": "Rome", "t": 7}, {"id": None, "t": 18, "city": "Lima"}]
    ))
    synced(cli, "obs")

    assert len(first) == 3
    assert stored(db_path, "obs") == first
    assert len(set(first)) == 3 and all(key not in ("", "None", "null") for key in first)


def test_records_sharing_their_key_in_a_page_warn_with_the_key_to_use(cli, store, source, db_path):
    body = [{"uuid": f"u{i}", "id": i % 2, "v": i} for i in range(6)] + [{"uuid": "u5", "id": 1, "v": 5}]
    source.add("/dupes", json_body(body))  # --key id is not unique; the last record repeats one exactly
    add(store, "dupes", source.url("/dupes"))

    result = cli("sync", "dupes")
    checked = cli("check", "dupes", "--json")

    assert result.returncode == 0, result.stderr
    assert sorted(stored(db_path, "dupes")) == ["0", "1"], "the last of each key is kept"
    hint = cli("history", "dupes", "--json").json()[0]["error_hint"] or ""
    assert "4 records had the same 'id' as another record of their page" in hint, hint
    assert "syncctl edit dupes --key FIELD" in hint, hint
    fixes = [p["fix"] for p in checked.json()["problems"]]
    assert "--key uuid" in fixes, f"check names a key that is unique: {fixes}"


def test_a_second_sync_adds_no_duplicates_and_updates_changed_records(cli, store, source, db_path):
    source.add("/users", json_body(
        {"data": [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Bob"}]}
    ))
    add(store, "users", source.url("/users"))
    synced(cli, "users")
    synced(cli, "users")
    assert stored(db_path, "users") == {"1": {"id": 1, "name": "Ada"}, "2": {"id": 2, "name": "Bob"}}

    source.add("/users", json_body(
        {"data": [{"id": 2, "name": "Bobby"}, {"id": 3, "name": "Cy"}]}
    ))
    synced(cli, "users")

    assert stored(db_path, "users") == {
        "1": {"id": 1, "name": "Ada"},  # upserts never delete
        "2": {"id": 2, "name": "Bobby"},
        "3": {"id": 3, "name": "Cy"},
    }
    assert query(db_path, "SELECT COUNT(*) AS n FROM records")[0]["n"] == 3
    assert [log["records_count"] for log in logs(db_path, "users")] == [2, 2, 2]
    assert cli("list", "--json").json()[0]["records_count"] == 3


def test_params_and_headers_are_sent_with_variables_expanded(cli, store, source, db_path):
    source.add("/api", json_body([{"id": 1}]))
    add(store, "api", source.url("/api"), "--param", "region=eu", "--param", "key=${API_KEY}",
        "--param", "tag=a", "--param", "tag=b",
        "--header", "X-Api-Key: ${API_KEY}", "--header", "Accept: application/json")

    synced(cli, "api", env={"API_KEY": "k-123"})

    _, target, headers = source.requests[0]
    assert parse_qs(urlsplit(target).query) == {"region": ["eu"], "key": ["k-123"], "tag": ["a", "b"]}
    assert (headers["X-Api-Key"], headers["Accept"]) == ("k-123", "application/json")
    assert len(stored(db_path, "api")) == 1
    config = integration(db_path, "api")["config"]
    assert "${API_KEY}" in config and "k-123" not in config


# -- retries within one sync -----------------------------------------------------------------


def test_two_503s_then_success_is_one_success_log(cli, store, source, db_path):
    busy = text_body("busy", 503)
    handler = sequence(busy, busy, json_body([{"id": 1}, {"id": 2}]))
    source.add("/flaky", handler)
    add(store, "flaky", source.url("/flaky"))

    synced(cli, "flaky")

    assert len(handler.arrived) == 3
    rows = logs(db_path, "flaky")
    assert [(r["status"], r["records_count"], r["attempt"], r["error_message"]) for r in rows] == [
        ("SUCCESS", 2, 1, None)
    ]


@pytest.mark.parametrize("status", [404, 500, 400])
def test_errors_that_are_not_transient_are_requested_once(cli, store, source, db_path, status):
    handler = sequence(text_body("nope", status), json_body([{"id": 1}]))
    source.add("/once", handler)
    add(store, "once", source.url("/once"))

    result = cli("sync", "once")

    assert result.returncode == 1
    assert len(handler.arrived) == 1
    assert [r["status"] for r in logs(db_path, "once")] == ["FAILED"]
    assert f"HTTP {status}" in result.stderr


def test_retry_after_in_seconds_is_honoured(cli, store, source, db_path):
    handler = sequence(text_body("later", 503, headers={"Retry-After": "2"}), json_body([{"id": 1}]))
    source.add("/ra", handler)
    add(store, "ra", source.url("/ra"))

    synced(cli, "ra")

    # A lower bound only (a wait is never shorter than asked); normal backoff would wait < 1 s.
    assert handler.arrived[1] - handler.arrived[0] >= 1.9
    assert [r["status"] for r in logs(db_path, "ra")] == ["SUCCESS"]


def test_retry_after_as_an_http_date_is_honoured(cli, store, source, db_path):
    def handler(h) -> None:
        handler.arrived.append(time.monotonic())
        if len(handler.arrived) == 1:
            when = email.utils.formatdate(time.time() + 3, usegmt=True)  # whole seconds: 2-3 s away
            return text_body("later", 429, headers={"Retry-After": when})(h)
        return send_json(h, [{"id": 1}])

    handler.arrived = []
    source.add("/date", handler)
    add(store, "date", source.url("/date"))

    synced(cli, "date")

    assert handler.arrived[1] - handler.arrived[0] >= 1.5  # a lower bound only
    assert [r["status"] for r in logs(db_path, "date")] == ["SUCCESS"]


def test_retry_after_zero_negative_or_garbage_falls_back_to_backoff(cli, store, source, db_path):
    handler = sequence(
        text_body("a", 503, headers={"Retry-After": "0"}),
        text_body("b", 429, headers={"Retry-After": "soon-ish, maybe"}),
        json_body([{"id": 1}]),
    )
    source.add("/odd", handler)
    add(store, "odd", source.url("/odd"))

    synced(cli, "odd")

    assert len(handler.arrived) == 3
    assert [r["status"] for r in logs(db_path, "odd")] == ["SUCCESS"]

    handler = sequence(text_body("c", 502, headers={"Retry-After": "-30"}), json_body([{"id": 2}]))
    source.add("/odd", handler)
    synced(cli, "odd")
    assert len(handler.arrived) == 2


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_beyond_the_budget_ends_the_sync_and_delays_the_next(cli, store, source,
                                                                         db_path, form):
    wait = 7200

    def handler(h) -> None:
        value = str(wait) if form == "seconds" else email.utils.formatdate(time.time() + wait + 1, usegmt=True)
        text_body("slow down", 429, headers={"Retry-After": value})(h)

    source.add("/limited", handler)
    add(store, "limited", source.url("/limited"), "--interval", "1d")
    before = datetime.now(timezone.utc)

    run = cli("run-due")

    assert run.returncode == 1
    assert len(source.requests) == 1  # no retry inside the sync: the wait is past 60 s
    assert "429" in run.stderr and "hint:" in run.stderr
    listed = cli("list", "--json").json()[0]
    assert listed["last_status"] == "FAILED" and listed["consecutive_failures"] == 1
    assert ts(listed["next_sync_at"]) >= before + timedelta(seconds=wait)
    assert ts(listed["next_sync_at"]) <= before + timedelta(days=1, seconds=wait)


# -- redirects and secret headers ------------------------------------------------------------


def redirect_to(location: str):
    def behave(handler) -> None:
        send(handler, 302, b"", "text/plain", {"Location": location})

    return behave


def header(seen: tuple, name: str) -> str | None:
    """A header of one request an HTTPSource received (names are case-insensitive)."""
    return {k.lower(): v for k, v in seen[2].items()}.get(name.lower())


def test_same_origin_redirect_keeps_secret_headers(cli, store, db_path):
    with HTTPSource() as source:
        source.add("/start", redirect_to("/end"))
        source.add("/end", json_body([{"id": 1}]))
        add(store, "same", source.url("/start"), "--header", "Authorization: Bearer ${TOKEN}")
        synced(cli, "same", env={"TOKEN": "tok-same-origin"})

    assert [seen[0] for seen in source.requests] == ["/start", "/end"]
    assert [header(seen, "Authorization") for seen in source.requests] == ["Bearer tok-same-origin"] * 2


def test_redirect_to_another_host_name_drops_secret_headers(cli, store, db_path):
    with HTTPSource() as source:
        # The same server reached as 127.0.0.1, then as localhost: another host.
        source.add("/start", redirect_to(f"http://localhost:{source.port}/end"))
        source.add("/end", json_body([{"id": 1}]))
        add(store, "hop", source.url("/start"), "--header", "Authorization: Bearer ${TOKEN}",
            "--header", "X-Trace: t-${TRACE}", "--header", "Accept: application/json")
        synced(cli, "hop", env={"TOKEN": "tok-host-hop", "TRACE": "trace-1"})

    start, end = source.requests
    assert (start[0], end[0]) == ("/start", "/end")
    assert header(start, "Authorization") == "Bearer tok-host-hop" and header(start, "X-Trace") == "t-trace-1"
    assert header(end, "Authorization") is None and header(end, "X-Trace") is None
    assert header(end, "Accept") == "application/json"  # headers without ${VAR} still go
    assert stored(db_path, "hop") == {"1": {"id": 1}}


def test_redirect_to_another_port_drops_secret_headers(cli, store, db_path):
    with HTTPSource() as other, HTTPSource() as first:
        other.add("/end", json_body([{"id": 1}]))
        first.add("/start", redirect_to(other.url("/end")))
        add(store, "port", first.url("/start"), "--header", "Authorization: Bearer ${TOKEN}")
        synced(cli, "port", env={"TOKEN": "tok-port-hop"})

    assert header(first.requests[0], "Authorization") == "Bearer tok-port-hop"
    assert [seen[0] for seen in other.requests] == ["/end"]
    assert header(other.requests[0], "Authorization") is None


def test_a_redirect_back_to_the_origin_sends_secret_headers_again(cli, store, db_path):
    with HTTPSource() as source:
        source.add("/start", redirect_to(f"http://localhost:{source.port}/away"))
        source.add("/away", redirect_to(source.url("/end")))
        source.add("/end", json_body([{"id": 1}]))
        add(store, "back", source.url("/start"), "--header", "Authorization: Bearer ${TOKEN}")
        synced(cli, "back", env={"TOKEN": "tok-back"})

    assert [(seen[0], header(seen, "Authorization")) for seen in source.requests] == [
        ("/start", "Bearer tok-back"), ("/away", None), ("/end", "Bearer tok-back"),
    ]


@pytest.mark.parametrize("how", ["307", "next-url"])
def test_a_body_holding_a_secret_never_goes_to_another_origin(cli, store, db_path, how):
    with HTTPSource() as other, HTTPSource() as first:
        other.add("/end", json_body({"items": [{"id": 2}], "next": None}))
        if how == "307":
            first.add("/start", lambda h: send(h, 307, b"", "text/plain", {"Location": other.url("/end")}))
        else:
            first.add("/start", json_body({"items": [{"id": 1}], "next": other.url("/end")}))
        paging = ["--paginate", "next-url:next"] if how == "next-url" else []
        assert cli("add", "posted", "--url", first.url("/start"), "--body", '{"token": "${API_TOKEN}", "q": "all"}',
                   "--records-path", "items", *paging).returncode == 0

        result = cli("sync", "posted", env={"API_TOKEN": "Sup3rSecretValue42"})

    assert result.returncode == 1, result.stderr
    assert f"another origin than http://127.0.0.1:{first.port}" in result.stderr and "syncctl edit posted --url" in result.stderr
    assert first.bodies and json.loads(first.bodies[0][2])["token"] == "Sup3rSecretValue42"
    assert other.requests == [] and other.bodies == [], "nothing reached the other origin"
    assert "Sup3rSecret" not in result.stderr + result.stdout


# -- failures never harm stored records ------------------------------------------------------


def test_a_failed_sync_leaves_earlier_records_intact(cli, store, source, db_path):
    records = [{"id": i, "v": f"value-{i}"} for i in range(5)]
    source.add("/keep", json_body(records))
    add(store, "keep", source.url("/keep"))
    synced(cli, "keep")
    before = stored(db_path, "keep")

    for response in (text_body("boom", 500), raw_body(b"<html>login</html>", content_type="text/html"),
                     raw_body(b'[{"id": 1, "v": "cut', content_type="application/json")):
        source.add("/keep", response)
        assert cli("sync", "keep").returncode == 1

    assert stored(db_path, "keep") == before
    assert [r["status"] for r in logs(db_path, "keep")] == ["SUCCESS", "FAILED", "FAILED", "FAILED"]
    assert cli("list", "--json").json()[0]["records_count"] == 5
    assert query(db_path, "PRAGMA integrity_check")[0]["integrity_check"] == "ok"


def test_a_failure_on_a_later_page_keeps_earlier_records(cli, store, source, db_path):
    def pages(*behaviours):
        return lambda h: behaviours[int(h.query["n"]) - 1](h)

    source.add("/pages", pages(json_body([{"id": "old"}]), json_body([])))
    add(store, "pages", source.url("/pages"), "--paginate", "page:n")
    synced(cli, "pages")

    source.add("/pages", pages(json_body([{"id": "new"}]), text_body("no", status=404)))
    result = cli("sync", "pages")

    assert result.returncode == 1
    assert "old" in stored(db_path, "pages")
    row = logs(db_path, "pages")[-1]
    assert row["status"] == "FAILED" and "404" in row["error_message"]


# -- sync NAME… | --all (spec §5, §6) --------------------------------------------------------


def test_sync_runs_paused_and_manual_only_integrations_without_moving_the_schedule(
    cli, store, source, db_path
):
    source.add("/a", json_body([{"id": 1}]))
    add(store, "hourly", source.url("/a"), "--interval", "1h")
    add(store, "paused", source.url("/a"), "--interval", "15m")
    add(store, "byhand", source.url("/a"), "--interval", "manual")
    assert cli("pause", "paused").returncode == 0
    before = {i["name"]: i for i in cli("list", "--json").json()}

    result = synced(cli, "--all")

    after = {i["name"]: i for i in cli("list", "--json").json()}
    for name in ("hourly", "paused", "byhand"):
        assert f"{name}: 1 record " in result.stdout
        assert after[name]["next_sync_at"] == before[name]["next_sync_at"]
        assert after[name]["state"] == before[name]["state"]
        assert after[name]["last_status"] == "SUCCESS" and after[name]["records_count"] == 1
    assert after["byhand"]["next_sync_at"] is None
    assert after["paused"]["state"] == "paused"
    rows = query(db_path, "SELECT trigger, status, attempt FROM sync_logs")
    assert rows == [{"trigger": "manual", "status": "SUCCESS", "attempt": 1}] * 3


def test_sync_exits_1_if_any_failed_and_still_syncs_the_others(cli, store, source, db_path):
    source.add("/good", json_body([{"id": 1}]))
    source.add("/bad", text_body("missing", status=404))
    add(store, "good", source.url("/good"))
    add(store, "bad", source.url("/bad"))

    result = cli("sync", "bad", "good")

    assert result.returncode == 1
    assert "good: 1 record " in result.stdout
    assert "bad" in result.stderr and "404" in result.stderr and "hint:" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert stored(db_path, "good") == {"1": {"id": 1}}


def test_manual_sync_failure_does_not_count_and_success_clears_the_streak(cli, store, source,
                                                                          db_path):
    source.add("/s", text_body("boom", status=500))
    add(store, "streak", source.url("/s"), "--interval", "1h")
    assert cli("run-due").returncode == 1  # a scheduled failure: the streak is 1
    scheduled = cli("list", "--json").json()[0]
    assert scheduled["consecutive_failures"] == 1

    failed = cli("sync", "streak")
    after_fail = cli("list", "--json").json()[0]

    assert failed.returncode == 1
    assert after_fail["consecutive_failures"] == 1
    assert after_fail["next_sync_at"] == scheduled["next_sync_at"]
    assert after_fail["last_status"] == "FAILED"

    source.add("/s", json_body([{"id": 1}]))
    synced(cli, "streak")
    after_ok = cli("list", "--json").json()[0]

    assert after_ok["consecutive_failures"] == 0
    assert after_ok["last_status"] == "SUCCESS"
    assert after_ok["next_sync_at"] == scheduled["next_sync_at"]
    assert after_ok["state"] == "active"
    triggers = [(r["trigger"], r["status"]) for r in logs(db_path, "streak")]
    assert triggers == [("schedule", "FAILED"), ("manual", "FAILED"), ("manual", "SUCCESS")]


def test_manual_sync_does_not_resume_a_disabled_integration(cli, store, source, db_path):
    source.add("/d", json_body([{"id": 1}]))
    add(store, "dis", source.url("/d"), "--interval", "1h")
    store.conn.execute("UPDATE integrations SET sync_enabled = 0, disabled_reason = 'failures',"
                       " consecutive_failures = 4")

    synced(cli, "dis")

    listed = cli("list", "--json").json()[0]
    assert listed["state"] == "disabled" and listed["sync_enabled"] is False
    assert listed["consecutive_failures"] == 0


@pytest.mark.parametrize(
    "args", [("sync",), ("sync", "one", "--all"), ("sync", "onf")],
    ids=["nothing", "names-and-all", "unknown-name"],
)
def test_sync_refuses_bad_input_with_exit_2(cli, store, source, args):
    add(store, "one", source.url("/x"))

    result = cli(*args)

    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""
    if args[-1] == "onf":
        assert "'one'" in result.stderr
