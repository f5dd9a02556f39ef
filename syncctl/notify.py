"""Notifications through Apprise URLs (spec section 10).

Each target is told once per change of state of each subject (an integration, or run-due
itself): ``failing`` (after ``after`` consecutive failures), ``disabled``, ``stale``
(again at most once a day while it stays stale), ``recovered`` (the first success after
one of those was sent to that target) and ``stuck``. What each target was told lives in
the database, so "once" holds across processes and ticks; a message that cannot be
delivered is kept and retried on later ticks for up to an hour.

Apprise is imported only when a message is actually sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from syncctl import health, liveness
from syncctl.config import check_text
from syncctl.errors import SyncError, UsageError
from syncctl.health import Kind
from syncctl.models import Integration
from syncctl.runlock import Holder
from syncctl.secrets import Secrets, check_references, holds_reference
from syncctl.store import Store

EVENTS = ("failing", "disabled", "recovered", "stale", "stuck", "schema")  # schema: a data table changed (§15)
# What a target hears without --events: whatever leaves data stale. A schema change is
# news for dashboard authors, not an alarm: asked for by name (or with "all").
DEFAULT_EVENTS = ("failing", "disabled", "recovered", "stale", "stuck")
RETRY_FOR = timedelta(hours=1)  # a message not delivered by then is dropped
STALE_REPEAT = timedelta(days=1)
LEASE = timedelta(minutes=2)  # a claim by a process that died is taken over after this
RUN_DUE = "run-due"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_EPISODE = ("failing", "disabled", "stale")  # states a 'recovered' can end


# -- what an admin types -------------------------------------------------------------------


def parse_events(text: str | None) -> list[str]:
    """``failing,disabled`` -> the events, in EVENTS order; None -> DEFAULT_EVENTS; 'all'
    -> every event."""
    if text is None:
        return list(DEFAULT_EVENTS)
    if text.strip().lower() == "all":
        return list(EVENTS)
    names = {e.strip().lower() for e in text.split(",") if e.strip()}
    unknown = sorted(names - set(EVENTS))
    if unknown or not names:
        raise UsageError(
            f"invalid --events {text!r}" + (f": unknown {', '.join(unknown)}" if unknown else ""),
            f"use a comma-separated list of {', '.join(EVENTS)} (or all)",
        )
    return [e for e in EVENTS if e in names]


def validate_target(url: str, after: int) -> str:
    """An Apprise URL whose scheme Apprise knows; ``${VAR}`` references well formed."""
    hint = "use an Apprise URL, e.g. 'slack://${SLACK_TOKEN}' or 'json://hooks.example.com/syncctl'"
    check_text(url, "the notification URL")
    if not _SCHEME.match(url) or any(c.isspace() for c in url):
        raise UsageError(f"invalid notification URL {url!r}", hint)
    check_references(url, "notification URL")
    userinfo = re.split(r"[/?#]", url.split("://", 1)[-1], maxsplit=1)[0].rpartition("@")[0]
    user, colon, password = userinfo.partition(":")
    if colon and password and not holds_reference(password):  # as add refuses one in --url
        scheme = url.split("://", 1)[0]
        raise UsageError(
            "the notification URL holds a password; syncctl stores secrets only as ${VAR} references",
            f"write it as {scheme}://{user or 'user'}:${{NOTIFY_PASSWORD}}@… and export NOTIFY_PASSWORD where syncctl runs",
        )
    from apprise import NotificationManager

    scheme = url.split("://", 1)[0].lower()
    if scheme not in NotificationManager().schemas():
        raise UsageError(f"invalid notification URL {url!r}: Apprise knows no {scheme}:// service", hint)
    if not 1 <= after <= 1000:
        raise UsageError(f"invalid --after {after}", "use a number of consecutive failures from 1 up")
    return url


# -- deciding what to tell whom (pure) -------------------------------------------------------


@dataclass(frozen=True)
class Message:
    event: str
    title: str
    body: str


def _subject(integration: Integration) -> str:
    return f"integration:{integration.id}"


def integration_state(integration: Integration, now: datetime, after: int) -> str | None:
    """What a target with ``--after after`` should know of an integration: failing,
    disabled, stale or ok; None when nothing changed that matters (paused, a failure
    streak shorter than ``after``, resumed but not synced yet)."""
    problem = health.integration_problem(integration, now)
    if problem is None:
        if integration.state != "paused" and integration.last_status == "SUCCESS":
            return "ok"
        return None
    if problem.kind is Kind.FAILING:
        return "failing" if integration.consecutive_failures >= after else None
    if problem.kind in (Kind.DISABLED, Kind.STALE):
        return problem.kind.value
    return None  # paused: the admin's decision, not an event


def _message(event: str, integration: Integration | None, problem: health.Problem | None, now: datetime) -> Message:
    if event == "recovered" and integration is not None:
        return Message(
            event,
            f"syncctl: {integration.name} recovered",
            f"{integration.name} synced successfully again ({integration.records_count} records stored).",
        )
    if event == "stuck" and problem is not None:
        return Message(event, "syncctl: run-due is stuck", f"{problem.message}\nHint: {problem.hint}")
    assert integration is not None  # noqa: S101 - every other event is an integration's
    problem = problem or health.integration_problem(integration, now)
    text = problem.message if problem else event
    hint = problem.hint if problem else ""
    if event == "disabled":
        return Message(
            event,
            f"syncctl: {integration.name} is disabled",
            f"{integration.name} is {text}\nHint: {hint}\nTurn it back on with: syncctl resume {integration.name}",
        )
    return Message(event, f"syncctl: {integration.name} is {event}", f"{integration.name} is {text}\nHint: {hint}")


def decide(
    targets: Mapping[int, dict[str, Any]],
    states: Mapping[tuple[int, str], dict[str, Any]],
    integrations: list[Integration],
    stuck: health.Problem | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """The changes to each target's notify_state, and the messages they carry (see
    Store.announce). Pure: the same stored state and clock give the same changes."""
    changes: list[dict[str, Any]] = []
    current = {_subject(i) for i in integrations}
    for target_id, target in targets.items():
        events = set(target["events"])
        for integration in integrations:
            key = (target_id, _subject(integration))
            changes += _transition(
                key, states.get(key), integration_state(integration, now, target["after"]), events, now,
                lambda event, i=integration: _message(event, i, None, now),
            )
        key = (target_id, RUN_DUE)
        changes += _transition(
            key, states.get(key), "stuck" if stuck else "ok", events, now,
            lambda event: _message(event, None, stuck, now),
        )
        for (tid, subject) in states:  # integrations removed since
            if tid == target_id and subject != RUN_DUE and subject not in current:
                changes.append(_change((tid, subject), None, False, False, None))
    return changes


def _change(key: tuple[int, str], state: str | None, announced: bool, notified: bool,
            message: Message | None) -> dict[str, Any]:
    return {
        "target_id": key[0], "subject": key[1], "state": state, "announced": announced,
        "notified": notified, "message": (message.event, message.title, message.body) if message else None,
    }


def _transition(key, old, state, events, now, make):  # noqa: ANN001, ANN202
    """One subject for one target: at most one change."""
    if state is None:
        return []
    if state == "ok":
        if old is None:
            return []
        recovered = old["state"] in _EPISODE and old["announced"] and "recovered" in events
        return [_change(key, None, False, recovered, make("recovered") if recovered else None)]
    if old is None or old["state"] != state:
        send = state in events
        announced = send or bool(old and old["announced"] and old["state"] in _EPISODE)
        return [_change(key, state, announced, send, make(state) if send else None)]
    if state == "stale" and "stale" in events and old["notified_at"]:
        from syncctl.timeutil import parse_ts

        if now - parse_ts(old["notified_at"]) >= STALE_REPEAT:  # still stale: once a day
            return [_change(key, state, True, True, make("stale"))]
    return []


# -- sending ---------------------------------------------------------------------------------


REACH_HINT = "check the URL and that the service is reachable from this host"


def send(url_template: str, title: str, body: str, env: Mapping[str, str]) -> str | None:
    """Deliver one message through Apprise. Returns None, or why it failed (redacted:
    never a ``${VAR}`` value or any fragment of it)."""
    failure = _send(url_template, title, body, env)
    return failure[0] if failure else None


def _send(url_template: str, title: str, body: str, env: Mapping[str, str]) -> tuple[str, str] | None:
    """:func:`send`, with the hint that fixes a failure: a ``${VAR}`` not set says to
    export it, anything else to check the URL and the service."""
    secrets = Secrets(env)
    secrets.learn(url_template)
    try:
        url = secrets.expand_url(url_template)
    except SyncError as exc:
        hint = (exc.hint or REACH_HINT).replace("; no request was sent", "")
        return secrets.redact(exc.message), secrets.redact(hint)
    failure = _deliver(url, url_template, title, body, secrets)
    return (failure, REACH_HINT) if failure else None


def _deliver(url: str, url_template: str, title: str, body: str, secrets: Secrets) -> str | None:
    import apprise

    sender = apprise.Apprise()
    with apprise.LogCapture(level=apprise.logging.WARNING, fmt="%(message)s") as log:
        if not sender.add(url):
            return secrets.redact(f"Apprise cannot use the URL {url_template}")
        delivered = bool(sender.notify(title=title, body=body))
        text = log.getvalue()
    if delivered:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return secrets.redact("; ".join(lines[-3:]) or "Apprise could not deliver the notification")


def _footer(store: Store) -> str:
    return f"\n\n(syncctl on {liveness.hostname()}, database {store.label})"


def notify_tick(
    store: Store,
    now: datetime,
    *,
    holder: Holder | None,
    sync_timeout: float,
    env: Mapping[str, str],
) -> None:
    """run-due's part, on every tick (lock-busy ones too): queue what changed, then
    deliver what is queued. Nothing here fails the tick: a delivery error is kept on its
    target (``notify list``) and the message retried on later ticks for an hour."""
    if not store.has_notify_targets():
        return
    integrations = store.list_integrations()
    stuck = health.stuck_problem(now, holder, sync_timeout)
    footer = _footer(store)

    def changes(targets, states):  # noqa: ANN001, ANN202
        found = decide(targets, states, integrations, stuck, now)
        for change in found:
            if change["message"]:
                event, title, body = change["message"]
                change["message"] = (event, title, body + footer)
        return found

    store.announce(changes, now)
    deliver_queued(store, now, env)


def deliver_queued(store: Store, now: datetime, env: Mapping[str, str]) -> None:
    """Send every queued message this process could claim; one attempt per target per
    tick (a target that is down is not hammered with its backlog)."""
    failed: dict[int, str] = {}
    for message in store.claim_notifications(now, expire_before=now - RETRY_FOR, lease_before=now - LEASE):
        target = message["target_id"]
        error = failed.get(target) or send(message["url"], message["title"], message["body"], env)
        if error is None:
            store.notification_delivered(message["id"], target, now)
        else:
            failed[target] = error
            store.notification_failed(message["id"], target, error)


def send_test(store: Store, target: dict[str, Any], now: datetime, env: Mapping[str, str]) -> tuple[str, str] | None:
    """``notify test``: one test message to ``target``, recorded like any delivery; None,
    or why it failed and the hint."""
    failure = _send(
        target["url"],
        "syncctl: test notification",
        "If you can read this, syncctl's notifications reach you." + _footer(store),
        env,
    )
    if failure is None:
        store.notification_delivered(None, target["id"], now)
    else:
        store.notification_failed(None, target["id"], failure[0])
    return failure
