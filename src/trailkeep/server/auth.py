"""Credentials: API keys, session tokens, and who the actor of a request is.

A key is ``tk_<id>_<secret>``; only SHA-256 of the secret is stored (the secret carries 200
random bits, so a slow hash would add cost and no safety) and it is compared in constant time.
Verified keys are cached for a few seconds so a hot write path does not query the database per
request; revocation therefore takes effect within ``KEY_CACHE_SECONDS``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from base64 import b32encode
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import jwt

from trailkeep.log.credentials import SCOPES, SESSION_LEEWAY_SECONDS, SESSION_MAX_TTL_SECONDS
from trailkeep.log.record import READER_ROLES, Actor
from trailkeep.server.identity import ASYMMETRIC, IdentityError, issuer_of, verify
from trailkeep.server.jwks import JwksCache
from trailkeep.server.lru import ExpiringLru
from trailkeep.server.store import AppRecord, KeyRecord, Store

KEY_PREFIX: Final = "tk_"
KEY_CACHE_SECONDS: Final = 5.0
#: Entries per credential cache (apps, keys, answers): enough for every live caller of a node,
#: while a flood of random ids or tokens cannot grow the process past it.
CACHE_MAX_ENTRIES: Final = 10_000
#: The longest app id the API takes. `new_app_id` makes 20 characters; 64 leaves room for ids
#: made otherwise (imports) while refusing the long random ids that only cost lookups.
APP_ID_MAX: Final = 64


class AuthError(Exception):
    """A credential problem; ``code`` is the API's stable error code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _token(nbytes: int) -> str:
    return b32encode(secrets.token_bytes(nbytes)).decode().rstrip("=").lower()


def new_app_id() -> str:
    """A fresh app id."""
    return "app_" + _token(10)


def valid_app_id(app_id: str) -> bool:
    """Whether ``app_id`` could name an app at all (checked before any lookup or cache)."""
    return 0 < len(app_id) <= APP_ID_MAX


def new_session_secret() -> str:
    """A fresh HS256 session secret (256 bits)."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> bytes:
    """What is stored of a key's secret."""
    return hashlib.sha256(secret.encode()).digest()


def new_key(scopes: Iterable[str]) -> tuple[str, str, bytes]:
    """Make a key: returns (key id, the full key to show once, the hash to store)."""
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scope {sorted(unknown)[0]!r}; choose from {', '.join(SCOPES)}")
    ident, secret = _token(10), _token(25)
    return f"key_{ident}", f"{KEY_PREFIX}{ident}_{secret}", hash_secret(secret)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the actor entries are stamped with, and what they may do."""

    actor: Actor
    key_id: str | None  # set when the request authenticated with an API key
    scopes: frozenset[str]

    @property
    def is_person(self) -> bool:
        """True when a person (a session) acts, directly or forwarded by a key."""
        return self.actor.type == "user"

    def can_write(self) -> bool:
        """Sessions may record their own actions; keys need ``events:write``."""
        return "events:write" in self.scopes

    def can_read(self) -> bool:
        """Keys with ``events:read``, and owners', admins' and auditors' sessions."""
        return "events:read" in self.scopes

    def can_manage(self) -> bool:
        """Keys with ``manage``, and owners' sessions: settings, keys, holds, erasures."""
        return "manage" in self.scopes


