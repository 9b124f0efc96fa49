"""Response shapes, for the OpenAPI document (handlers return the stored bytes as they are)."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

# The limit lives beside `new_app_id`; routes keep importing it from here.
from trailkeep.server.auth import APP_ID_MAX as APP_ID_MAX

#: Request-body models validated by hand, added to the OpenAPI components by ``create_app``.
BODY_SCHEMAS: dict[str, Any] = {}

#: The ``{app_id}`` path parameter every app route takes.
AppId = Annotated[str, Path(description="The app's id (`app_...`).", max_length=APP_ID_MAX)]


class ActorOut(BaseModel):
    """Who acted: a session's user, an API key, an operator (the CLI) or the system."""

    type: Literal["user", "api_key", "operator", "system"]
    id: str
    name: str | None = None
    role: str | None = None


class TargetOut(BaseModel):
    """The affected user or resource."""

    type: str
    id: str


class ContextOut(BaseModel):
    """Where the action came from."""

    ip: str | None
    user_agent: str | None
    project: str | None = None
    server: str | None = None
    request_id: str | None = None
    forwarded_by: str | None = Field(default=None, description="Key that forwarded ip/agent.")


class ChangeOut(BaseModel):
    """One changed field: an RFC 6901 pointer, its value before and after."""

    path: str
    old: Any = Field(default=None, description="Absent when the field was added.")
    new: Any = Field(default=None, description="Absent when the field was removed.")


class EntryOut(BaseModel):
    """One entry of the log, exactly as stored and hashed (plus its leaf hash)."""

    id: str
    app_id: str
    seq: int = Field(ge=0, description="Index in the app's log: 0-based, gapless.")
    time: str = Field(description="Receive time, RFC 3339 UTC with microseconds.")
    action: str
    kind: Literal["admin", "user"]
    actor: ActorOut
    target: TargetOut | None
    metadata: dict[str, Any]
    changes: list[ChangeOut] | None = Field(
        default=None, description="What changed (settings changes); absent when nothing did."
    )
    context: ContextOut
    leaf_hash: str = Field(description="hex SHA-256(0x00 || JCS(entry without leaf_hash))")


class BatchOut(BaseModel):
    """The entries a batch appended, in seq order."""

    events: list[EntryOut]


class PageOut(BaseModel):
    """One page of a list, newest first."""

    data: list[EntryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end.")


class GroupOut(BaseModel):
    """One group's count."""

    key: str | None
    count: int


class StatsOut(BaseModel):
    """Counts per group."""

    group_by: str
    groups: list[GroupOut]


class ErasedOut(BaseModel):
    """A page of the seqs erased since a log size (``GET .../erased``)."""

    size: int = Field(
        description="The log's size before these stubs were read: pass it as `since_size` next "
        "time to learn only what was erased since."
    )
    seq_ranges: list[Annotated[list[int], Field(min_length=2, max_length=2)]] = Field(
        description="Erased seqs as `[first, last]` runs, in the order they were erased."
    )
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end.")


class InclusionOut(BaseModel):
    """RFC 9162 §2.1.3 inclusion proof."""

    seq: int
    tree_size: int
    leaf_hash: str
    path: list[str] = Field(description="Hex hashes, leaf to root.")


class ConsistencyOut(BaseModel):
    """RFC 9162 §2.1.4 consistency proof."""

    model_config = ConfigDict(populate_by_name=True)

    from_size: int = Field(alias="from")
    to_size: int = Field(alias="to")
    path: list[str] = Field(description="Hex hashes.")


class ProvenEntryOut(BaseModel):
    """An entry with its inclusion proof and the signed checkpoint it verifies against."""

    entry: EntryOut
    proof: InclusionOut
    checkpoint: str = Field(description="The signed note (C2SP tlog-checkpoint).")


class ProblemOut(BaseModel):
    """An RFC 9457 problem document with Trailkeep's stable ``code``."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    instance: str


PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemOut, "description": text}
    for status, text in {
        400: "invalid_request or actor_not_allowed",
        401: "unauthenticated",
        403: "forbidden",
        404: "not_found",
        # Answered with Retry-After: the writer is restarting, or the database cannot take
        # the request just now (disk full, PostgreSQL restarting); nothing was acknowledged.
        503: "unavailable or storage_unavailable, with Retry-After",
    }.items()
}
_UNAVAILABLE: Final = {
    "model": ProblemOut,
    "description": "unavailable (with `Retry-After`): the writer is being replaced, or a proof "
    "waits for the next checkpoint",
}
#: What a read route may answer besides its result: reads have a rate limit of their own, and
#: reads by people are recorded (`audit.read`) through the writer before the answer.
READ_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **PROBLEMS,
    429: {"model": ProblemOut, "description": "rate_limited (an export: or too_many_exports)"},
    503: _UNAVAILABLE,
}
WRITE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **PROBLEMS,
    503: _UNAVAILABLE,
    409: {"model": ProblemOut, "description": "idempotency_conflict"},
    413: {"model": ProblemOut, "description": "payload_too_large"},
    429: {"model": ProblemOut, "description": "rate_limited"},
}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a route that validates ``model`` by hand."""
    # Bodies validated by hand (for exact errors) are not seen by FastAPI: document them
    # ourselves, with references that resolve in the components.
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    BODY_SCHEMAS.update(schema.pop("$defs", {}))
    BODY_SCHEMAS[model.__name__] = schema
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"required": True, "content": {"application/json": {"schema": ref}}}
