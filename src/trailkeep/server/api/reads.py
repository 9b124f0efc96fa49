"""Reads for owners, admins and auditors; each read by a person is itself recorded in the log."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from trailkeep.log import ocsf, seqs
from trailkeep.log.query import GroupBy, QueryError, decode_cursor, encode_cursor
from trailkeep.log.render import CSV_COLUMNS, csv_row
from trailkeep.server.api.context import caller_of
from trailkeep.server.api.errors import Problem
from trailkeep.server.api.readers import FiltersDep, PersonDep, authorize_read, record_read
from trailkeep.server.api.schemas import (
    READ_PROBLEMS,
    AppId,
    EntryOut,
    ErasedOut,
    PageOut,
    ProvenEntryOut,
    StatsOut,
)
from trailkeep.server.api.services import Services, services
from trailkeep.server.api.streams import PAGE_ENTRIES, SlotStream, pieces

#: The largest `after_seq`: one more must still fit PostgreSQL's bigint (the store reads seq > it).
AFTER_SEQ_MAX = 2**63 - 2

router = APIRouter(prefix="/v1/apps/{app_id}", tags=["reads"])

EntryId = Annotated[str, Path(description="The entry's id (`evt_...`).", max_length=64)]


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
    person: PersonDep,
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
    await record_read(svc, request, app_id, principal, "audit.read", {"id": entry_id}, person)
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
    person: PersonDep,
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
        {"route": "list", "filters": filters.describe(), "count": len(rows)}, person,
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
    person: PersonDep,
    group_by: Annotated[
        GroupBy,
        Query(
            description="How to group the counts: `day` keys are UTC dates (`2026-11-23`), "
            "`hour` keys the UTC hour's first instant (`2026-11-23T08:00:00Z`), both in time "
            "order; the others largest count first."
        ),
    ] = "action",
) -> dict[str, Any]:
    """Counts of matching entries per group: largest first (``day``, ``hour``: in time order)."""
    svc = services(request)
    principal = await authorize_read(svc, request, app_id)
    groups = await asyncio.to_thread(svc.store.stats, app_id, filters, group_by)
    await record_read(
        svc, request, app_id, principal, "audit.read",
        {"route": "stats", "group_by": group_by, "filters": filters.describe()}, person,
    )  # fmt: skip
    return {"group_by": group_by, "groups": [{"key": k, "count": n} for k, n in groups]}


@router.get(
    "/export",
    summary="Stream matching entries, oldest first (NDJSON, CSV or OCSF)",
    responses={
        **READ_PROBLEMS,
        200: {
            "description": "The entries, oldest first: NDJSON as stored, CSV (defused cells), "
            "or NDJSON of OCSF 1.x events (erased entries left out).",
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
    person: PersonDep,
    format: Annotated[
        Literal["ndjson", "csv", "ocsf"],
        Query(description="Output format; `ocsf` is NDJSON of OCSF 1.x events (docs/export.md)."),
    ] = "ndjson",
    after_seq: Annotated[
        int | None,
        Query(
            description="Resume: only entries with a larger seq (the last seq a previous run "
            "received), still in seq order and filtered.",
            ge=0,
            le=AFTER_SEQ_MAX,
        ),
    ] = None,
) -> StreamingResponse:
    """Every matching entry as a stream, oldest first, never held in memory whole.

    At most ``TRAILKEEP_EXPORTS_PER_APP`` exports of an app and ``TRAILKEEP_EXPORTS_PER_CLIENT``
    of a client are open at once (429 ``too_many_exports`` beyond); each holds one page.
    """
    svc = services(request)
    principal = await authorize_read(svc, request, app_id)
    slot = svc.exports.acquire(app_id, caller_of(svc, request).ip or "unknown")
    details: dict[str, Any] = {"format": format, "filters": filters.describe()}
    if after_seq is not None:
        details["after_seq"] = after_seq
    try:
        await record_read(svc, request, app_id, principal, "audit.export", details, person)
    except BaseException:
        slot.release()
        raise

    async def chunks() -> AsyncIterator[bytes]:
        after = after_seq
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
            elif format == "ocsf":
                page = ocsf.ndjson(entry for _, entry in rows)
            else:
                page = b"\n".join(entry for _, entry in rows) + b"\n"
            del rows
            for piece in pieces(page):
                yield piece

    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    filename = f"{app_id}.{'ocsf.ndjson' if format == 'ocsf' else format}"
    return SlotStream(
        chunks(), slot, media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )  # fmt: skip


#: An ``erased`` cursor: the (at_size, seq) of the last stub a page held.
_ERASED_CURSOR = re.compile(r"^(\d{1,19})\.(\d{1,19})$")


@router.get(
    "/erased",
    summary="The seqs erased since a log size, so that copies elsewhere can be erased too",
    response_model=ErasedOut,
    responses=READ_PROBLEMS,
)
async def erased(
    request: Request,
    app_id: AppId,
    person: PersonDep,
    since_size: Annotated[
        int,
        Query(
            description="The `size` an earlier call returned (0: every erased seq).",
            ge=0,
            le=AFTER_SEQ_MAX,
        ),
    ] = 0,
    below_seq: Annotated[
        int | None,
        Query(
            description="Only seqs below this one (the entries a copy holds).",
            ge=0,
            le=AFTER_SEQ_MAX,
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100_000, description="Stubs per page.")] = 10_000,
    cursor: Annotated[
        str | None, Query(description="`next_cursor` of the previous page.", max_length=48)
    ] = None,
) -> dict[str, Any]:
    """Entries erased (by retention or an erasure) since the log had ``since_size`` entries.

    An exporter keeps the returned ``size`` and asks from it next time: each call then returns
    only what was erased since, by seq run, with nothing missed (DESIGN §5).
    """
    svc = services(request)
    principal = await authorize_read(svc, request, app_id)
    after = None
    if cursor is not None:
        found = _ERASED_CURSOR.match(cursor)
        if found is None:
            raise Problem("invalid_request", "cursor: not one this route returned")
        after = (int(found[1]), int(found[2]))

    def read() -> tuple[int, list[tuple[int, int]]]:
        with svc.store.admin_view() as tx:
            return tx.erased_since(app_id, since_size, below_seq, after, limit + 1)

    size, rows = await asyncio.to_thread(read)
    more = len(rows) > limit
    rows = rows[:limit]
    await record_read(
        svc, request, app_id, principal, "audit.read",
        {"route": "erased", "since_size": since_size, "count": len(rows)}, person,
    )  # fmt: skip
    return {
        "size": size,
        "seq_ranges": seqs.runs(seq for _, seq in rows),
        "next_cursor": f"{rows[-1][0]}.{rows[-1][1]}" if more else None,
    }


def _csv_lines(rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    # RFC 4180 line ends; with a bare "\n" terminator a lone "\r" in a field went unquoted.
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode()
