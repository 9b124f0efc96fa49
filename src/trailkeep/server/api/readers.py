"""What every read route shares: who may read, the read's record, and the filters' parsing.

Not a route module: reads, exports and the live stream import it, and route modules never
import each other (one way to parse filters, one way to record a read).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, Header, Query
from starlette.requests import Request

from trailkeep.log.changes import PATH_MAX, POINTER_PATTERN, PointerError, parse_pointer
from trailkeep.log.query import Filters, QueryError
from trailkeep.log.record import EntryError, EventWrite, canonical, parse_time, prepare
from trailkeep.server.api.context import admit_read, authenticate, caller_of, origin_of
from trailkeep.server.api.errors import Problem, unavailable
from trailkeep.server.api.services import Services
from trailkeep.server.auth import Principal
from trailkeep.server.ids import new_entry_id
from trailkeep.server.ingest.writer import WriterUnavailable

FILTERS_RECORD_MAX = 32_768
#: `since` and `until` as the schema states them: `parse_time` refuses a time without an offset.
TIME_SCHEMA: dict[str, Any] = {
    "format": "date-time",
    "pattern": r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
}


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


def person_reads(
    reader: Annotated[
        Literal["person"] | None,
        Header(
            alias="Trailkeep-Reader",
            description="`person`: a person reads through this credential (the console sends "
            "it with a key), so the read is recorded (`audit.read`, `audit.export`) as a "
            "session's always is, with the key as the actor. Without it a key's reads (warehouse "
            "jobs, tooling) are not recorded.",
        ),
    ] = None,
) -> bool:
    """Whether the request says a person reads (``Trailkeep-Reader: person``)."""
    return reader == "person"


PersonDep = Annotated[bool, Depends(person_reads)]


async def record_read(
    svc: Services, request: Request, app_id: str, principal: Principal, action: str,
    details: dict[str, Any], person: bool = False,
) -> None:  # fmt: skip
    """Append the ``audit.read``/``audit.export`` entry for a person's read, before answering.

    A session is a person; a key is one when the request says so (``person``, from the
    ``Trailkeep-Reader: person`` header that the console sends).
    """
    if not (principal.is_person or person):
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


def read_filters(
    action: Annotated[
        list[str] | None,
        Query(description="Exact action; repeat for any of several (OR), up to 500."),
    ] = None,
    action_prefix: Annotated[
        str | None, Query(description="Actions starting with this string.", max_length=128)
    ] = None,
    exclude_action: Annotated[
        list[str] | None,
        Query(
            description="Leave out entries with this exact action; repeat to leave out several, "
            "up to 500 (`exclude_action=audit.read` hides the log's own read records). Erased "
            "entries, which keep no action, match no filter on it.",
        ),
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
    for name, values in (("action", action), ("exclude_action", exclude_action)):
        if values and len(values) > 500:
            raise Problem("invalid_request", f"{name}: at most 500 values")
        if values and any(len(a) > 128 for a in values):
            raise Problem("invalid_request", f"{name}: at most 128 characters")
    try:
        filters = Filters(
            actions=tuple(action or ()), exclude_actions=tuple(exclude_action or ()),
            action_prefix=action_prefix, actor=actor,
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


FiltersDep = Annotated[Filters, Depends(read_filters)]
