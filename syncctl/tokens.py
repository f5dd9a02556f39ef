"""OAuth2 tokens at rest (spec §16): encrypted with a key derived from
``SYNCCTL_SECRET_KEY``, because dashboards read this database. ``cryptography`` is
imported only here, and only for an integration that keeps tokens.

- The key: HKDF-SHA256 of the variable's text (at least 32 characters) into a Fernet key
  (AES-128-CBC with HMAC-SHA256, a timestamp and a random IV per value).
- ``key_id``: an HMAC of a constant under the key, stored beside the tokens, so a
  database read with another key is recognised (its tokens are ignored, with a warning)
  without trying to decrypt them.
- ``seed``: an HMAC of the refresh token the admin put in ``${VAR}``, so a new one put
  there (re-authorised) is noticed and wins over the stored chain; no token, nor any
  fragment of one, is stored in clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from syncctl.errors import SyncError

KEY_VARIABLE = "SYNCCTL_SECRET_KEY"
MIN_KEY_LENGTH = 32


class Vault:
    """Encrypts and decrypts tokens with the key ``SYNCCTL_SECRET_KEY`` gives."""

    def __init__(self, secret: str) -> None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        material = HKDF(algorithm=hashes.SHA256(), length=64, salt=b"syncctl tokens", info=b"v1").derive(
            secret.encode("utf-8")
        )
        from cryptography.fernet import Fernet

        self._fernet = Fernet(base64.urlsafe_b64encode(material[:32]))
        self._mac_key = material[32:]
        self.key_id = self.mac("key id")[:16]

    def mac(self, text: str) -> str:
        return hmac.new(self._mac_key, text.encode("utf-8"), hashlib.sha256).hexdigest()

    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str | None:
        """The text, or None when it was not written with this key (or was altered)."""
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError):
            return None


def vault_from(env: Mapping[str, str]) -> Vault | None:
    """The vault ``SYNCCTL_SECRET_KEY`` opens, or None when it is not set; SyncError when
    it is too short to be a key."""
    secret = env.get(KEY_VARIABLE)
    if not secret:
        return None
    if len(secret) < MIN_KEY_LENGTH:
        raise SyncError(
            f"{KEY_VARIABLE} is too short to be a key ({len(secret)} characters, at least {MIN_KEY_LENGTH})",
            f"set {KEY_VARIABLE} to a long random text, e.g. the output of: openssl rand -base64 48",
        )
    return Vault(secret)
