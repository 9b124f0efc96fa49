"""Reads for owners, admins and auditors; each read by a person is itself recorded in the log."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from trailkeep.log.changes import PATH_MAX, POINTER_PATTERN, PointerError, parse_pointer
from trailkeep.log.query import Filters, GroupBy, QueryError, decode_cursor, encode_cursor
from trailkeep.log.record import EntryError, EventWrite, canonical, parse_time, prepare
from trailkeep.log.render import CSV_COLUMNS, csv_row
from trailkeep.server.api.context import admit_read, authenticate, caller_of, origin_of
from trailkeep.server.api.errors import Problem, unavailable
from trailkeep.server.api.schemas import (
    READ_PROBLEMS,
    AppId,
    EntryOut,
    PageOut,
    ProvenEntryOut,
    StatsOut,
)
from trailkeep.server.api.services import Services, services
from trailkeep.server.api.streams import PAGE_ENTRIES, SlotStream, pieces
from trailkeep.server.auth import Principal
from trailkeep.server.ids import new_entry_id
from trailkeep.server.ingest.writer import WriterUnavailable

FILTERS_RECORD_MAX = 32_768
#: `since` and `until` as the schema states them: `parse_time` refuses a time without an offset.
TIME_SCHEMA: dict[str, Any] = {
    "format": "date-time",
    "pattern": r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
}

router = APIRouter(prefix="/v1/apps/{app_id}", tags=["reads"])

EntryId = Annotated[str, Path(description="The entry's id (`evt_...`).", max_length=64)]


async def authorize_read(svc: Services, request: Request, app_id: str) -> Principal:
    """A reader: a key with ``events:read`` or an owner's, admin's or auditor's session.

    The read is counted against the client's read limit first (429 once it is spent), as a
    write is: a person's read appends an entry, so reads could otherwise flood the log.
    """
    await admit_read(svc, request)
    principal = await authenticate(svc, app_id, request.headers)
    if not principal.can_read():
        raise Problem(
            "forbidden",
            "reading the log needs a key with `events:read` or an owner's, admin's or "
            "auditor's session",
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
    try:
        pending = prepare(
            app_id,
            new_entry_id(),
            event,
            principal.actor,
            origin_of(caller_of(svc, request), principal),
            max(svc.settings.metadata_max_bytes, 65_536),
            kind="admin",  # reading the log is an administrator's act, whoever's session it is
        )
    except EntryError as exc:
        raise Problem("invalid_request", f"this read cannot be recorded: {exc.detail}") from None
    try:
        await svc.ingest.append(app_id, [pending])
    except WriterUnavailable as exc:
        raise unavailable(str(exc)) from None


@router.get(
    "/events/{entry_id}",
    summary="One entry (with `proof=true`: its inclusion proof and a signed checkpoint)",
    response_model=EntryOut | ProvenEntryOut,
    responses=READ_PROBLEMS,
)
async def get_event(
    request: Request,
    app_id: AppId,
    entry_id: EntryId,
    proof: Annotated[
        bool, Query(description="Wrap the entry with its proof against the latest checkpoint.")
    ] = False,
) -> Response:
    """One entry by id; with ``proof=true`` a response that is verifiable on its own."""
    svc = services(request)
    principal = await authorize_read(svc, request, app_id)
    entry = await asyncio.to_thread(svc.store.get_entry, app_id, entry_id)
    if entry is None:
        raise Problem("not_found", f"no entry {entry_id!r} in this app")
    await record_read(svc, request, app_id, principal, "audit.read", {"id": entry_id})
    if not proof:
        return Response(entry, media_type="application/json")
    seq = int(orjson.loads(entry)["seq"])
    # Newer than the last checkpoint: wait for the background signer rather than sign here.
    checkpoint = await svc.checkpointer.covering(app_id, seq + 1)
    if checkpoint is None:
        raise Problem(
            "unavailable",
            "no checkpoint covers this entry yet (one is signed within a second); retry shortly",
            {"Retry-After": "1"},
        )
    leaf, path = await asyncio.to_thread(svc.store.inclusion_proof, app_id, seq, checkpoint.size)
    proven = {"seq": seq, "tree_size": checkpoint.size, "leaf_hash": leaf.hex(),
              "path": [h.hex() for h in path]}  # fmt: skip
    body = b"".join((
        b'{"entry":', entry, b',"proof":', orjson.dumps(proven),
        b',"checkpoint":', orjson.dumps(checkpoint.note), b"}",
    ))  # fmt: skip
    return Response(body, media_type="application/json")


def _filters(
    action: Annotated[
        list[str] | None,
        Query(description="Exact action; repeat for any of several (OR), up to 500."),
    ] = None,
    action_prefix: Annotated[
        str | None, Query(description="Actions starting with this string.", max_length=128)
    ] = None,
    actor: Annotated[str | None, Query(description="Actor id.", max_length=256)] = None,
    target_type: Annotated[
        str | None,
        Query(
            description="Target type. With `target_id`, the pair names one target (as an entry "
            "holds both or neither); alone, every target of the type.",
            max_length=64,
        ),
    ] = None,
    target_id: Annotated[
        str | None,
        Query(
            description="Target id; give `target_type` with it to name one target (alone it "
            "matches that id under any type).",
            max_length=256,
        ),
    ] = None,
    kind: Annotated[
        Literal["admin", "user"] | None, Query(description="Administrator or user actions.")
    ] = None,
    since: Annotated[
        str | None,
        Query(
            description="Entries at or after this time: an RFC 3339 date-time with its offset "
            "(`Z` or `±hh:mm`), such as `2026-11-23T08:15:30Z`; at most `until`.",
            max_length=64,
            json_schema_extra=TIME_SCHEMA,
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(
            description="Entries at or before this time: an RFC 3339 date-time with its offset, "
            "as `since`; at least `since`.",
            max_length=64,
            json_schema_extra=TIME_SCHEMA,
        ),
    ] = None,
    changed_path: Annotated[
        str | None,
        Query(
            description="Entries whose `changes` name this field: an RFC 6901 JSON pointer such "
            "as `/role` (exact match; a nested field is `/address/city`).",
            max_length=PATH_MAX,
            # The schema's; the check is parse_pointer's, whose 400 says what is wrong.
            json_schema_extra={"pattern": POINTER_PATTERN},
        ),
    ] = None,
) -> Filters:
    """Read filters from the query string; 400 naming the parameter when one is bad."""
    times: dict[str, datetime | None] = {}
    for name, value in (("since", since), ("until", until)):
        try:
            times[name] = parse_time(value) if value is not None else None
        except ValueError as exc:
            raise Problem("invalid_request", f"{name}: {exc}") from None
    if changed_path is not None:
        try:
            parse_pointer(changed_path)
        except PointerError as exc:
            raise Problem("invalid_request", f"changed_path: {exc}") from None
    if action and len(action) > 500:
        raise Problem("invalid_request", "action: at most 500 values")
    if action and any(len(a) > 128 for a in action):
        raise Problem("invalid_request", "action: at most 128 characters")
    try:
        filters = Filters(
            actions=tuple(action or ()), action_prefix=action_prefix, actor=actor,
            target_type=target_type, target_id=target_id, kind=kind,
            since=times["since"], until=times["until"], changed_path=changed_path,
        )  # fmt: skip
    except QueryError as exc:
        raise Problem("invalid_request", str(exc)) from None
    # A person's read is recorded with its filters: refuse what could not be recorded whole.
    try:
        recorded = len(canonical(filters.describe()))
    except EntryError as exc:
        raise Problem("invalid_request", f"filters: {exc.detail}") from None
    if recorded > FILTERS_RECORD_MAX:
        raise Problem(
            "invalid_request",
            f"action: the filters are too large to record (at most {FILTERS_RECORD_MAX:,} "
            "bytes as JSON)",
        )
    return filters


FiltersDep = Annotated[Filters, Depends(_filters)]


def _app_secret(svc: Services, app_id: str) -> str:
    app = svc.auth.app(app_id)
    if app is None:
        raise Problem("not_found", "no such app")
    return app.session_secret


@router.get(
    "/events",
    summary="List entries, newest first",
    response_model=PageOut,
    responses=READ_PROBLEMS,
)
async def list_events(
    request: Request,
    app_id: AppId,
    filters: FiltersDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Entries per page.")] = 50,
    cursor: Annotated[
        str | None, Query(description="`next_cursor` of the previous page.", max_length=128)
    ] = None,
) -> Response:
    """A page of matching entries (keyset pagination on seq; never skips or repeats)."""
    svc = services(request)
    principal = await authorize_read(svc, request, app_id)
    secret = _app_secret(svc, app_id)
    try:
        before = decode_cursor(app_id, secret, cursor) if cursor is not None else None
    except QueryError as exc:
        raise Problem("invalid_request", str(exc)) from None
    rows = await asyncio.to_thread(svc.store.page, app_id, filters, before, limit + 1, True)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(app_id, secret, rows[-1][0]) if more else None
    await record_read(
        svc, request, app_id, principal, "audit.read",
        {"route": "list", "filters": filters.describe(), "count": len(rows)},
    )  # fmt: skip
    body = b"".join((
        b'{"data":[', b",".join(entry for _, entry in rows), b'],"next_cursor":',
        orjson.dumps(next_cursor), b"}",
    ))  # fmt: skip
    headers = {}
    if next_cursor is not None:
        url = request.url.include_query_params(cursor=next_cursor)
        headers["Link"] = f'<{url}>; rel="next"'
    return Response(body, headers=headers, media_type="application/json")


@router.get(
    "/stats",
    summary="Count entries by action, actor, target type or day",
    response_model=StatsOut,
    responses=READ_PROBLEMS,
)
async def stats(
    request: Request,
    app_id: AppId,
    filters: FiltersDep,
    group_by: Annotated[GroupBy, Query(description="How to group the counts.")] = "action",
) -> dict[str, Any]:
    """Counts of matching entries per group: largest first (``day``: in date order)."""
    svc = services(request)
    principal = await authorize_read(svc, request, app_id)
    groups = await asyncio.to_thread(svc.store.stats, app_id, filters, group_by)
    await record_read(
        svc, request, app_id, principal, "audit.read",
        {"route": "stats", "group_by": group_by, "filters": filters.describe()},
    )  # fmt: skip
    return {"group_by": group_by, "groups": [{"key": k, "count": n} for k, n in groups]}


@router.get(
    "/export",
    summary="Stream matching entries, oldest first (NDJSON or CSV)",
    responses={
        **READ_PROBLEMS,
        200: {
            "description": "The entries, oldest first: NDJSON as stored, or CSV (defused cells).",
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
    },
    response_class=StreamingResponse,
)
async def export(
    request: Request,
    app_id: AppId,
    filters: FiltersDep,
    format: Annotated[Literal["ndjson", "csv"], Query(description="Output format.")] = "ndjson",
) -> StreamingResponse:
    """Every matching entry as a stream, oldest first, never held in memory whole.

    At most ``TRAILKEEP_EXPORTS_PER_APP`` exports of an app and ``TRAILKEEP_EXPORTS_PER_CLIENT``
    of a client are open at once (429 ``too_many_exports`` beyond); each holds one page.
    """
    svc = services(request)
    principal = await authorize_read(svc, request, app_id)
    slot = svc.exports.acquire(app_id, caller_of(svc, request).ip or "unknown")
    try:
        await record_read(
            svc, request, app_id, principal, "audit.export",
            {"format": format, "filters": filters.describe()},
        )  # fmt: skip
    except BaseException:
        slot.release()
        raise

    async def chunks() -> AsyncIterator[bytes]:
        after: int | None = None
        if format == "csv":
            yield _csv_lines([list(CSV_COLUMNS)])
        while True:
            # The next page is read only once the last one was sent: a reader that stops
            # reading stops the stream here, holding one page at most.
            rows = await asyncio.to_thread(
                svc.store.page, app_id, filters, after, PAGE_ENTRIES, False
            )
            if not rows:
                return
            after = rows[-1][0]
            if format == "csv":
                page = _csv_lines([csv_row(entry) for _, entry in rows])
            else:
                page = b"\n".join(entry for _, entry in rows) + b"\n"
            del rows
            for piece in pieces(page):
                yield piece

    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    filename = f"{app_id}.{format}"
    return SlotStream(
        chunks(), slot, media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )  # fmt: skip


def _csv_lines(rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    # RFC 4180 line ends; with a bare "\n" terminator a lone "\r" in a field went unquoted.
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode()
