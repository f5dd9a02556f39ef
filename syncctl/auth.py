"""How a request proves who sends it (spec §16), one object per integration that the
connector asks for headers and may ask for a fresh credential after a 401 (httpx's auth
flow: apply, and answer a 401 with one retried request):

- :class:`BasicAuth`: ``--auth basic:USER:PASSWORD`` (RFC 7617);
- :class:`OAuth2`: ``--auth oauth2``, the client-credentials or refresh-token grant (RFC
  6749) with the token held across syncs and runs (:class:`TokenKeeper`: encrypted in the
  database, one refresh at a time across processes and hosts, a rotated refresh token
  stored at once and durably before the access token is used).

Every credential and token is a secret of the sync (``Secrets.add``): redacted from
messages and from records that echo it. The connector sends these headers only to the
integration's own origin (a redirect elsewhere drops them, as it drops ${VAR} headers).
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from syncctl.errors import SyncError, with_retry_promise
from syncctl.secrets import REFERENCE

if TYPE_CHECKING:
    from syncctl.config import Auth
    from syncctl.secrets import Secrets
    from syncctl.store import Store
    from syncctl.tokens import Vault

RENEW_BEFORE = timedelta(seconds=60)  # a token expiring within this is renewed first
DEFAULT_LIFETIME = 3600  # seconds, when the token endpoint gives no expires_in
MAX_LIFETIME = 365 * 24 * 3600  # a longer expires_in is taken as a year
LEASE_SECONDS = 60.0  # how long one process may hold the refresh before another takes over
WAIT_STEP = 0.2  # seconds between looks while another process refreshes


class BasicAuth:
    """HTTP Basic: ``Authorization: Basic base64(user:password)`` (UTF-8, RFC 7617)."""

    refreshable = False

    def __init__(self, auth: Auth, secrets: Secrets) -> None:
        user, password = secrets.expand_param(auth.user), secrets.expand_param(auth.password)
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        secrets.add(token)
        self.value = f"Basic {token}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": self.value}

    def describe(self) -> str:
        return "HTTP Basic"


@dataclass
class Token:
    access: str
    expires_at: datetime


TokenRequest = Callable[[str, dict[str, str], tuple[str, str] | None], dict[str, Any]]


class TokenKeeper:
    """One integration's OAuth2 tokens: held in memory for the run, and in the database
    (encrypted) across runs when ``vault`` is set; one refresh at a time."""

    def __init__(self, integration_id: int | None, store: Store | None, vault: Vault | None,
                 cache: dict[Any, Token], owner: str, clock: Callable[[], datetime],
                 sleep: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
        self.integration_id = integration_id
        self.store = store if integration_id is not None else None
        self.vault = vault
        self.cache = cache
        self.owner = owner
        self.clock = clock
        self.sleep = sleep
        self.warnings: list[str] = []

    @property
    def persistent(self) -> bool:
        return self.store is not None and self.vault is not None

    def held(self, key: Any) -> Token | None:
        """A token good for more than a minute: this run's, or the stored one."""
        token = self.cache.get(key)
        if token is not None and token.expires_at - RENEW_BEFORE > self.clock():
            return token
        if not self.persistent:
            return None
        row = self.store.load_token(self.integration_id)
        if row is None or not row.get("access_token"):
            return None
        if row.get("key_id") != self.vault.key_id:
            self._key_changed()
            return None
        access = self.vault.decrypt(row["access_token"])
        expires = row.get("expires_at")
        if access is None or expires is None or expires - RENEW_BEFORE <= self.clock():
            return None
        self.cache[key] = Token(access, expires)
        return self.cache[key]

    def _key_changed(self) -> None:
        message = ("warning: the stored OAuth2 tokens were written with another SYNCCTL_SECRET_KEY and are "
                   "ignored (a new token was requested)")  # fmt: skip
        if message not in self.warnings:
            self.warnings.append(message)


