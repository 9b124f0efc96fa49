"""Credentials as the API defines them: what an API key may do, and what a session claims.

Pure: the caller gives the time. The SDK signs session claims (HS256 with the app's session
secret); the server verifies them with the same limits.
"""

from __future__ import annotations

from typing import Any, Final

#: What an API key may be allowed: write entries, read the log, manage the app.
SCOPES: Final = ("events:write", "events:read", "manage")
#: The longest a session may live: a token with a far-off expiry is a key in all but name.
SESSION_MAX_TTL_SECONDS: Final = 7 * 24 * 3600
#: Clock skew forgiven between the minting backend and the server, on ``exp``.
SESSION_LEEWAY_SECONDS: Final = 5


def session_claims(
    app_id: str,
    sub: str,
    *,
    now: int,
    ttl: int = 3600,
    role: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """The JWT claims of a session for user ``sub`` of ``app_id``, issued at ``now``."""
    if not 0 < ttl <= SESSION_MAX_TTL_SECONDS:
        raise ValueError(f"ttl: 1 to {SESSION_MAX_TTL_SECONDS} seconds (7 days)")
    claims: dict[str, Any] = {"sub": sub, "aud": app_id, "iat": now, "exp": now + ttl}
    if role is not None:
        claims["role"] = role
    if name is not None:
        claims["name"] = name
    return claims
