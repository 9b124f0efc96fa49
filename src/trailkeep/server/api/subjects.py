"""Data subjects over HTTP: legal holds, and erasure requests with owners' approvals."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from trailkeep.log.record import EntryError
from trailkeep.server.api.administer import (
    approver_of,
    entries_json,
    governed,
    json_response,
    manager,
    small_body,
)
from trailkeep.server.api.context import caller_of, origin_of
from trailkeep.server.api.errors import Problem
from trailkeep.server.api.schemas import WRITE_PROBLEMS, AppId, ProblemOut, json_body
from trailkeep.server.api.services import services
from trailkeep.server.governance.subjects import parse_reason, parse_subject

router = APIRouter(prefix="/v1/apps/{app_id}", tags=["governance"])

HoldId = Annotated[str, Path(description="The hold's id (`hold_...`).", max_length=40)]
ErasureId = Annotated[str, Path(description="The erasure's id (`era_...`).", max_length=40)]
PROBLEMS_409: dict[int | str, dict[str, Any]] = {
    **WRITE_PROBLEMS,
    409: {"model": ProblemOut, "description": "held, already_done or already_approved"},
}


class HoldCreate(BaseModel):
    """``POST /v1/apps/{app}/holds``: whose entries to keep, and why."""

    model_config = ConfigDict(extra="forbid")

    subject: dict[str, Any] = Field(
        description='`{"actor_id": ...}`, `{"target": {"type": ..., "id": ...}}` or '
        '`{"all": true}` (the whole app).'
    )
    reason: str = Field(min_length=1, max_length=1000)


class ErasureCreate(BaseModel):
    """``POST /v1/apps/{app}/erasures``: whose entries to erase, and why."""

    model_config = ConfigDict(extra="forbid")

    subject: dict[str, Any] = Field(
        description='`{"actor_id": ...}`, `{"target": {"type": ..., "id": ...}}` or '
        '`{"seqs": [...]}` (up to 10,000).'
    )
    reason: str = Field(min_length=1, max_length=1000)


def _fields(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Problem("invalid_request", "body: expected a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Problem("invalid_request", f"{unknown[0]}: unknown field")
    return body


@router.get("/holds", summary="The app's legal holds", responses=WRITE_PROBLEMS)
async def list_holds(app_id: AppId, request: Request) -> Response:
    """Every hold of the app, released ones included."""
    svc = services(request)
    await manager(svc, request, app_id)
    found = await governed(svc, app_id, lambda: svc.subjects.holds(app_id), changes=False)
    return json_response({"holds": found})


@router.post(
    "/holds",
    summary="Place a legal hold (logged as `hold.place`)",
    status_code=201,
    responses=WRITE_PROBLEMS,
    openapi_extra={"requestBody": json_body(HoldCreate)},
)
async def place_hold(app_id: AppId, request: Request) -> Response:
    """Keep a subject's entries (or the whole app's) from retention and erasure."""
    svc = services(request)
    principal = await manager(svc, request, app_id)
    body = _fields(await small_body(svc, request), {"subject", "reason"})
    try:
        subject = parse_subject(body.get("subject"), whole_app=True)
        reason = parse_reason(body.get("reason"))
    except EntryError as exc:
        raise Problem(exc.code, exc.detail) from None
    origin = origin_of(caller_of(svc, request), principal)
    done = await governed(
        svc,
        app_id,
        lambda: svc.subjects.place_hold(app_id, subject, reason, principal.actor, origin),
    )
    return json_response({**done.result, "entries": entries_json(done.entries)}, 201)


@router.delete(
    "/holds/{hold_id}", summary="Release a legal hold (logged as `hold.release`)",
    responses=WRITE_PROBLEMS,
)  # fmt: skip
async def release_hold(app_id: AppId, hold_id: HoldId, request: Request) -> Response:
    """Release a hold; releasing it again changes and records nothing."""
    svc = services(request)
    principal = await manager(svc, request, app_id)
    origin = origin_of(caller_of(svc, request), principal)
    done = await governed(
        svc, app_id, lambda: svc.subjects.release_hold(app_id, hold_id, principal.actor, origin)
    )
    return json_response({**done.result, "entries": entries_json(done.entries)})


@router.get("/erasures", summary="The app's erasure requests", responses=WRITE_PROBLEMS)
async def list_erasures(app_id: AppId, request: Request) -> Response:
    """Every erasure request, newest first, with its status and approvals."""
    svc = services(request)
    await manager(svc, request, app_id)
    found = await governed(svc, app_id, lambda: svc.subjects.erasures(app_id), changes=False)
    return json_response({"erasures": found})


@router.get("/erasures/{erasure_id}", summary="One erasure request", responses=WRITE_PROBLEMS)
async def get_erasure(app_id: AppId, erasure_id: ErasureId, request: Request) -> Response:
    """An erasure request: its status, counts and approvals (never its subject)."""
    svc = services(request)
    await manager(svc, request, app_id)
    found = await governed(
        svc, app_id, lambda: svc.subjects.erasure(app_id, erasure_id), changes=False
    )
    return json_response(found)


@router.post(
    "/erasures",
    summary="Erase a data subject's entries (logged as `erasure.request`, `erasure.done`)",
    status_code=202,
    responses=PROBLEMS_409,
    openapi_extra={"requestBody": json_body(ErasureCreate)},
)
async def request_erasure(app_id: AppId, request: Request) -> Response:
    """Ask for an erasure; carried out at once when the requester's approval suffices."""
    svc = services(request)
    principal = await manager(svc, request, app_id)
    body = _fields(await small_body(svc, request), {"subject", "reason"})
    try:
        subject = parse_subject(body.get("subject"))
        reason = parse_reason(body.get("reason"))
    except EntryError as exc:
        raise Problem(exc.code, exc.detail) from None
    origin = origin_of(caller_of(svc, request), principal)
    approver = approver_of(principal)
    done = await governed(
        svc,
        app_id,
        lambda: svc.subjects.request(app_id, subject, reason, principal.actor, origin, approver),
    )
    return json_response({**done.result, "entries": entries_json(done.entries)}, 202)


@router.post(
    "/erasures/{erasure_id}/approve",
    summary="Approve an erasure as another owner (logged as `erasure.approve`)",
    responses=PROBLEMS_409,
)
async def approve_erasure(app_id: AppId, erasure_id: ErasureId, request: Request) -> Response:
    """Approve a pending erasure: an owner's session other than the approvals so far."""
    svc = services(request)
    principal = await manager(svc, request, app_id)
    approver = approver_of(principal)
    if approver is None:
        raise Problem(
            "forbidden", "an erasure is approved by an owner's session; keys never approve"
        )
    origin = origin_of(caller_of(svc, request), principal)
    done = await governed(
        svc,
        app_id,
        lambda: svc.subjects.approve(app_id, erasure_id, approver, principal.actor, origin),
    )
    return json_response({**done.result, "entries": entries_json(done.entries)})
