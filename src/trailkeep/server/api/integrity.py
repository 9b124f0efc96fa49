"""The verifiable log over HTTP: signed checkpoints, inclusion and consistency proofs."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from trailkeep.server.api.context import admit_read, authenticate
from trailkeep.server.api.errors import Problem
from trailkeep.server.api.schemas import READ_PROBLEMS, AppId, ConsistencyOut, InclusionOut
from trailkeep.server.api.services import Services, services

router = APIRouter(tags=["integrity"])
app_router = APIRouter(prefix="/v1/apps/{app_id}", tags=["integrity"])


@router.get(
    "/v1/checkpoint-key",
    summary="The note verifier key that signs checkpoints",
    response_class=PlainTextResponse,
)
async def checkpoint_key(request: Request) -> PlainTextResponse:
    """`<name>+<hex key id>+<base64(0x01 || Ed25519 public key)>`, as Go's sumdb/note reads it."""
    # Public, and the same for every app: any page may read it (the embedded console pins it
    # at start-up, from the host app's origin), as any page may load the SDK.
    return PlainTextResponse(
        services(request).checkpointer.signer.verifier_key() + "\n",
        headers={"Access-Control-Allow-Origin": "*"},
    )


@app_router.get(
    "/checkpoint",
    summary="The latest signed checkpoint (C2SP tlog-checkpoint in a signed note)",
    response_class=PlainTextResponse,
    responses=READ_PROBLEMS,
)
async def checkpoint(request: Request, app_id: AppId) -> PlainTextResponse:
    """Origin, tree size and root hash, signed with Ed25519; any credential of the app reads it."""
    svc = services(request)
    await admit_read(svc, request)
    await authenticate(svc, app_id, request.headers)
    record = await asyncio.to_thread(svc.checkpointer.latest, app_id)
    return PlainTextResponse(record.note, headers={"Cache-Control": "no-cache"})


async def _checked_size(svc: Services, app_id: str, size: int, name: str) -> None:
    signed = (await asyncio.to_thread(svc.checkpointer.latest, app_id)).size
    if size > signed:
        raise Problem(
            "invalid_request", f"{name}: {size} is beyond the latest checkpoint's size {signed}"
        )


@app_router.get(
    "/proofs/inclusion",
    summary="RFC 9162 inclusion proof of one entry",
    response_model=InclusionOut,
    responses=READ_PROBLEMS,
)
async def inclusion_proof(
    request: Request,
    app_id: AppId,
    seq: Annotated[
        int, Query(ge=0, description="The entry's seq; below `tree_size` (`seq < tree_size`).")
    ],
    tree_size: Annotated[
        int,
        Query(
            ge=1,
            description="A tree size above `seq`, at most the latest checkpoint's size.",
        ),
    ],
) -> dict[str, Any]:
    """The audit path of leaf ``seq`` in the tree of ``tree_size`` entries."""
    svc = services(request)
    await admit_read(svc, request)
    await authenticate(svc, app_id, request.headers)
    if seq >= tree_size:
        raise Problem("invalid_request", f"seq: must be below tree_size ({tree_size})")
    await _checked_size(svc, app_id, tree_size, "tree_size")
    leaf, path = await asyncio.to_thread(svc.store.inclusion_proof, app_id, seq, tree_size)
    return {"seq": seq, "tree_size": tree_size, "leaf_hash": leaf.hex(),
            "path": [h.hex() for h in path]}  # fmt: skip


@app_router.get(
    "/proofs/consistency",
    summary="RFC 9162 consistency proof between two tree sizes",
    response_model=ConsistencyOut,
    responses=READ_PROBLEMS,
)
async def consistency_proof(
    request: Request,
    app_id: AppId,
    from_size: Annotated[
        int, Query(alias="from", ge=1, description="The older tree size; at most `to`.")
    ],
    to_size: Annotated[
        int,
        Query(
            alias="to",
            ge=1,
            description="The newer tree size: at least `from`, at most the latest checkpoint's "
            "size.",
        ),
    ],
) -> Response:
    """Proof that the tree of ``from`` entries is a prefix of the tree of ``to`` entries."""
    svc = services(request)
    await admit_read(svc, request)
    await authenticate(svc, app_id, request.headers)
    if from_size > to_size:
        raise Problem("invalid_request", "from: must not exceed `to`")
    await _checked_size(svc, app_id, to_size, "to")

    path = await asyncio.to_thread(svc.store.consistency_proof, app_id, from_size, to_size)
    return Response(
        ConsistencyOut.model_validate(
            {"from": from_size, "to": to_size, "path": [h.hex() for h in path]}
        ).model_dump_json(by_alias=True),
        media_type="application/json",
    )
