"""Administering an app over HTTP: its settings and its keys, each change logged in its log."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from trailkeep.log.record import EntryError, parse_time
from trailkeep.server.api.administer import (
    approver_of,
    governed,
    json_response,
    manager,
    small_body,
)
from trailkeep.server.api.context import caller_of, origin_of
from trailkeep.server.api.errors import Problem
from trailkeep.server.api.schemas import WRITE_PROBLEMS, AppId, json_body
from trailkeep.server.api.services import services
from trailkeep.server.governance import SettingsPatch, validate_patch
from trailkeep.server.governance.administer import Done, NewKey
from trailkeep.server.jwks import JwksError, check_uri
from trailkeep.server.store import KeyRecord

router = APIRouter(prefix="/v1/apps/{app_id}", tags=["manage"])

KeyId = Annotated[str, Path(description="The key's id (`key_...`).", max_length=64)]


class KeyCreate(BaseModel):
    """``POST /v1/apps/{app}/keys``: the new key's scopes (a subset of the creator's) and name."""

    model_config = ConfigDict(extra="forbid", strict=True)

    scopes: list[str] = Field(
        min_length=1, max_length=3, description="events:write, events:read, manage"
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)
    expires_at: str | None = Field(
        default=None, max_length=40,
        description="RFC 3339 moment after which the key is refused (absent: it never expires)",
    )  # fmt: skip


def _entry(done: Done) -> dict[str, Any]:
    # The entries that record the change, as they were appended (`entry`: the last, or null).
    entries = [orjson.loads(entry) for entry in done.entries]
    return {"entry": entries[-1] if entries else None, "entries": entries}


@router.get("", summary="The app's settings", responses=WRITE_PROBLEMS)
async def get_app(app_id: AppId, request: Request) -> Response:
    """The app's settings, for a `manage` key or an owner's session."""
    svc = services(request)
    await manager(svc, request, app_id)
    try:
        found = await asyncio.to_thread(svc.admin.settings, app_id)
    except LookupError:
        raise Problem("not_found", "no such app") from None
    return json_response({"app_id": app_id, **found})


@router.patch(
    "",
    summary="Change the app's settings (logged as `app.settings.change`)",
    responses=WRITE_PROBLEMS,
    openapi_extra={"requestBody": json_body(SettingsPatch)},
)
async def patch_app(app_id: AppId, request: Request) -> Response:
    """Change settings; the app's log records each change as `{path, old, new}`."""
    svc = services(request)
    principal = await manager(svc, request, app_id)
    try:
        values = validate_patch(await small_body(svc, request), app_id)
    except EntryError as exc:
        raise Problem(exc.code, exc.detail) from None
    uri = (values.get("session_issuer") or {}).get("jwks_uri")
    if uri is not None:
        try:
            # Resolving the host may wait on DNS: off the event loop.
            await asyncio.to_thread(check_uri, uri, svc.settings.jwks_allow_private)
        except JwksError as exc:
            raise Problem("invalid_request", f"session_issuer.jwks_uri: {exc}") from None
    origin = origin_of(caller_of(svc, request), principal)
    approver = approver_of(principal)
    done = await governed(
        svc,
        app_id,
        lambda: svc.admin.update_settings(
            app_id, values, principal.actor, origin, approver=approver
        ),
    )
    return json_response({"app_id": app_id, **done.result, **_entry(done)})


@router.get("/keys", summary="The app's API keys (never their secrets)", responses=WRITE_PROBLEMS)
async def list_keys(app_id: AppId, request: Request) -> Response:
    """Every key of the app, revoked ones included."""
    svc = services(request)
    await manager(svc, request, app_id)
    keys = await asyncio.to_thread(svc.admin.keys, app_id)
    return json_response({"keys": [key.public() for key in keys]})


