"""Spec §18's OAuth2 row: a sync whose access token is held (from an earlier run, in the
database, encrypted) makes no token request; the token request adds one round trip to
the first sync only. Whole processes against bench/source.py's token endpoint and its
protected resource, beside a sync of the same records without auth."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

FIRST, HELD, PLAIN = "sync oauth2 (first: token request)", "sync oauth2 (token held)", "sync, no auth"


def token_count(base_url: str) -> int:
    with urllib.request.urlopen(f"{base_url}/token-count", timeout=10) as response:  # noqa: S310 - 127.0.0.1
        return json.load(response)["issued"]


def bench_oauth(run: Callable[..., Any], check: Callable[..., Any], samples: Any, syncctl: list[str],
                env: dict[str, str], base_url: str, work: Path, reps: int, scratch: Path) -> tuple[Any, dict]:
    """Interleaved: a first OAuth2 sync (fresh database), a sync with the token held, and
    the same records without auth. Returns the samples and the token requests counted."""
    env = {**env, "SYNCCTL_SECRET_KEY": "bench-" + "k" * 40, "BENCH_CLIENT_SECRET": "bench-secret"}
    template, db = work / "oauth.template.db", work / "oauth.db"
    for path in (template, db):
        shutil.rmtree(path.parent / (path.name + "-d"), ignore_errors=True)
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()
    add = [*syncctl, "--db", str(template), "add"]
    check("add", run([*add, "oauth", "--url", f"{base_url}/protected", "--interval", "manual", "--auth", "oauth2",
                      "--token-url", f"{base_url}/token", "--client-id", "bench",
                      "--client-secret", "${BENCH_CLIENT_SECRET}"], env, scratch))  # fmt: skip
    check("add", run([*add, "plain", "--url", f"{base_url}/plain", "--interval", "manual"], env, scratch))
    counted = {FIRST: [], HELD: []}

    def fresh() -> Any:
        for leftover in db.parent.glob(db.name + "*"):
            leftover.unlink()
        shutil.copyfile(template, db)
        before = token_count(base_url)
        result = check(FIRST, run([*syncctl, "--db", str(db), "sync", "oauth"], env, scratch))
        counted[FIRST].append(token_count(base_url) - before)
        return result

    def held() -> Any:
        before = token_count(base_url)
        result = check(HELD, run([*syncctl, "--db", str(db), "sync", "oauth"], env, scratch))
        counted[HELD].append(token_count(base_url) - before)
        return result

    def plain() -> Any:
        return check(PLAIN, run([*syncctl, "--db", str(db), "sync", "plain"], env, scratch))

    fresh(), held(), plain()  # warm-up
    counted = {FIRST: [], HELD: []}
    for rep in range(reps):
        samples.add(FIRST, fresh())
        pair = [(HELD, held), (PLAIN, plain)]
        for name, once in pair if rep % 2 else pair[::-1]:
            samples.add(name, once())
    return samples, counted


def rows(samples: Any, counted: dict, row: Callable[..., Any]) -> list[Any]:
    first, held, plain = samples.median(FIRST), samples.median(HELD), samples.median(PLAIN)
    return [
        row(
            "OAuth2: token requests by a sync whose token is held (encrypted in the database)",
            f"{sum(counted[HELD])} in {len(counted[HELD])} syncs",
            "0",
            sum(counted[HELD]) == 0,
        ),
        row(
            "OAuth2: token requests by the first sync",
            f"{sum(counted[FIRST])} in {len(counted[FIRST])} syncs",
            "1 each",
            all(n == 1 for n in counted[FIRST]),
        ),
        row(
            "OAuth2: sync with the token held / the same records without auth (100 records)",
            f"{held / plain:.2f}× ({held * 1000:.0f} ms / {plain * 1000:.0f} ms; first sync {first * 1000:.0f} ms)",
            "—",
            None,
        ),
    ]
