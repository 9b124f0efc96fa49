"""Per-request helpers: who is calling, rate limits, bounded bodies, credentials, the origin.

A write reads its request once, in :func:`read_write`: the headers in one pass, the client's
address once, then the body. What follows (validation, the entry, the append) works from the
:class:`WriteRequest` it returns, never from the request again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from starlette.requests import ClientDisconnect, Request

from trailkeep.log.record import Origin
from trailkeep.server.api.errors import Problem
from trailkeep.server.api.network import client_ip, valid_ip
from trailkeep.server.api.ratelimit import RateLimiter
from trailkeep.server.api.schemas import APP_ID_MAX
from trailkeep.server.api.services import Services
from trailkeep.server.auth import AuthError, Principal
from trailkeep.server.ingest.writer import Idempotency

SINGLE_BODY_MAX: Final = 1 << 20
BATCH_BODY_MAX: Final = 16 << 20
USER_AGENT_MAX: Final = 1024
IDEMPOTENCY_KEY_MAX: Final = 255

#: The headers that carry a credential, as the authenticator reads them.
CREDENTIAL_HEADERS: Final = ("authorization", "trailkeep-session")

# The headers a caller is read from, by raw name. ASGI servers send names in lower case, and
# Starlette's own lookups compare them so, as this does.
_CALLER_HEADERS: Final = {
    name.encode("latin-1"): name
    for name in (
        *CREDENTIAL_HEADERS,
        "user-agent",
        "x-forwarded-for",
        "trailkeep-client-ip",
        "trailkeep-client-user-agent",
        "idempotency-key",
        "content-length",
    )
}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request, as its connection and headers say (nothing here is verified yet)."""

    ip: str | None  # the peer, or a trusted proxy's word for the client
    credentials: Mapping[str, str]  # the CREDENTIAL_HEADERS that were sent
    user_agent: str | None
    forwarded_ip: str | None  # Trailkeep-Client-IP: a key's word for its user's address
    forwarded_agent: str | None  # Trailkeep-Client-User-Agent, likewise
    idempotency_key: str | None
    content_length: str | None


def caller_of(svc: Services, request: Request) -> Caller:
    """Read the caller from a request: its headers in one pass, its address once."""
    found: dict[str, str] = {}
    for raw, value in request.scope["headers"]:
        name = _CALLER_HEADERS.get(raw)
        # A repeated header counts once, by its first value, as Starlette's lookups read it.
        if name is not None and name not in found:
            found[name] = value.decode("latin-1")
    peer = request.client.host if request.client else None
    return Caller(
        ip=client_ip(peer, found.get("x-forwarded-for"), svc.settings.trusted_proxies),
        credentials={name: found[name] for name in CREDENTIAL_HEADERS if name in found},
        user_agent=found.get("user-agent"),
        forwarded_ip=found.get("trailkeep-client-ip"),
        forwarded_agent=found.get("trailkeep-client-user-agent"),
        idempotency_key=found.get("idempotency-key"),
        content_length=found.get("content-length"),
    )


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """Everything a write takes from its request, read once and checked in the API's order."""

    app_id: str
    caller: Caller
    principal: Principal
    body: bytes
    origin: Origin  # the entries' network context
    idempotency: Idempotency | None
    limit_headers: Mapping[str, str]  # where the caller stands against its rate limit


async def read_write(svc: Services, request: Request, limit: int) -> WriteRequest:
    """Read a write's request: rate limit, credentials, ``events:write``, body, origin, key.

    Each check answers as it always has, and in the same order, so a request with several
    faults is refused for the first of them.
    """
    app_id: str = request.path_params["app_id"]
    if len(app_id) > APP_ID_MAX:
        raise Problem("invalid_request", f"app_id: at most {APP_ID_MAX} characters")
    caller = caller_of(svc, request)
    limit_headers = await _admit_write(svc, request, caller.ip)
    principal = await authenticate(svc, app_id, caller.credentials)
    if not principal.can_write():
        raise Problem("forbidden", "this credential may not write: it needs `events:write`")
    body = await read_body(request, caller.content_length, limit)
    origin = origin_of(caller, principal)
    idempotency = None
    if caller.idempotency_key is not None:
        idempotency = idempotency_of(caller.idempotency_key, request.url.path, principal, body)
    return WriteRequest(app_id, caller, principal, body, origin, idempotency, limit_headers)