class Authenticator:
    """Resolve request credentials to a :class:`Principal`, for one app."""

    def __init__(
        self,
        store: Store,
        cache_seconds: float = KEY_CACHE_SECONDS,
        max_entries: int = CACHE_MAX_ENTRIES,
        jwks: JwksCache | None = None,
    ) -> None:
        self._store = store
        # Identity providers' keys, shared by every app that names the same ones.
        self._jwks = jwks if jwks is not None else JwksCache()
        self._cache_seconds = cache_seconds
        self._keys: ExpiringLru[str, KeyRecord | None] = ExpiringLru(max_entries)
        self._apps: ExpiringLru[str, AppRecord | None] = ExpiringLru(max_entries)
        # Whole answers, so a repeat caller costs one dict lookup on the event loop. Only
        # successes are kept, each for at most as long as the key cache, so a revocation still
        # takes effect within `cache_seconds`.
        self._answers: ExpiringLru[tuple[str, str, str | None], Principal] = ExpiringLru(
            max_entries
        )

    def cache_sizes(self) -> dict[str, int]:
        """Entries held per cache (exported as a metric: each stays at most its bound)."""
        return {
            "apps": len(self._apps), "keys": len(self._keys), "answers": len(self._answers),
            "jwks": len(self._jwks),
        }  # fmt: skip

    def app(self, app_id: str) -> AppRecord | None:
        """The app, cached briefly (its session secret is needed on every session request)."""
        if not valid_app_id(app_id):
            return None  # no such app can exist: neither looked up nor remembered
        now = time.monotonic()
        cached = self._apps.get(app_id, now)
        if cached is not None:
            return cached[0]
        app = self._store.get_app(app_id)
        self._apps.put(app_id, app, now + self._cache_seconds)
        return app

    def forget(self, app_id: str) -> None:
        """Drop what is cached of an app, its keys and its answers (after a change to them)."""
        self._apps.forget(lambda key, _: key == app_id)
        self._keys.forget(lambda _, record: record is None or record.app_id == app_id)
        self._answers.forget(lambda key, _: key[0] == app_id)

    def _key(self, key_id: str) -> KeyRecord | None:
        now = time.monotonic()
        cached = self._keys.get(key_id, now)
        if cached is not None:
            return cached[0]
        record = self._store.get_key(key_id)
        self._keys.put(key_id, record, now + self._cache_seconds)
        return record

    def cached(self, app_id: str, headers: Mapping[str, str]) -> Principal | None:
        """The answer for credentials verified moments ago, or None (then call authenticate)."""
        found = self._answers.get(
            (app_id, headers.get("authorization", ""), headers.get("trailkeep-session")),
            time.monotonic(),
        )
        return None if found is None else found[0]

    def authenticate(self, app_id: str, headers: Mapping[str, str]) -> Principal:
        """Check the request's credentials against the app at ``app_id``."""
        if not valid_app_id(app_id):
            raise AuthError("not_found", "no such app")
        principal, lifetime = self._authenticate(app_id, headers)
        key = (app_id, headers.get("authorization", ""), headers.get("trailkeep-session"))
        now = time.monotonic()
        self._answers.put(key, principal, now + min(lifetime, self._cache_seconds))
        return principal

    def _authenticate(self, app_id: str, headers: Mapping[str, str]) -> tuple[Principal, float]:
        authorization = headers.get("authorization", "")
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if not authorization:
            raise AuthError("unauthenticated", "send `Authorization: Bearer <key or session>`")
        if scheme.lower() != "bearer" or not credential:
            raise AuthError("unauthenticated", "the Authorization header must be `Bearer <token>`")
        forwarded = headers.get("trailkeep-session")
        if credential.startswith(KEY_PREFIX):
            return self._with_key(app_id, credential, forwarded)
        if forwarded is not None:
            raise AuthError("unauthenticated", "only an API key may forward Trailkeep-Session")
        return self._with_session(app_id, credential, key_scopes=None)

    def _with_key(
        self, app_id: str, credential: str, forwarded: str | None
    ) -> tuple[Principal, float]:
        ident, _, secret = credential[len(KEY_PREFIX) :].partition("_")
        record = self._key(f"key_{ident}") if ident and secret and len(ident) <= 32 else None
        if record is None or not hmac.compare_digest(record.secret_hash, hash_secret(secret)):
            raise AuthError("unauthenticated", "the API key is not valid")
        if record.revoked_at is not None:
            raise AuthError("unauthenticated", "the API key was revoked")
        now = datetime.now(UTC)
        if record.expired(now):
            raise AuthError("unauthenticated", "the API key has expired")
        if record.app_id != app_id or self.app(app_id) is None:
            raise AuthError("not_found", "no such app")
        # Never cache an answer past the moment the key expires.
        lifetime = self._cache_seconds
        if record.expires_at is not None:
            lifetime = min(lifetime, (record.expires_at - now).total_seconds())
        if forwarded is not None:
            user, session_lifetime = self._with_session(app_id, forwarded, key_scopes=record)
            return user, min(lifetime, session_lifetime)
        actor = Actor(type="api_key", id=record.id, manages="manage" in record.scopes)
        return Principal(actor=actor, key_id=record.id, scopes=record.scopes), lifetime

    def _with_session(
        self, app_id: str, token: str, key_scopes: KeyRecord | None
    ) -> tuple[Principal, float]:
        app = self.app(app_id)
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise AuthError("unauthenticated", f"the session token is malformed: {exc}") from None
        _check_numeric_dates(unverified)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError("unauthenticated", f"the session token is malformed: {exc}") from None
        algorithm = header.get("alg")
        if isinstance(algorithm, str) and algorithm in ASYMMETRIC:
            claims = self._issuer_claims(app_id, app, token, header)
        else:
            claims = self._own_claims(app_id, app, token, unverified)
        if float(claims["exp"]) - time.time() > SESSION_MAX_TTL_SECONDS + SESSION_LEEWAY_SECONDS:
            # A stolen token with a far-off expiry would be a key in all but name.
            raise AuthError("unauthenticated", "the session token lives longer than 7 days")
        actor = _session_actor(claims)
        # Never cache a token past the moment it stops being accepted.
        lifetime = float(claims["exp"]) + SESSION_LEEWAY_SECONDS - time.time()
        scopes = {"events:write"}
        if actor.role in READER_ROLES:
            scopes.add("events:read")
        if actor.role == "owner":
            scopes.add("manage")
        if key_scopes is not None:
            # A backend forwarding its user's session: the user acts, with what both the key
            # and the user may do (a reading key cannot lend its scope to a plain user).
            allowed = key_scopes.scopes & scopes
            return Principal(actor=actor, key_id=key_scopes.id, scopes=allowed), lifetime
        return Principal(actor=actor, key_id=None, scopes=frozenset(scopes)), lifetime

    def _own_claims(
        self, app_id: str, app: AppRecord | None, token: str, unverified: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The claims of a session signed with the app's own secret (HS256, and only that);
        either of two secrets while one rotates."""
        audience = unverified.get("aud")
        if app is None or (isinstance(audience, str) and audience != app_id):
            raise AuthError("not_found", "no such app")
        return _decode_session(token, app.session_secrets, app_id)

    def _issuer_claims(
        self, app_id: str, app: AppRecord | None, token: str, header: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The claims of a token the app's identity provider signed (RS256, ES256, EdDSA)."""
        if app is None:
            raise AuthError("not_found", "no such app")
        if app.session_issuer is None:
            raise AuthError(
                "unauthenticated",
                f"this app accepts {header.get('alg')} sessions only from an identity provider, "
                "and it has none (see `session_issuer`); its own sessions are HS256",
            )
        try:
            return verify(token, header, issuer_of(app.session_issuer), app_id, self._jwks)
        except IdentityError as exc:
            raise AuthError("unauthenticated", str(exc)) from None


def _decode_session(token: str, secrets: Sequence[str], app_id: str) -> dict[str, Any]:
    """The claims of a session signed with one of the app's secrets (two while one rotates)."""
    for secret in secrets:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, secret, algorithms=["HS256"], audience=app_id,
                leeway=SESSION_LEEWAY_SECONDS, options={"require": ["sub", "exp", "aud"]},
            )  # fmt: skip
            return claims
        except jwt.InvalidSignatureError:
            continue  # perhaps signed with the other secret of a rotation
        except jwt.ExpiredSignatureError:
            raise AuthError("unauthenticated", "the session token has expired") from None
        except jwt.PyJWTError as exc:
            raise AuthError("unauthenticated", f"the session token is not valid: {exc}") from None
    raise AuthError(
        "unauthenticated", "the session token is not valid: Signature verification failed"
    )


