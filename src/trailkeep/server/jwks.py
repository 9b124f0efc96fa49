"""The published keys of apps' identity providers: parsed, fetched, cached and refreshed.

A key's type decides its algorithm (RSA: RS256, P-256: ES256, Ed25519: EdDSA); a token's ``alg``
is only checked against it, never trusted. A key set fetched from a ``jwks_uri`` is kept as its
``Cache-Control: max-age`` says, within :data:`TTL_FLOOR` and :data:`TTL_CEILING`; once that has
passed it is still used (a provider that is down stops nothing) while one background fetch
refreshes it, for at most :data:`STALE_MAX` after the last good fetch. A token naming a key id
the set does not hold makes one fetch, at most once per :data:`REFETCH_SECONDS` per URI, so a
flood of made-up key ids costs the provider nothing more. Fetches run in the authenticating
worker thread (never on the event loop), each bounded in time and size.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import jwt

from trailkeep.server.egress import EgressError, check_url
from trailkeep.server.lru import ExpiringLru

FETCH_TIMEOUT: Final = 5.0  # seconds for a whole fetch, connection to last byte
FETCH_MAX_BYTES: Final = 64 << 10
TTL_FLOOR: Final = 60.0
TTL_CEILING: Final = 86_400.0
TTL_DEFAULT: Final = 600.0  # when the provider says nothing of caching
STALE_MAX: Final = 86_400.0
REFETCH_SECONDS: Final = 5.0
KEYS_MAX: Final = 32  # keys taken from one set; the rest are ignored
URIS_MAX: Final = 1_000  # key sets held per node

#: The algorithm each usable key type signs with: (kty, crv) -> alg.
_ALGORITHMS: Final[dict[tuple[Any, Any], str]] = {
    ("RSA", None): "RS256",
    ("EC", "P-256"): "ES256",
    ("OKP", "Ed25519"): "EdDSA",
}
#: Names a JWK's own ``alg`` may give for that algorithm.
_ALIASES: Final = {"RS256": {"RS256"}, "ES256": {"ES256"}, "EdDSA": {"EdDSA", "Ed25519"}}
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d{1,10})\s*(?:,|$)", re.IGNORECASE)


class JwksError(Exception):
    """Keys that cannot be had: a bad URI, a fetch that failed, a set with no usable key."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    """One usable signing key: its algorithm (from its type) and the key itself."""

    kid: str | None
    algorithm: str
    key: Any = field(repr=False)


def parse_jwks(document: Any) -> dict[str | None, PublicKey]:
    """The usable signing keys of a JWKS document, by ``kid`` (refused: none usable)."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise JwksError('a JWKS is an object with a "keys" list')
    found: dict[str | None, PublicKey] = {}
    for jwk in document["keys"][: KEYS_MAX * 4]:
        key = _usable(jwk)
        if key is not None and key.kid not in found and len(found) < KEYS_MAX:
            found[key.kid] = key
    if not found:
        raise JwksError("the JWKS holds no usable signing key (RSA, EC P-256 or Ed25519)")
    return found


def _usable(jwk: Any) -> PublicKey | None:
    # Encryption keys (`use: enc`, as Keycloak publishes beside its signing keys) and key types
    # other than the three are skipped rather than refused: the set may hold them.
    if not isinstance(jwk, Mapping) or jwk.get("use", "sig") != "sig":
        return None
    kty, crv, kid = jwk.get("kty"), jwk.get("crv"), jwk.get("kid")
    algorithm = _ALGORITHMS.get((kty, None if kty == "RSA" else crv))
    if algorithm is None or (kid is not None and not isinstance(kid, str)):
        return None
    if "alg" in jwk and jwk["alg"] not in _ALIASES[algorithm]:
        return None  # e.g. an RSA key meant for PS256 or RSA-OAEP
    if any(isinstance(jwk.get(part), str) and jwk.get(part) for part in ("d", "p", "q")):
        return None  # a private key published by mistake is not used
    try:
        parsed = jwt.PyJWK(dict(jwk), algorithm=algorithm)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None
    if kty == "RSA" and parsed.key.key_size < 2048:
        return None
    return PublicKey(kid=kid, algorithm=algorithm, key=parsed.key)


def find_key(keys: Mapping[str | None, PublicKey], kid: str | None) -> PublicKey | None:
    """The key ``kid`` names; a token without a ``kid`` may use a set's only key."""
    found = keys.get(kid)
    if found is None and kid is None and len(keys) == 1:
        found = next(iter(keys.values()))
    return found


def check_uri(uri: str, allow_private: bool) -> None:
    """Refuse a ``jwks_uri`` that is not https, or whose host resolves to a non-public address.

    Every address the host resolves to is checked (server/egress.py, shared with webhooks).
    With ``allow_private`` (an identity provider in the operator's own network) both rules are
    lifted.
    """
    try:
        check_url(uri, allow_private, "TRAILKEEP_JWKS_ALLOW_PRIVATE")
    except EgressError as exc:
        raise JwksError(str(exc)) from None


