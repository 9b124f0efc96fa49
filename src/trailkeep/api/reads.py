"""Reads for owners and admins; every read a person makes is itself recorded in the log."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path
from starlette.requests import Request
from starlette.responses import Response

from trailkeep.api.context import authenticate, origin_of
from trailkeep.api.errors import Problem
from trailkeep.api.events import AppId
from trailkeep.api.schemas import PROBLEMS, EntryOut
from trailkeep.api.services import Services, services
from trailkeep.auth import Principal
from trailkeep.model import EventWrite, prepare

router = APIRouter(prefix="/v1/apps/{app_id}", tags=["reads"])

EntryId = Annotated[str, Path(description="The entry's id (`evt_...`).", max_length=64)]


async def authorize_read(svc: Services, request: Request, app_id: str) -> Principal:
    """A reader: a key with ``events:read`` or an owner's or admin's session; else 401/403."""
    principal = await authenticate(svc, app_id, request)
    if not principal.can_read():
        raise Problem(
            "forbidden",
            "reading the log needs a key with `events:read` or an owner's or admin's session",
        )
    return principal


async def record_read(
    svc: Services, request: Request, app_id: str, principal: Principal, action: str,
    details: dict[str, Any],
) -> None:  # fmt: skip
    """Append the ``audit.read``/``audit.export`` entry for a person's read, before answering."""
    if not principal.is_person:
        return  # keys (warehouse jobs, tooling) read unrecorded, so they do not flood the log
    event = EventWrite(action=action, metadata=details)
    pending = prepare(
        app_id,
        event,
        principal.actor,
        origin_of(svc, request, principal),
        max(svc.settings.metadata_max_bytes, 65_536),
    )
    await svc.ingest.append(app_id, [pending])


@router.get(
    "/events/{entry_id}",
    summary="One entry",
    response_model=EntryOut,
    responses=PROBLEMS,
)
async def get_event(request: Request, app_id: AppId, entry_id: EntryId) -> Response:
    """One entry by id."""
    svc = services(request)
    principal = await authorize_read(svc, request, app_id)
    entry = await asyncio.to_thread(svc.store.get_entry, app_id, entry_id)
    if entry is None:
        raise Problem("not_found", f"no entry {entry_id!r} in this app")
    await record_read(svc, request, app_id, principal, "audit.read", {"id": entry_id})
    return Response(entry, media_type="application/json")