def keeper_for(integration_id: int, store: Store, env: Any, cache: dict[Any, Token],
               clock: Callable[[], datetime]) -> TokenKeeper:  # fmt: skip
    """The token keeper of a stored integration (a sync's, or check NAME's: they share the
    held token and the one-refresh rule): tokens in the database when SYNCCTL_SECRET_KEY
    is set."""
    from syncctl import liveness
    from syncctl.tokens import vault_from

    return TokenKeeper(integration_id, store, vault_from(env), cache, liveness.owner_token(), clock)


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port: where credentials may go (an integration's own origin only)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def outdated_tokens(old_url: str, old: Auth | None, new_url: str, new: Auth | None) -> str | None:
    """What of an integration's stored OAuth2 tokens a change of its settings outdates:
    ``"all"`` when the token endpoint or client changed, or OAuth2 was turned off (its
    refresh token must never reach another endpoint); ``"access"`` when the access token
    was granted under other settings (scope, token params, client secret or auth, refresh
    token) or would go to another origin; None when both still hold."""
    if old is None or old.kind != "oauth2":
        return None
    if new is None or new.kind != "oauth2" or (new.token_url, new.client_id) != (old.token_url, old.client_id):
        return "all"
    granted = ("client_secret", "scopes", "token_params", "client_auth", "refresh_token")
    if any(getattr(new, f) != getattr(old, f) for f in granted) or origin(new_url) != origin(old_url):
        return "access"
    return None


class OAuth2:
    """``Authorization: Bearer <access token>``, the token obtained from ``token_url`` and
    renewed 60 s before it expires, or once after the source answers 401."""

    refreshable = True

    def __init__(self, auth: Auth, secrets: Secrets, keeper: TokenKeeper, request: TokenRequest) -> None:
        self.auth = auth
        self.secrets = secrets
        self.keeper = keeper
        self.request = request
        self.client_id = secrets.expand_param(auth.client_id)
        self.client_secret = secrets.expand_param(auth.client_secret)
        self.params = [(k, secrets.expand_param(v)) for k, v in auth.token_params]
        # The refresh token the admin put in its variable: where a chain begins.
        self.seed_token = secrets.expand_param(auth.refresh_token) if auth.refresh_token else None
        self.key = (keeper.integration_id, auth.token_url, self.client_id)
        self.current: Token | None = None
        if auth.refresh_token and not keeper.persistent:
            raise SyncError(
                "--refresh-token needs SYNCCTL_SECRET_KEY: a rotating token endpoint would answer with a new "
                "refresh token that could not be kept, and the one in "
                f"{_variables(auth.refresh_token)} would then be dead; the token endpoint was not contacted",
                "set SYNCCTL_SECRET_KEY (at least 32 characters, e.g. openssl rand -base64 48) in the environment "
                "syncctl runs in, as you set the ${VAR}s",
            )

    def describe(self) -> str:
        grant = "refresh token" if self.auth.refresh_token else "client credentials"
        held = "held across runs (encrypted)" if self.keeper.persistent else "held for the run"
        return f"OAuth2 {grant} from {self.auth.token_url}, token {held}"

    def headers(self) -> dict[str, str]:
        token = self.current if self._fresh(self.current) else (self.keeper.held(self.key) or self._renew(None))
        self.current = token
        self.secrets.add(token.access)  # held from an earlier run or another process: a secret here too
        return {"Authorization": f"Bearer {token.access}"}

    def refresh(self) -> None:
        """The source refused the token (401): get another, once."""
        self.current = self._renew(self.current)

    def _fresh(self, token: Token | None) -> bool:
        return token is not None and token.expires_at - RENEW_BEFORE > self.keeper.clock()

    def _renew(self, refused: Token | None) -> Token:
        """A new access token: asked for by this process while it holds the lease, or
        taken from the process that held it meanwhile."""
        keeper = self.keeper
        if not keeper.persistent:
            token = self._ask(None)[0]
            keeper.cache[self.key] = token
            return token
        store, iid = keeper.store, keeper.integration_id
        waited_since = time.monotonic()
        dead = None
        while not store.claim_token_refresh(iid, keeper.owner, LEASE_SECONDS, keeper.clock(), dead=dead):
            # Another process is asking right now: use what it gets (never two requests
            # with one refresh token: a server that detects reuse revokes the family).
            keeper.sleep(WAIT_STEP)
            keeper.cache.pop(self.key, None)
            token = keeper.held(self.key)
            if token is not None and (refused is None or token.access != refused.access):
                return token
            dead = _dead_holder(store.load_token(iid))  # killed mid-refresh: no need to wait out its lease
            if time.monotonic() - waited_since > LEASE_SECONDS + 5:
                raise SyncError(
                    "another process has been renewing this integration's OAuth2 token for too long",
                    with_retry_promise("if it repeats, check the token endpoint"),
                    retryable=True,
                )
        try:
            if refused is None:  # someone may have renewed it just before we took the lease
                keeper.cache.pop(self.key, None)
                token = keeper.held(self.key)
                if token is not None:
                    return token
            row = store.load_token(iid)
            token, refresh = self._ask(self._chain(row), keep=self._save)
            self._save(token, refresh)
            keeper.cache[self.key] = token
            return token
        finally:
            store.release_token_refresh(iid, keeper.owner)

    def _save(self, token: Token | None, refresh: str | None) -> None:
        """Store (encrypted, durably) what the token endpoint answered: the access token, if
        any, and the refresh token to use next."""
        keeper, vault = self.keeper, self.keeper.vault
        keeper.store.save_token(
            keeper.integration_id, keeper.owner, key_id=vault.key_id,
            seed=vault.mac(self.seed_token) if self.seed_token else None,
            access=vault.encrypt(token.access) if token else None, expires_at=token.expires_at if token else None,
            refresh=vault.encrypt(refresh) if refresh else None, now=keeper.clock(),
        )  # fmt: skip

    def _chain(self, row: dict[str, Any] | None) -> str | None:
        """The refresh token to use: the latest of the stored chain, unless the variable
        holds another than the one the chain began with (re-authorised: it wins)."""
        if self.seed_token is None:
            return None
        vault = self.keeper.vault
        if row is None or not row.get("refresh_token") or row.get("key_id") != vault.key_id:
            if row is not None and row.get("refresh_token") and row.get("key_id") != vault.key_id:
                self.keeper._key_changed()
            return self.seed_token
        if row.get("seed") != vault.mac(self.seed_token):
            return self.seed_token
        chained = vault.decrypt(row["refresh_token"])
        if chained:
            self.secrets.add(chained)
        return chained or self.seed_token

    def _ask(
        self, refresh_token: str | None, keep: Callable[[Token | None, str | None], None] | None = None
    ) -> tuple[Token, str | None]:
        """One token request; (the access token, the refresh token to keep). An answer that
        rotates the refresh token yet is refused (no access token: RFC 6749 broken) still
        hands the new refresh token to ``keep`` before the refusal is raised: the one
        presented is spent, and losing the new one would leave the integration dead."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token} if refresh_token else {
            "grant_type": "client_credentials"}  # fmt: skip
        if self.auth.scopes:
            form["scope"] = " ".join(self.auth.scopes)
        form.update(self.params)
        basic = None
        if self.auth.client_auth == "body":
            form.update(client_id=self.client_id, client_secret=self.client_secret)
        else:
            basic = (self.client_id, self.client_secret)
        answer = self.request(self.auth.token_url, form, basic)
        for field in ("access_token", "refresh_token", "id_token"):  # secrets even in a refusal that quotes them
            if isinstance(answer.get(field), str) and answer[field]:
                self.secrets.add(answer[field])
        rotated = answer.get("refresh_token")
        if not (isinstance(rotated, str) and rotated):
            rotated = None
        if "error" in answer or not isinstance(answer.get("access_token"), str) or not answer["access_token"]:
            if rotated and refresh_token and rotated != refresh_token and keep is not None:
                keep(None, rotated)
            raise self._refused(answer)
        access = answer["access_token"]
        return Token(access, self.keeper.clock() + timedelta(seconds=token_lifetime(answer.get("expires_in")))), (
            rotated or refresh_token)

    def _refused(self, answer: dict[str, Any]) -> SyncError:
        error = answer.get("error")
        if not isinstance(error, str):
            return SyncError(
                f"the token endpoint {self.auth.token_url} answered without an access_token",
                "check --token-url: it should be the OAuth2 token endpoint (RFC 6749 §3.2)",
            )
        description = answer.get("error_description")
        from syncctl.wording import source_text

        text = source_text(f"{error}: {description}" if isinstance(description, str) and description else error, 300)
        grant = "refresh-token" if self.auth.refresh_token else "client-credentials"
        if error in ("invalid_client", "unauthorized_client", "HTTP 401", "HTTP 403"):  # a bare 401: the client
            hint = (f"check the client id and secret ({_variables(self.auth.client_secret)}) and --client-auth "
                    f"(now {self.auth.client_auth})")  # fmt: skip
        elif error == "invalid_grant" and self.auth.refresh_token:
            variable = _variables(self.auth.refresh_token)
            hint = (f"the refresh token was revoked or has expired: re-authorise, and put the new refresh token in "
                    f"{variable}")  # fmt: skip
        elif error == "invalid_scope":
            hint = "check --scope: the client may not ask for it"
        else:
            hint = "check --token-url, --scope and --token-param against the provider's documentation"
        return SyncError(f"the token endpoint refused the {grant} grant: {text}", hint)


def token_lifetime(expires_in: Any) -> float:
    """Seconds an access token lives: the endpoint's ``expires_in``, an hour when absent or
    unreadable, at most a year (an absurd value from a provider must not break the sync
    between receiving a rotated refresh token and storing it)."""
    try:
        seconds = float(expires_in if expires_in is not None else DEFAULT_LIFETIME)
    except (TypeError, ValueError, OverflowError):
        return DEFAULT_LIFETIME
    if not math.isfinite(seconds):
        return DEFAULT_LIFETIME
    return min(max(0.0, seconds), MAX_LIFETIME)


def _dead_holder(row: dict[str, Any] | None) -> str | None:
    """The lease holder of ``row`` when it is a process of this host that has ended."""
    from syncctl import liveness

    owner = (row or {}).get("refreshing_owner")
    if not owner or liveness.host_of(owner) != liveness.hostname():
        return None
    try:
        pid = int(owner.rsplit(":", 3)[2])
    except (ValueError, IndexError):
        return None
    return owner if not liveness.is_alive(pid, owner) else None


def _variables(template: str | None) -> str:
    names = REFERENCE.findall(template or "")
    return ", ".join(f"${{{n}}}" for n in names) or "its variable"
