"""Webhooks over HTTP (DESIGN §6): destinations made, listed, replayed and deleted, attempts."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from trailkeep.log.record import EntryError
from trailkeep.server.api.administer import (
    entries_json,
    governed,
    json_response,
    manager,
    small_body,
)
from trailkeep.server.api.context import caller_of, origin_of
from trailkeep.server.api.errors import Problem
from trailkeep.server.api.schemas import WRITE_PROBLEMS, AppId, json_body
from trailkeep.server.api.services import services
from trailkeep.server.governance.webhooks import (
    parse_filter,
    parse_format,
    parse_from_seq,
    parse_url,
)

router = APIRouter(prefix="/v1/apps/{app_id}/webhooks", tags=["webhooks"])

HookId = Annotated[str, Path(description="The destination's id (`wh_...`).", max_length=40)]


class WebhookCreate(BaseModel):
    """``POST /v1/apps/{app}/webhooks``: where to deliver, and which entries."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="An https URL on a public address.", max_length=2048)
    filter: dict[str, Any] | None = Field(
        default=None,
        description='The list\'s filters, e.g. `{"action_prefix": "user."}`: `action` (a list), '
        "`action_prefix`, `actor`, `target_type`, `target_id`, `kind`.",
    )
    format: str | None = Field(default=None, description="`trailkeep` (the default).")


class WebhookReplay(BaseModel):
    """``POST .../replay``: deliver again from this seq on."""

    model_config = ConfigDict(extra="forbid")

    from_seq: int = Field(ge=0)


def _fields(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Problem("invalid_request", "body: expected a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Problem("invalid_request", f"{unknown[0]}: unknown field")
    return body


@router.post(
    "", summary="Add a webhook destination (logged as `webhook.create`)", status_code=201,
    responses=WRITE_PROBLEMS, openapi_extra={"requestBody": json_body(WebhookCreate)},
)  # fmt: skip
async def create_webhook(app_id: AppId, request: Request) -> Response:
    """Deliver the app's entries to a URL; the answer holds the secret, shown this once."""
    svc = services(request)
    principal = await manager(svc, request, app_id)
    body = _fields(await small_body(svc, request), {"url", "filter", "format"})
    allow = svc.settings.webhook_allow_private
    try:
        filter_, format_ = parse_filter(body.get("filter")), parse_format(body.get("format"))
        url = await asyncio.to_thread(parse_url, body.get("url"), allow)
    except EntryError as exc:
        raise Problem(exc.code, exc.detail) from None
    origin = origin_of(caller_of(svc, request), principal)
    done = await governed(
        svc, app_id,
        lambda: svc.webhooks.create(app_id, url, filter_, format_, principal.actor, origin),
    )  # fmt: skip
    return json_response({**done.result, "entries": entries_json(done.entries)}, 201)


@router.get("", summary="The app's webhook destinations", responses=WRITE_PROBLEMS)
async def list_webhooks(app_id: AppId, request: Request) -> Response:
    """Every destination of the app, with its status and cursor (never its secret)."""
    svc = services(request)
    await manager(svc, request, app_id)
    found = await governed(svc, app_id, lambda: svc.webhooks.all(app_id), changes=False)
    return json_response({"webhooks": found})


@router.get("/{hook_id}", summary="One webhook destination", responses=WRITE_PROBLEMS)
async def get_webhook(app_id: AppId, hook_id: HookId, request: Request) -> Response:
    """Status (active or disabled, and why), cursor (the last seq delivered), last error."""
    svc = services(request)
    await manager(svc, request, app_id)
    found = await governed(svc, app_id, lambda: svc.webhooks.get(app_id, hook_id), changes=False)
    return json_response(found)


@router.get("/{hook_id}/deliveries", summary="Recent delivery attempts", responses=WRITE_PROBLEMS)
async def webhook_deliveries(app_id: AppId, hook_id: HookId, request: Request) -> Response:
    """The destination's recent attempts, newest first: seq range, status code, error, time."""
    svc = services(request)
    await manager(svc, request, app_id)
    found = await governed(
        svc, app_id, lambda: svc.webhooks.deliveries(app_id, hook_id), changes=False
    )
    return json_response({"deliveries": found})


@router.delete(
    "/{hook_id}", summary="Delete a webhook destination (logged as `webhook.delete`)",
    responses=WRITE_PROBLEMS,
)  # fmt: skip
async def delete_webhook(app_id: AppId, hook_id: HookId, request: Request) -> Response:
    """Stop delivering to the destination and forget it."""
    svc = services(request)
    principal = await manager(svc, request, app_id)
    origin = origin_of(caller_of(svc, request), principal)
    done = await governed(
        svc, app_id, lambda: svc.webhooks.delete(app_id, hook_id, principal.actor, origin)
    )
    return json_response({**done.result, "entries": entries_json(done.entries)})


@router.post(
    "/{hook_id}/replay", summary="Deliver again from a seq (logged as `webhook.replay`)",
    responses=WRITE_PROBLEMS, openapi_extra={"requestBody": json_body(WebhookReplay)},
)  # fmt: skip
async def replay_webhook(app_id: AppId, hook_id: HookId, request: Request) -> Response:
    """Move the destination's cursor back to just before ``from_seq``; re-enables it."""
    svc = services(request)
    principal = await manager(svc, request, app_id)
    body = _fields(await small_body(svc, request), {"from_seq"})
    try:
        from_seq = parse_from_seq(body.get("from_seq"))
    except EntryError as exc:
        raise Problem(exc.code, exc.detail) from None
    origin = origin_of(caller_of(svc, request), principal)
    done = await governed(
        svc, app_id,
        lambda: svc.webhooks.replay(app_id, hook_id, from_seq, principal.actor, origin),
    )  # fmt: skip
    return json_response({**done.result, "entries": entries_json(done.entries)})
