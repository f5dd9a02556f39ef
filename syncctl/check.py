"""``syncctl check``: a dry run that fetches the first page (and the second, when
paginated), writes nothing, and says what a sync would find and which option fixes each
problem. Returns data; the CLI renders it."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from syncctl.config import IntegrationConfig
from syncctl.errors import SyncError
from syncctl.records import has_key, hashed_warning, lookup, whole_body_warning

CHECK_TIMEOUT = 120.0  # seconds for the whole dry run
_NEXT_URL_FIELDS = ("next_url", "next", "nextUrl", "next_page_url", "links.next", "paging.next", "meta.next")
_CURSOR_FIELDS = ("next_cursor", "nextCursor", "cursor", "meta.next_cursor", "pagination.next_cursor",
                  "response_metadata.next_cursor")  # fmt: skip
_KEY_CANDIDATES = ("id", "pk", "_id", "uuid", "key", "rowid", "slug", "name")


@dataclass
class Problem:
    message: str
    option: str | None = None  # the add/edit option that fixes it, e.g. "--records-path rows"


@dataclass
class CheckReport:
    """What a sync of this URL and config would find."""

    url: str
    status: int | None = None
    content_type: str | None = None
    pages_fetched: int = 0
    records_at: str | None = None  # "" the body, a path, or None: the whole object
    records: int = 0
    other_arrays: list[tuple[str, int]] = field(default_factory=list)
    key: str = "id"
    records_with_key: int = 0
    pagination: str = "none"
    auth: str | None = None  # how the request proved who sent it (never a token)
    detected_pagination: str | None = None
    sample: Any = None
    error: tuple[str, str | None] | None = None
    problems: list[Problem] = field(default_factory=list)
    source_errors: list[str] = field(default_factory=list)  # a GraphQL-style "errors" beside records
    first_records: list[Any] = field(default_factory=list, repr=False)  # for the key suggestion

    @property
    def ok(self) -> bool:
        return self.error is None and not self.problems


def run_check(
    url: str, config: IntegrationConfig, env: Mapping[str, str] | None = None, tokens: Any = None
) -> CheckReport:
    """Fetch page 1 (and 2) as a sync would, store nothing, and report."""
    from syncctl.fetch import Cancel, Connector, new_session
    from syncctl.models import dumps
    from syncctl.secrets import Secrets

    secrets = Secrets(dict(os.environ) if env is None else env)
    secrets.learn(url, dumps(config.to_json()))
    report = CheckReport(url=secrets.redact(url), key=config.key, pagination=config.pagination.text)
    session = new_session()
    try:
        connector = Connector(
            url, config, session=session, secrets=secrets, deadline=time.monotonic() + CHECK_TIMEOUT,
            cancel=Cancel(), keep_bodies=True, tokens=tokens,
        )
        report.auth = connector.auth.describe() if connector.auth is not None else None
        for page in connector.pages():
            report.pages_fetched += 1
            if page.number == 1:
                _first_page(report, page, config, secrets)
            if page.number >= 2 or not config.pagination.paginated:
                break
        report.source_errors = [secrets.redact(e) for e in connector.graphql_errors[:3]]
    except SyncError as exc:
        report.error = (secrets.redact(exc.message), secrets.redact(exc.hint) if exc.hint else None)
        if report.error[1] and "{name}" in report.error[1]:
            report.error = (report.error[0], report.error[1].replace("syncctl edit {name}", "syncctl edit NAME")
                            .replace("{name}", "NAME"))
    except Exception as exc:  # noqa: BLE001 - a dry run reports whatever happened
        from syncctl.fetch import Cancelled

        message = "timed out" if isinstance(exc, Cancelled) else f"internal error: {type(exc).__name__}: {exc}"
        report.error = (secrets.redact(message), None)
    finally:
        session.close()
    _judge(report, config)
    return report


def _first_page(report: CheckReport, page: Any, config: IntegrationConfig, secrets: Any) -> None:
    from syncctl.records import arrays_of_objects, records_at

    body = page.body
    records, report.records_at = records_at(body, config.records_path)
    report.status, report.content_type = page.status, page.content_type
    report.records = len(records)
    report.records_with_key = sum(1 for r in records if has_key(r, config.key))
    if records:
        report.sample = secrets.scrub(records[0])
    report.other_arrays = [(p, n) for p, n in arrays_of_objects(body) if p != report.records_at]
    report.detected_pagination = _detect_pagination(body, page.link_next)
    report.first_records = records


def _detect_pagination(body: Any, link_next: bool) -> str | None:
    """The --paginate a first page suggests: a Link header, a next-URL or cursor field."""
    if link_next:
        return "link"
    if not isinstance(body, dict):
        return None
    for path in _NEXT_URL_FIELDS:
        value = lookup(body, path)
        if isinstance(value, str) and (value.startswith(("http://", "https://", "/", "?"))):
            return f"next-url:{path}"
    for path in _CURSOR_FIELDS:
        value = lookup(body, path)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
            return f"cursor:{path}:cursor"
    return None


def _judge(report: CheckReport, config: IntegrationConfig) -> None:
    """The problems a sync would fail on or warn about, each with its fix."""
    if report.error is not None:
        return
    if report.records_at is None and report.other_arrays:
        report.problems.append(Problem(*whole_body_warning(*report.other_arrays[0])))
    elif report.records and report.records_with_key < report.records:
        records = report.first_records
        candidates = [k for k in _KEY_CANDIDATES if records and all(has_key(r, k) for r in records)]
        missing = report.records - report.records_with_key
        report.problems.append(Problem(*hashed_warning(
            missing, config.key, of=report.records, candidate=candidates[0] if candidates else None
        )))
    if report.first_records:
        _judge_keys(report, config.key)
    if report.source_errors:  # a sync succeeds with them as its warning (spec §16)
        report.problems.append(Problem(f"the source answered with records and errors: {'; '.join(report.source_errors)}"))
    detected = report.detected_pagination
    if detected and not config.pagination.paginated:
        report.problems.append(Problem(f"the response points at a next page ({detected})", f"--paginate {detected}"))


def _judge_keys(report: CheckReport, key: str) -> None:
    """Records of the first page sharing their key: a sync keeps only the last of each."""
    from syncctl.models import dumps
    from syncctl.records import record_key, shared_key_warning, shared_keys

    records = report.first_records
    texts = [dumps(r) for r in records]
    shared = shared_keys([(record_key(r, key), text) for r, text in zip(records, texts, strict=True)])
    if shared:
        distinct = len(set(texts))  # a key that tells apart every record that differs
        unique = [k for k in _KEY_CANDIDATES if k != key and all(has_key(r, k) for r in records)
                  and len({record_key(r, k) for r in records}) == distinct]  # fmt: skip
        report.problems.append(Problem(*shared_key_warning(shared, key, unique[0] if unique else None)))


def report_json(report: CheckReport) -> dict[str, Any]:
    """``check --json``."""
    return {
        "ok": report.ok,
        "url": report.url,
        "status": report.status,
        "content_type": report.content_type,
        "pages_fetched": report.pages_fetched,
        "records_path": report.records_at,
        "records": report.records,
        "other_arrays": [{"path": p, "count": n} for p, n in report.other_arrays],
        "key": report.key,
        "records_with_key": report.records_with_key,
        "pagination": report.pagination,
        "auth": report.auth,
        "detected_pagination": report.detected_pagination,
        "sample": report.sample,
        "error": {"message": report.error[0], "hint": report.error[1]} if report.error else None,
        "problems": [{"message": p.message, "fix": p.option} for p in report.problems],
    }
