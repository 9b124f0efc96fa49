"""Writes: append one entry or a batch; read one entry back. No route updates or deletes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from trailkeep.log.record import (
    BatchWrite,
    EntryError,
    EventWrite,
    parse_body,
    prepare,
    validate_batch,
    validate_write,
)
from trailkeep.server.api.context import (
    BATCH_BODY_MAX,
    SINGLE_BODY_MAX,
    WriteRequest,
    read_write,
)
from trailkeep.server.api.errors import Problem, unavailable
from trailkeep.server.api.schemas import (
    APP_ID_MAX,
    BODY_SCHEMAS,
    WRITE_PROBLEMS,
    BatchOut,
    EntryOut,
    json_body,
)
from trailkeep.server.api.services import Services, services
from trailkeep.server.ids import new_entry_id
from trailkeep.server.ingest.writer import Appended, IdempotencyConflict, WriterUnavailable

router = APIRouter(prefix="/v1/apps/{app_id}", tags=["events"])


# The write routes read their path parameter and headers themselves (see api/fastpath.py),
# so they are documented here instead of declared in the signature.
_WRITE_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "app_id",
        "in": "path",
        "required": True,
        "description": "The app's id (`app_...`).",
        "schema": {"type": "string", "maxLength": APP_ID_MAX},
    },
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "A retry with the same key and body returns the original; another body: "
        "409.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    },
]


def _write_openapi(model: type[EventWrite] | type[BatchWrite]) -> dict[str, Any]:
    body = json_body(model)
    for written in BODY_SCHEMAS.values():
        if {"target_type", "target_id"} <= set(written.get("properties", {})):
            # validate_write's rule, as JSON Schema says it: an entry has both or neither.
            # And `before` comes with `after`.
            written["dependentRequired"] = {
                "target_type": ["target_id"], "target_id": ["target_type"],
                "before": ["after"], "after": ["before"],
            }  # fmt: skip
    return {"parameters": _WRITE_PARAMETERS, "requestBody": body}


async def _append(svc: Services, write: WriteRequest, batch: bool) -> Appended:
    # The body becomes entries, and the entries are appended: nothing here reads the request.
    try:
        body = parse_body(write.body)
        events = (
            validate_batch(body, svc.settings.max_batch_entries)
            if batch
            else [validate_write(body)]
        )
    except EntryError as exc:
        raise Problem(exc.code, exc.detail) from None
    app_id, actor, origin = write.app_id, write.principal.actor, write.origin
    max_bytes = svc.settings.metadata_max_bytes
    pending = []
    for i, event in enumerate(events):
        try:
            pending.append(prepare(app_id, new_entry_id(), event, actor, origin, max_bytes))
        except EntryError as exc:
            where = f"events[{i}]." if batch else ""
            raise Problem(exc.code, where + exc.detail) from None
    try:
        return await svc.ingest.append(app_id, pending, write.idempotency)
    except IdempotencyConflict:
        raise Problem(
            "idempotency_conflict",
            "this Idempotency-Key was already used with a different request",
        ) from None
    except WriterUnavailable as exc:
        raise unavailable(str(exc)) from None


def _headers(write: WriteRequest, appended: Appended) -> dict[str, str]:
    headers = dict(write.limit_headers)
    if appended.replayed:
        headers["Idempotent-Replayed"] = "true"
    return headers


@router.post(
    "/events",
    status_code=201,
    summary="Append one entry",
    response_model=EntryOut,
    responses=WRITE_PROBLEMS,
    openapi_extra=_write_openapi(EventWrite),
)
async def append_event(request: Request) -> Response:
    """Append one entry; the actor, time, IP and user agent are the server's to set."""
    svc = services(request)
    write = await read_write(svc, request, SINGLE_BODY_MAX)
    appended = await _append(svc, write, batch=False)
    return Response(
        appended.entries[0], 201, headers=_headers(write, appended), media_type="application/json"
    )


@router.post(
    "/events/batch",
    status_code=201,
    summary="Append up to 1,000 entries, all or none",
    response_model=BatchOut,
    responses=WRITE_PROBLEMS,
    openapi_extra=_write_openapi(BatchWrite),
)
async def append_batch(request: Request) -> Response:
    """Append a batch in one transaction: every entry or none of them."""
    svc = services(request)
    write = await read_write(svc, request, BATCH_BODY_MAX)
    appended = await _append(svc, write, batch=True)
    body = b'{"events":[' + b",".join(appended.entries) + b"]}"
    return Response(body, 201, headers=_headers(write, appended), media_type="application/json")
