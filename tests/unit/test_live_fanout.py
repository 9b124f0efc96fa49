"""The live feed's fan-out to one subscriber: queueing, filters, the drop, and the chunks sent."""

from __future__ import annotations

import orjson
from sse_starlette import ServerSentEvent

from trailkeep.log.query import Filters
from trailkeep.server.live import SEND_BATCH, Subscriber, sse_event

ENTRIES = [
    orjson.dumps(
        {
            "seq": seq,
            "action": f"a.{seq % 2}",
            "actor": {"id": "u1"},
            "kind": "user",
            "metadata": {"note": "line\nbreak \u2028"},
        }
    )
    for seq in range(10)
]
EVENTS = [(seq, sse_event(seq, entry)) for seq, entry in enumerate(ENTRIES)]
PARSED = [orjson.loads(entry) for entry in ENTRIES]


def live(filters: Filters = Filters(), bound: int = 100, last: int = -1) -> Subscriber:
    """A subscriber that has caught up, after ``last``."""
    subscriber = Subscriber(filters, bound, last)
    subscriber.live = True
    return subscriber


def test_an_event_is_the_bytes_sse_starlette_made_of_it() -> None:
    for seq, entry in enumerate(ENTRIES):
        made = ServerSentEvent(data=entry.decode(), id=str(seq)).encode()
        assert sse_event(seq, entry) == made


def test_only_new_entries_are_queued_and_the_bytes_are_shared() -> None:
    subscriber = live(last=6)
    subscriber.offer(EVENTS, [])
    assert [seq for seq, _ in subscriber.pending] == [7, 8, 9]
    assert all(mine is EVENTS[seq][1] for seq, mine in subscriber.pending)
    assert subscriber.last == 9
    subscriber.offer(EVENTS, [])  # offered again: nothing new
    assert len(subscriber.pending) == 3


def test_a_subscriber_catching_up_is_passed_by() -> None:
    subscriber = Subscriber(Filters(), 100, -1)
    subscriber.offer(EVENTS, PARSED)
    assert not subscriber.pending
    assert subscriber.last == -1


def test_filters_are_applied_to_the_parsed_entries() -> None:
    subscriber = live(Filters(actions=("a.1",)))
    subscriber.offer(EVENTS, PARSED)
    assert [seq for seq, _ in subscriber.pending] == [1, 3, 5, 7, 9]


def test_a_subscriber_past_its_bound_is_dropped_and_holds_nothing() -> None:
    fits = live(bound=10)
    fits.offer(EVENTS, [])
    assert not fits.dropped
    assert len(fits.pending) == 10
    over = live(bound=9)
    over.offer(EVENTS[:5], [])
    over.offer(EVENTS[5:], [])
    assert over.dropped
    assert not over.pending
    over.offer(EVENTS, [])  # a dropped subscriber is offered nothing more
    assert not over.pending


def test_waiting_events_go_out_as_chunks_of_at_most_a_batch() -> None:
    many = [(seq, sse_event(seq, b"{}")) for seq in range(SEND_BATCH + 5)]
    subscriber = live(bound=1_000)
    subscriber.offer(many, [])
    last, chunk = subscriber.take()
    assert last == SEND_BATCH - 1
    assert chunk == b"".join(event for _, event in many[:SEND_BATCH])
    last, chunk = subscriber.take()
    assert last == SEND_BATCH + 4
    assert chunk == b"".join(event for _, event in many[SEND_BATCH:])
    assert not subscriber.pending