# 9999-12-31T23:59:59Z: the last moment a timestamp can name, and far below 2**53.
_NUMERIC_DATE_MAX: Final = 253_402_300_799


def _check_numeric_dates(claims: Mapping[str, Any]) -> None:
    """``exp``, ``nbf`` and ``iat`` are NumericDates (RFC 7519): JSON numbers in range."""
    for name in ("exp", "nbf", "iat"):
        if name not in claims:
            continue
        value = claims[name]
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        # NaN fails the range test too: every comparison with it is false.
        if not numeric or not 0 <= value <= _NUMERIC_DATE_MAX:
            raise AuthError(
                "unauthenticated",
                f"the session's `{name}` must be a NumericDate: a number of seconds since 1970",
            )


def _session_actor(claims: Mapping[str, Any]) -> Actor:
    sub, name, role = claims.get("sub"), claims.get("name"), claims.get("role")
    if not isinstance(sub, str) or not 1 <= len(sub) <= 256:
        raise AuthError("unauthenticated", "the session's `sub` must be a string of 1-256 chars")
    if name is not None and (not isinstance(name, str) or len(name) > 256):
        raise AuthError("unauthenticated", "the session's `name` must be a short string")
    if role is not None and (not isinstance(role, str) or len(role) > 64):
        raise AuthError("unauthenticated", "the session's `role` must be a short string")
    for claim, value in (("sub", sub), ("name", name), ("role", role)):
        if value is not None and not _is_unicode(value):
            # JSON allows escaped lone surrogates ("\ud800"); no entry can hold them.
            raise AuthError("unauthenticated", f"the session's `{claim}` is not valid Unicode")
    return Actor(type="user", id=sub, name=name, role=role)


def _is_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