@router.post(
    "/keys",
    summary="Create an API key (shown once; logged as `key.create`)",
    status_code=201,
    responses=WRITE_PROBLEMS,
    openapi_extra={"requestBody": json_body(KeyCreate)},
)
async def create_key(app_id: AppId, request: Request) -> Response:
    """Create a key with some of the creator's scopes; the key is in this answer only."""
    svc = services(request)
    principal = await manager(svc, request, app_id)
    try:
        wanted = KeyCreate.model_validate(await small_body(svc, request))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise Problem("invalid_request", f"{where}: {first['msg']}") from None
    try:
        expires_at = None if wanted.expires_at is None else parse_time(wanted.expires_at)
    except ValueError as exc:
        raise Problem("invalid_request", f"expires_at: {exc}") from None
    origin = origin_of(caller_of(svc, request), principal)
    # A key lends only what it holds; an owner's session holds every scope.
    held = principal.scopes if principal.key_id is not None else None
    done = await governed(
        svc,
        app_id,
        lambda: svc.admin.create_key(
            app_id, wanted.scopes, wanted.name, principal.actor, origin, held=held,
            expires_at=expires_at,
        ),
    )  # fmt: skip
    made: NewKey = done.result
    body = {
        "key_id": made.key_id,
        "key": made.key,
        "scopes": made.scopes,
        "name": made.name,
        "expires_at": None if made.expires_at is None else made.expires_at.isoformat(),
    }
    return json_response({**body, **_entry(done)}, 201)


@router.delete(
    "/keys/{key_id}", summary="Revoke an API key (logged as `key.revoke`)", responses=WRITE_PROBLEMS
)
async def revoke_key(app_id: AppId, key_id: KeyId, request: Request) -> Response:
    """Revoke a key: servers refuse it at once on this node, within seconds on the others."""
    svc = services(request)
    principal = await manager(svc, request, app_id)
    origin = origin_of(caller_of(svc, request), principal)
    done = await governed(
        svc, app_id, lambda: svc.admin.revoke_key(app_id, key_id, principal.actor, origin)
    )
    revoked: KeyRecord = done.result
    return json_response({**revoked.public(), "revoked": True, **_entry(done)})


@router.post(
    "/retention-change/approve",
    summary="Approve the shorter retention that waits (logged as `retention.change.approve`)",
    responses=WRITE_PROBLEMS,
)
async def approve_retention(app_id: AppId, request: Request) -> Response:
    """Approve, as another owner, the shorter retention that waits for its notice period."""
    svc = services(request)
    principal = await manager(svc, request, app_id)
    approver = approver_of(principal)
    if approver is None:
        raise Problem("forbidden", "an owner's session approves; keys never approve")
    origin = origin_of(caller_of(svc, request), principal)
    done = await governed(
        svc, app_id, lambda: svc.admin.approve_retention(app_id, approver, principal.actor, origin)
    )
    return json_response({**done.result, **_entry(done)})


@router.delete(
    "/retention-change",
    summary="Cancel the shorter retention that waits (logged as `retention.change.cancel`)",
    responses=WRITE_PROBLEMS,
)
async def cancel_retention(app_id: AppId, request: Request) -> Response:
    """Cancel the shorter retention that waits; the app keeps its retention."""
    svc = services(request)
    principal = await manager(svc, request, app_id)
    origin = origin_of(caller_of(svc, request), principal)
    done = await governed(
        svc, app_id, lambda: svc.admin.cancel_retention(app_id, principal.actor, origin)
    )
    return json_response({**done.result, **_entry(done)})


@router.post(
    "/session-secret/rotate",
    summary="Issue a new session secret beside the old (shown once; logged)",
    responses=WRITE_PROBLEMS,
)
async def rotate_session_secret(app_id: AppId, request: Request) -> Response:
    """A new session secret: sessions signed with it or the old one verify until the old retires."""
    svc = services(request)
    principal = await manager(svc, request, app_id)
    origin = origin_of(caller_of(svc, request), principal)
    done = await governed(
        svc, app_id, lambda: svc.admin.rotate_session_secret(app_id, principal.actor, origin)
    )
    return json_response({"app_id": app_id, "session_secret": done.result, **_entry(done)})


@router.post(
    "/session-secret/retire",
    summary="Retire the old session secret: only the new one verifies (logged)",
    responses=WRITE_PROBLEMS,
)
async def retire_session_secret(app_id: AppId, request: Request) -> Response:
    """Retire the old session secret, once every signer uses the new one."""
    svc = services(request)
    principal = await manager(svc, request, app_id)
    origin = origin_of(caller_of(svc, request), principal)
    done = await governed(
        svc, app_id, lambda: svc.admin.retire_session_secret(app_id, principal.actor, origin)
    )
    return json_response({"app_id": app_id, "retired": True, **_entry(done)})
