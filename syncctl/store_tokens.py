"""The store's token aggregate (spec §16): each OAuth2 integration's tokens, encrypted
before they get here (syncctl.tokens), and the lease that makes one process at a time
ask the token endpoint. A mixin of ``syncctl.store.Store``: the same connection and
transactions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from syncctl.timeutil import format_ts, parse_ts


class TokenStore:
    """OAuth2 tokens and the one-refresh-at-a-time lease."""

    def load_token(self, integration_id: int) -> dict[str, Any] | None:
        """The stored token row (values encrypted), ``expires_at`` as a datetime."""
        rows = list(self._query("SELECT * FROM oauth_tokens WHERE integration_id = ?", [integration_id]))
        if not rows:
            return None
        row = rows[0]
        for name in ("expires_at", "updated_at", "refreshing_until"):
            value = row.get(name)
            row[name] = parse_ts(value) if isinstance(value, str) else value
        return row

    def claim_token_refresh(
        self, integration_id: int, owner: str, seconds: float, now: datetime, *, dead: str | None = None
    ) -> bool:
        """Take the lease to ask the token endpoint for this integration (True), unless
        another process holds it (False). A lease whose holder died expires on the
        database's clock; ``dead``, a holder known to be gone (on this host), loses it at once."""
        with self.transaction():
            self.conn.execute(
                "INSERT INTO oauth_tokens (integration_id, updated_at) VALUES (?, ?) ON CONFLICT (integration_id)"
                " DO NOTHING",
                (integration_id, format_ts(now)),
            )
            return self.conn.execute(
                f"UPDATE oauth_tokens SET refreshing_until = {self.dialect.lease_sql}, refreshing_owner = ?"
                f" WHERE integration_id = ? AND (refreshing_until IS NULL OR refreshing_until < {self.dialect.now_sql}"
                " OR refreshing_owner = ? OR refreshing_owner = ?)",
                (seconds, owner, integration_id, owner, dead or owner),
            ).rowcount == 1

    def save_token(
        self, integration_id: int, owner: str, *, key_id: str | None, seed: str | None, access: str | None,
        expires_at: datetime | None, refresh: str | None, now: datetime,
    ) -> None:
        """Store what the token endpoint answered (encrypted by the caller) and release
        the lease, durably: a rotated refresh token is the only one that works now."""
        with self._durably(), self.transaction():
            self.conn.execute(
                "UPDATE oauth_tokens SET key_id = ?, seed = ?, access_token = ?, expires_at = ?, refresh_token = ?,"
                " refreshing_until = NULL, refreshing_owner = NULL, updated_at = ? WHERE integration_id = ?",
                (key_id, seed, access, format_ts(expires_at), refresh, format_ts(now), integration_id),
            )

    def release_token_refresh(self, integration_id: int, owner: str) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE oauth_tokens SET refreshing_until = NULL, refreshing_owner = NULL"
                " WHERE integration_id = ? AND refreshing_owner = ?",
                (integration_id, owner),
            )

    def forget_tokens(self, integration_id: int, which: str | None) -> None:
        """Drop what settings that changed outdate: ``"all"`` (the refresh chain too),
        ``"access"`` (the access token only), None (nothing)."""
        if which is None:
            return
        with self.transaction():
            if which == "all":
                self.conn.execute("DELETE FROM oauth_tokens WHERE integration_id = ?", [integration_id])
            else:
                self.conn.execute("UPDATE oauth_tokens SET access_token = NULL, expires_at = NULL"
                                  " WHERE integration_id = ?", [integration_id])  # fmt: skip
