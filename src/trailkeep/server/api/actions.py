"""The app's known actions, for completing a search (the console's search box, anyone's tool).

Answered from the action index by a skip-scan, never by reading the log: the cost is one index
seek per action returned, whatever the number of entries.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.requests import Request

from trailkeep.server.api.readers import PersonDep, authorize_read, record_read
from trailkeep.server.api.schemas import READ_PROBLEMS, AppId
from trailkeep.server.api.services import services

router = APIRouter(prefix="/v1/apps/{app_id}", tags=["reads"])


class ActionsOut(BaseModel):
    """A page of the app's distinct actions, in code point order."""

    data: list[str] = Field(description="Distinct actions that entries of the app hold.")
    next_after: str | None = Field(
        description="Pass as `after` for the next page; null on the last page."
    )


@router.get(
    "/actions",
    summary="The app's distinct actions (for completing a search), in order",
    response_model=ActionsOut,
    responses=READ_PROBLEMS,
)
async def known_actions(
    request: Request,
    app_id: AppId,
    person: PersonDep,
    prefix: Annotated[
        str, Query(description="Only actions starting with this (case-sensitive).", max_length=128)
    ] = "",
    after: Annotated[
        str | None,
        Query(description="`next_after` of the previous page: actions after it.", max_length=128),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Actions per page.")] = 100,
) -> dict[str, Any]:
    """Distinct actions of the app's entries (erased entries keep none), from its index.

    Fast at any log size: one index seek per action returned. A person's call is recorded as
    an ``audit.read`` like every read, so the console asks once per sign-in, not per keystroke.
    """
    svc = services(request)
    principal = await authorize_read(svc, request, app_id)
    found = await asyncio.to_thread(svc.store.actions, app_id, prefix, after, limit + 1)
    page = found[:limit]
    await record_read(
        svc, request, app_id, principal, "audit.read",
        {"route": "actions", "prefix": prefix, "count": len(page)}, person,
    )  # fmt: skip
    return {"data": page, "next_after": page[-1] if len(found) > limit else None}
