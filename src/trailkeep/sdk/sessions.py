"""Session tokens for an app's end users, minted with the app's session secret (HS256)."""

from __future__ import annotations

import time

import jwt

from trailkeep.log.credentials import SESSION_MAX_TTL_SECONDS, session_claims

from .errors import ConfigurationError, local_error


def mint_session(
    app_id: str,
    secret: str,
    sub: str,
    *,
    role: str | None = None,
    name: str | None = None,
    ttl: int = 3600,
) -> str:
    """An HS256 session token for user ``sub`` of the app (what the app's backend does)."""
    claims = session_claims(app_id, sub, now=int(time.time()), ttl=ttl, role=role, name=name)
    return jwt.encode(claims, secret, algorithm="HS256")


class Sessions:
    """Mints session tokens for the app's end users with the app's session secret."""

    def __init__(self, app: str, secret: str | None) -> None:
        """Bind to the app and its secret (``None``: minting raises ConfigurationError)."""
        self._app = app
        self._secret = secret

    def mint(
        self, sub: str, *, role: str | None = None, name: str | None = None, ttl: int = 3600
    ) -> str:
        """An HS256 session token for user ``sub`` (``role`` owner/admin may read the log)."""
        if self._secret is None:
            raise ConfigurationError(
                "minting sessions needs the app's session secret: pass session_secret= to the "
                "client"
            )
        if not isinstance(sub, str) or not 1 <= len(sub) <= 256:
            raise local_error("invalid_request", "sub: a string of 1 to 256 characters")
        if not 1 <= ttl <= SESSION_MAX_TTL_SECONDS:
            raise local_error("invalid_request", f"ttl: 1 to {SESSION_MAX_TTL_SECONDS} seconds")
        return mint_session(self._app, self._secret, sub, role=role, name=name, ttl=ttl)