async def _admit_write(svc: Services, request: Request, ip: str | None) -> Mapping[str, str]:
    """Count a write against its client's limit; 429 once the limit is spent."""
    return await _admit(svc.limiter, request, ip)


async def admit_read(svc: Services, request: Request) -> None:
    """Count a read against its client's read limit; 429 once the limit is spent."""
    await _admit(svc.read_limiter, request, caller_of(svc, request).ip)


async def _admit(limiter: RateLimiter, request: Request, ip: str | None) -> Mapping[str, str]:
    verdict = await limiter.hit(ip or "unknown")
    # Every answer to this request carries them, its errors too (see errors.py).
    request.state.extra_headers = verdict.headers
    if verdict.unavailable:
        raise Problem(
            "unavailable",
            f"the rate limit of {limiter.name} cannot be counted (its Redis is unreachable) "
            "and this node refuses them until it can; retry shortly",
        )
    if not verdict.allowed:
        raise Problem(
            "rate_limited",
            f"more than {limiter.item.amount} {limiter.name} per "
            f"{limiter.item.get_expiry()} seconds from this address; retry later",
        )
    return verdict.headers


async def read_body(request: Request, declared: str | None, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit``.

    ``declared`` is the request's Content-Length header, if it sent one.
    """
    if declared is not None:
        if not declared.isdigit():
            raise Problem("invalid_request", "Content-Length is not a number")
        if int(declared) > limit:
            raise Problem("payload_too_large", f"the body is over the {limit:,}-byte limit")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Problem("payload_too_large", f"the body is over the {limit:,}-byte limit")
            chunks.append(chunk)
    except ClientDisconnect:
        # Nobody is left to answer; this only keeps a routine hang-up out of the error log.
        raise Problem(
            "invalid_request", "the client closed the connection before sending the whole body"
        ) from None
    if not size:
        raise Problem("invalid_request", "the body is empty: send a JSON object")
    return b"".join(chunks)


async def authenticate(svc: Services, app_id: str, headers: Mapping[str, str]) -> Principal:
    """Who is asking, for the app at ``app_id``; 401 or 404 when that cannot be answered.

    ``headers`` holds at least the request's :data:`CREDENTIAL_HEADERS` (all its headers will do).
    """
    principal = svc.auth.cached(app_id, headers)
    if principal is not None:
        return principal
    try:
        # A miss may query the database: keep that off the event loop.
        return await asyncio.to_thread(svc.auth.authenticate, app_id, headers)
    except AuthError as exc:
        raise Problem(exc.code, exc.detail) from None


def origin_of(caller: Caller, principal: Principal) -> Origin:
    """The entry's network context: the caller's, or what a key forwarded for its user."""
    ip, agent = caller.ip, caller.user_agent
    forwarded_ip, forwarded_agent = caller.forwarded_ip, caller.forwarded_agent
    if forwarded_ip is None and forwarded_agent is None:
        # A key that forwards its user's session is recorded as having vouched for it.
        forwarded_by = principal.key_id if principal.is_person else None
        return Origin(
            ip=ip, user_agent=agent[:USER_AGENT_MAX] if agent else None, forwarded_by=forwarded_by
        )
    if principal.key_id is None:
        raise Problem(
            "invalid_request",
            "Trailkeep-Client-IP and Trailkeep-Client-User-Agent may only be sent with an API key",
        )
    if forwarded_ip is not None:
        if not valid_ip(forwarded_ip.strip()):
            raise Problem("invalid_request", "Trailkeep-Client-IP: not an IP address")
        ip = forwarded_ip.strip()
    if forwarded_agent is not None:
        agent = forwarded_agent
    return Origin(
        ip=ip, user_agent=agent[:USER_AGENT_MAX] if agent else None, forwarded_by=principal.key_id
    )


def idempotency_of(key: str, path: str, principal: Principal, body: bytes) -> Idempotency:
    """The write's idempotency key, fingerprinted with who sent what to which route."""
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise Problem(
            "invalid_request",
            f"Idempotency-Key: 1 to {IDEMPOTENCY_KEY_MAX} printable characters",
        )
    return Idempotency.of(key, path.encode(), principal.actor.id.encode(), body)