def _max_age(cache_control: str | None, floor: float) -> float:
    match = _MAX_AGE.search(cache_control or "")
    seconds = float(match.group(1)) if match else TTL_DEFAULT
    return min(max(seconds, floor), TTL_CEILING)


class _KeySet:
    """One URI's keys and when they were fetched; ``lock`` lets one thread fetch at a time."""

    __slots__ = ("fresh_until", "good_at", "keys", "last_attempt", "lock")

    def __init__(self) -> None:
        self.keys: dict[str | None, PublicKey] = {}
        self.fresh_until = 0.0
        self.good_at = -STALE_MAX  # monotonic time of the last good fetch
        self.last_attempt = -REFETCH_SECONDS
        self.lock = threading.Lock()


class JwksCache:
    """Key sets by URI, for every app of a node; thread-safe, bounded to :data:`URIS_MAX`."""

    def __init__(
        self, allow_private: bool = False, max_entries: int = URIS_MAX, ttl_floor: float = TTL_FLOOR
    ) -> None:
        self.allow_private = allow_private
        self.ttl_floor = ttl_floor
        self.fetches = 0  # attempts made, for metrics and tests
        self._sets: ExpiringLru[str, _KeySet] = ExpiringLru(max_entries)
        self._inline: ExpiringLru[str, dict[str | None, PublicKey]] = ExpiringLru(max_entries)
        self._guard = threading.Lock()  # ExpiringLru is not thread-safe by itself

    def __len__(self) -> int:
        return len(self._sets) + len(self._inline)

    def inline(self, document: Mapping[str, Any]) -> dict[str | None, PublicKey]:
        """The keys of a JWKS given inline, parsed once per distinct document."""
        text = json.dumps(document, sort_keys=True)
        with self._guard:
            held = self._inline.get(text, time.monotonic())
        if held is not None:
            return held[0]
        keys = parse_jwks(document)
        with self._guard:
            self._inline.put(text, keys, time.monotonic() + TTL_CEILING)
        return keys

    def key(self, uri: str, kid: str | None) -> PublicKey:
        """The key ``kid`` of the set at ``uri``, fetching the set when needed and allowed."""
        entry = self._entry(uri)
        now = time.monotonic()
        found = find_key(entry.keys, kid)
        if found is not None and now - entry.good_at < STALE_MAX:
            if now >= entry.fresh_until:
                self._refresh_in_background(uri, entry)
            return found
        # Unknown kid, or nothing usable yet: fetch now, unless a fetch was made moments ago.
        if not entry.lock.acquire(timeout=FETCH_TIMEOUT + 1):
            raise JwksError("the identity provider's keys are being fetched; retry shortly")
        try:
            stale = time.monotonic() - entry.good_at >= STALE_MAX
            if find_key(entry.keys, kid) is None or stale:
                if time.monotonic() - entry.last_attempt < REFETCH_SECONDS:
                    raise JwksError(f"no signing key {kid!r} among the identity provider's keys")
                self._fetch(uri, entry)
        finally:
            entry.lock.release()
        found = find_key(entry.keys, kid)
        if found is None:
            raise JwksError(f"no signing key {kid!r} among the identity provider's keys")
        return found

    def _entry(self, uri: str) -> _KeySet:
        with self._guard:
            held = self._sets.get(uri, time.monotonic())
            if held is not None:
                return held[0]
            entry = _KeySet()
            self._sets.put(uri, entry, float("inf"))
            return entry

    def _refresh_in_background(self, uri: str, entry: _KeySet) -> None:
        if time.monotonic() - entry.last_attempt < REFETCH_SECONDS:
            return
        if not entry.lock.acquire(blocking=False):
            return  # another thread refreshes it already

        def refresh() -> None:
            try:
                self._fetch(uri, entry)
            except JwksError:
                pass  # the stale keys serve on; the next use tries again
            finally:
                entry.lock.release()

        threading.Thread(target=refresh, name="jwks-refresh", daemon=True).start()

    def _fetch(self, uri: str, entry: _KeySet) -> None:
        """Fetch the set into ``entry`` (its lock held); on failure keep what it had."""
        entry.last_attempt = time.monotonic()
        self.fetches += 1
        check_uri(uri, self.allow_private)  # again now: the host's addresses may have changed
        deadline = time.monotonic() + FETCH_TIMEOUT
        try:
            with (
                httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=False) as client,
                client.stream("GET", uri, headers={"Accept": "application/json"}) as response,
            ):
                if response.status_code != 200:
                    raise JwksError(f"the JWKS answered HTTP {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > FETCH_MAX_BYTES:
                        raise JwksError(f"the JWKS is larger than {FETCH_MAX_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise JwksError(f"the JWKS took longer than {FETCH_TIMEOUT:g} s")
                ttl = _max_age(response.headers.get("cache-control"), self.ttl_floor)
        except httpx.HTTPError as exc:
            raise JwksError(f"the JWKS could not be fetched: {type(exc).__name__}") from None
        try:
            keys = parse_jwks(json.loads(body))
        except (ValueError, RecursionError):
            raise JwksError("the JWKS is not JSON") from None
        now = time.monotonic()
        entry.keys, entry.good_at, entry.fresh_until = keys, now, now + ttl
