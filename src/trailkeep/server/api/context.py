"""Per-request helpers: rate limits, bounded bodies, credentials and the request's origin."""

from __future__ import annotations

import asyncio
from typing import Final

from starlette.requests import ClientDisconnect, Request

from trailkeep.log.record import Origin
from trailkeep.server.api.errors import Problem
from trailkeep.server.api.network import client_ip, valid_ip
from trailkeep.server.api.services import Services
from trailkeep.server.auth import AuthError, Principal
from trailkeep.server.ingest.writer import Idempotency

SINGLE_BODY_MAX: Final = 1 << 20
BATCH_BODY_MAX: Final = 16 << 20
USER_AGENT_MAX: Final = 1024
IDEMPOTENCY_KEY_MAX: Final = 255


def request_ip(svc: Services, request: Request) -> str | None:
    """The client address as this node sees it (the peer, or a trusted proxy's word)."""
    peer = request.client.host if request.client else None
    return client_ip(peer, request.headers.get("x-forwarded-for"), svc.settings.trusted_proxies)


async def admit_write(svc: Services, request: Request) -> None:
    """Count a write against its client's limit; 429 once the limit is spent."""
    verdict = await svc.limiter.hit(request_ip(svc, request) or "unknown")
    request.state.extra_headers = verdict.headers
    if not verdict.allowed:
        raise Problem(
            "rate_limited",
            f"more than {svc.limiter.item.amount} writes per "
            f"{svc.limiter.item.get_expiry()} seconds from this address; retry later",
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
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


async def authenticate(svc: Services, app_id: str, request: Request) -> Principal:
    """Who is asking, for the app at ``app_id``; 401 or 404 when that cannot be answered."""
    principal = svc.auth.cached(app_id, request.headers)
    if principal is not None:
        return principal
    try:
        # A miss may query the database: keep that off the event loop.
        return await asyncio.to_thread(svc.auth.authenticate, app_id, request.headers)
    except AuthError as exc:
        raise Problem(exc.code, exc.detail) from None


def origin_of(svc: Services, request: Request, principal: Principal) -> Origin:
    """The entry's network context: the request's, or what a key forwarded for its user."""
    headers = request.headers
    agent = headers.get("user-agent")
    ip = request_ip(svc, request)
    forwarded_ip = headers.get("trailkeep-client-ip")
    forwarded_agent = headers.get("trailkeep-client-user-agent")
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


def idempotency_of(request: Request, principal: Principal, body: bytes) -> Idempotency | None:
    """The write's idempotency key, fingerprinted with who sent what to which route."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise Problem(
            "invalid_request",
            f"Idempotency-Key: 1 to {IDEMPOTENCY_KEY_MAX} printable characters",
        )
    return Idempotency.of(
        key,
        request.url.path.encode(),
        principal.actor.id.encode(),
        body,
    )
