"""The live stream: an app's entries as Server-Sent Events, as they are appended (DESIGN §6)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from trailkeep.server.api.context import caller_of
from trailkeep.server.api.errors import Problem
from trailkeep.server.api.readers import FiltersDep, PersonDep, authorize_read, record_read
from trailkeep.server.api.schemas import READ_PROBLEMS, AppId, ProblemOut
from trailkeep.server.api.services import Services, services
from trailkeep.server.api.streams import Slot
from trailkeep.server.live import Subscriber

router = APIRouter(prefix="/v1/apps/{app_id}", tags=["reads"])

SEQ_MAX = 2**62  # past any log; a larger number is a client's mistake, answered with a 400


class LiveStream(EventSourceResponse):
    """An event stream that gives its slot back and unsubscribes when it ends, however."""

    def __init__(
        self, content: AsyncIterator[ServerSentEvent | bytes], slot: Slot, done: Any, **options: Any
    ) -> None:
        super().__init__(content, **options)
        self.slot = slot
        self.done = done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream until the client leaves, is dropped, or the server stops; then clean up."""
        state = {"started": False, "ended": False}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                state["ended"] = True
            await send(message)

        try:
            await super().__call__(scope, receive, sending)
            if state["started"] and not state["ended"]:
                # The server is stopping: end the body properly (the client sees a clean end
                # and reconnects) rather than leave the connection cut mid-response.
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.done()
            self.slot.release()


def _resume_point(after_seq: int | None, last_event_id: str | None) -> int | None:
    """The seq to resume after: ``Last-Event-ID`` (what a reconnecting client sends) first."""
    if last_event_id is not None:
        text = last_event_id.strip()
        digits = text.removeprefix("-") if text == "-1" else text  # -1: before the first
        if not digits.isdigit() or len(text) > 19 or int(text) > SEQ_MAX:
            raise Problem("invalid_request", "Last-Event-ID: expected a seq (digits)")
        return int(text)
    return after_seq


@router.get(
    "/events/stream",
    summary="Follow new entries live (Server-Sent Events; resumable)",
    responses={
        **READ_PROBLEMS,
        429: {"model": ProblemOut, "description": "rate_limited or too_many_streams"},
        200: {
            "description": "`text/event-stream`: one event per entry (`id:` its seq, `data:` the "
            "entry as a list returns it), a comment line as heartbeat, and `event: dropped` "
            '(`data: {"last_seq": N}`) before the end of a stream whose client fell behind.',
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
    },
    response_class=EventSourceResponse,
)
async def stream_events(
    request: Request,
    app_id: AppId,
    filters: FiltersDep,
    person: PersonDep,
    after_seq: Annotated[
        int | None,
        Query(
            ge=-1,
            le=SEQ_MAX,
            description="Send the stored entries after this seq first (-1: from the first), "
            "then new ones. Without it (or `Last-Event-ID`), only entries appended from now.",
        ),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="The last seq received; a reconnecting client resumes after it.",
            max_length=32,
        ),
    ] = None,
) -> EventSourceResponse:
    """Entries as they are appended, with the list's filters, resumable without gap or repeat.

    At most ``TRAILKEEP_STREAMS_PER_APP`` streams of an app and ``TRAILKEEP_STREAMS_PER_CLIENT``
    of a client are open on a node (429 ``too_many_streams``). A person's stream is recorded
    as one ``audit.read`` entry when it opens.
    """
    svc = services(request)
    after = _resume_point(after_seq, last_event_id)
    principal = await authorize_read(svc, request, app_id)
    slot = svc.live_slots.acquire(app_id, caller_of(svc, request).ip or "unknown")
    subscriber: Subscriber | None = None
    try:
        details: dict[str, Any] = {"route": "stream", "filters": filters.describe()}
        if after is not None:
            details["after_seq"] = after
        await record_read(svc, request, app_id, principal, "audit.read", details, person)
        if after is None:
            after = await svc.live.head(app_id)  # after the read's own record: not streamed
        subscriber = await svc.live.subscribe(app_id, filters, after)
    except BaseException:
        slot.release()
        raise
    return LiveStream(
        _events(svc, app_id, subscriber, after),
        slot,
        lambda: svc.live.unsubscribe(app_id, subscriber),
        ping=svc.settings.stream_heartbeat_seconds,
        # No send_timeout: a client that stops reading is cut by the protocol after
        # TRAILKEEP_SEND_STALL_SECONDS, as for every answer (api/protocol.py), and sse-starlette's
        # own timeout put a cancel scope around every send, a tenth of the loop at 20,000
        # events/s (measured, bench/report_notes.md).
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _events(
    svc: Services, app_id: str, subscriber: Subscriber, sent: int
) -> AsyncIterator[ServerSentEvent | bytes]:
    # `sent` starts at the resume point: a subscriber dropped before any entry resumes there.
    # Said first as an id without data (no event, per the SSE rules), so that a client that
    # reconnects before its first entry resumes from here too, not from "now".
    yield ServerSentEvent(id=str(sent), comment="resume point")
    # Each chunk is one or more events, encoded once by the feed for all its subscribers.
    async for last, chunk in svc.live.follow(app_id, subscriber, svc.settings.stream_max_seconds):
        yield chunk
        sent = last
    if not subscriber.dropped:
        return  # its time is up: the client reconnects (with Last-Event-ID), maybe elsewhere
    svc.metrics.stream_dropped.inc()
    yield ServerSentEvent(data=orjson.dumps({"last_seq": sent}).decode(), event="dropped")
