"""Sessions signed by an app's own identity provider: RS256, ES256 and EdDSA tokens.

An app that registers a ``session_issuer`` accepts, beside its own HS256 sessions, tokens its
identity provider signs. The key is found by the token's ``kid`` among the provider's published
keys (see :mod:`trailkeep.server.jwks`); the key's type decides the algorithm, and a token whose
``alg`` names another is refused, so an RSA public key is never taken for an HMAC secret. ``iss``
and ``aud`` must be the configured ones; the role comes from ``role_claim`` through
``role_map``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt

from trailkeep.log.credentials import SESSION_LEEWAY_SECONDS
from trailkeep.server.jwks import JwksCache, JwksError, find_key

#: The algorithms of identity providers' tokens; any other goes the app's own HS256 way.
ASYMMETRIC: Final = frozenset({"RS256", "ES256", "EdDSA"})
#: Trailkeep's roles, lowest first: of several mapped roles the highest wins.
ROLE_RANK: Final = {"auditor": 1, "admin": 2, "owner": 3}
#: Role names read from one claim, at most (a token is small, but need not be honest).
ROLES_READ_MAX: Final = 1_000


class IdentityError(Exception):
    """A token of an identity provider that is not accepted; the message says why."""


@dataclass(frozen=True, slots=True)
class Issuer:
    """An app's identity provider, as its ``session_issuer`` setting describes it."""

    issuer: str
    jwks_uri: str | None
    jwks: Mapping[str, Any] | None
    audience: str | None  # None: the app id
    role_claim: tuple[str, ...]
    role_map: Mapping[str, str]


@functools.lru_cache(maxsize=1_024)
def issuer_of(stored: str) -> Issuer:
    """The issuer a stored ``session_issuer`` (JSON, validated when set) describes."""
    found = json.loads(stored)
    return Issuer(
        issuer=found["issuer"],
        jwks_uri=found.get("jwks_uri"),
        jwks=found.get("jwks"),
        audience=found.get("audience"),
        role_claim=tuple(str(found.get("role_claim") or "role").split(".")),
        role_map=dict(found.get("role_map") or {}),
    )


def mapped_role(
    claims: Mapping[str, Any], path: tuple[str, ...], role_map: Mapping[str, str]
) -> str | None:
    """The Trailkeep role of a token: the highest that ``role_map`` gives a name at ``path``.

    The value at the path may be a string or a list of strings; a name the map does not hold
    gives no role (a plain user).
    """
    value: Any = claims
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    best: str | None = None
    for name in names[:ROLES_READ_MAX]:
        role = role_map.get(name) if isinstance(name, str) else None
        if role is not None and (best is None or ROLE_RANK[role] > ROLE_RANK[best]):
            best = role
    return best


def verify(
    token: str, header: Mapping[str, Any], issuer: Issuer, app_id: str, keys: JwksCache
) -> dict[str, Any]:
    """The claims of an identity provider's token, verified; ``role`` is the mapped role."""
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
        raise IdentityError("the session token's `kid` must be a short string")
    try:
        if issuer.jwks is not None:
            key = find_key(keys.inline(issuer.jwks), kid)
        elif issuer.jwks_uri is not None:
            key = keys.key(issuer.jwks_uri, kid)
        else:
            key = None
        if key is None:
            raise JwksError(f"no signing key {kid!r} among the identity provider's keys")
    except JwksError as exc:
        raise IdentityError(f"the session token cannot be verified: {exc}") from None
    if header.get("alg") != key.algorithm:
        # The key decides: an RS256 key never checks an ES256 (or HS256) signature.
        raise IdentityError(
            f"the session token's alg {header.get('alg')!r} is not its key's ({key.algorithm})"
        )
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key.key, algorithms=[key.algorithm], audience=issuer.audience or app_id,
            issuer=issuer.issuer, leeway=SESSION_LEEWAY_SECONDS,
            options={"require": ["sub", "exp", "iss", "aud"]},
        )  # fmt: skip
    except jwt.ExpiredSignatureError:
        raise IdentityError("the session token has expired") from None
    except jwt.InvalidIssuerError:
        raise IdentityError("the session token's `iss` is not the app's provider") from None
    except jwt.InvalidAudienceError:
        raise IdentityError("the session token's `aud` is not this app's audience") from None
    except jwt.PyJWTError as exc:
        raise IdentityError(f"the session token is not valid: {exc}") from None
    claims["role"] = mapped_role(claims, issuer.role_claim, issuer.role_map)
    return claims
