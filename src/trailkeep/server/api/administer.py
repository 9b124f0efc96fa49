"""What the administering routes share: who may administer, small bodies, running a change."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response

from trailkeep.log.record import EntryError, parse_body
from trailkeep.server.api.context import authenticate, caller_of, read_body
from trailkeep.server.api.errors import Problem
from trailkeep.server.api.schemas import APP_ID_MAX
from trailkeep.server.api.services import Services
from trailkeep.server.auth import Principal
from trailkeep.server.governance.administer import Conflict, Forbidden

#: A governance body is small; anything larger is refused before it is read.
MANAGE_BODY_MAX = 65_536

T = TypeVar("T")


def json_response(value: Any, status: int = 200) -> Response:
    """A JSON answer."""
    return Response(orjson.dumps(value), status, media_type="application/json")


def entries_json(entries: tuple[bytes, ...] | list[bytes]) -> list[Any]:
    """The entries that record a change, as they were appended."""
    return [orjson.loads(entry) for entry in entries]


async def manager(svc: Services, request: Request, app_id: str) -> Principal:
    """An administrator of the app: a ``manage`` key or an owner's session; else 401/403."""
    if len(app_id) > APP_ID_MAX:
        raise Problem("invalid_request", f"app_id: at most {APP_ID_MAX} characters")
    principal = await authenticate(svc, app_id, request.headers)
    if not principal.can_manage():
        raise Problem(
            "forbidden", "managing the app needs a key with `manage` or an owner's session"
        )
    return principal


async def small_body(svc: Services, request: Request) -> Any:
    """The request's JSON body (64 KiB at most), counted against the client's write limit."""
    verdict = await svc.limiter.hit(caller_of(svc, request).ip or "unknown")
    request.state.extra_headers = verdict.headers
    if not verdict.allowed:
        raise Problem("rate_limited", "too many writes from this address; retry later")
    raw = await read_body(request, request.headers.get("content-length"), MANAGE_BODY_MAX)
    try:
        return parse_body(raw)
    except EntryError as exc:
        raise Problem(exc.code, exc.detail) from None


async def governed(svc: Services, app_id: str, job: Callable[[], T], *, changes: bool = True) -> T:
    """Run a governance step off the event loop, its refusals as problems.

    A step that appended entries (``changes``) makes the tree grow and may change credentials,
    so the checkpointer and this node's credential cache hear of it at once.
    """
    try:
        result = await asyncio.to_thread(job)
    except LookupError:
        raise Problem("not_found", "no such app, or nothing of that id in it") from None
    except (Forbidden, Conflict, EntryError) as exc:
        raise Problem(exc.code, exc.detail) from None
    if changes:
        svc.checkpointer.mark({app_id})
        svc.auth.forget(app_id)  # a revoked key or a changed origin counts at once here
    return result


def approver_of(principal: Principal) -> str | None:
    """Who approves, as erasures and retention changes count them: an owner's session (keys
    never approve)."""
    actor = principal.actor
    if actor.type == "user" and actor.role == "owner":
        return f"user:{actor.id}"
    return None
