"""The SDK's incremental Server-Sent Events parser, and the live stream's in-memory filter."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trailkeep.log.query import Filters
from trailkeep.sdk.sse import EventParser, ServerEvent

STREAM = (
    b': ping\n\nid: 7\r\ndata: {"seq":7,"n":"b\xe2\x80\xa8c\xc2\x85d"}\r\n\r\n'
    b"event: dropped\rdata: x\rdata: y\r\rid: 8\n\n: ping\r\ndata:no space\n\n"
    b"data: cut short"
)
EVENTS = [
    ServerEvent("message", '{"seq":7,"n":"b\u2028c\u0085d"}', "7"),  # U+2028, U+0085: no ends
    ServerEvent("dropped", "x\ny", None),
    ServerEvent("message", "", "8"),  # an id alone: where a reconnection resumes
    ServerEvent("message", "no space", None),
]  # the unfinished last event is discarded, as WHATWG says


def parse(chunks: list[bytes]) -> tuple[list[ServerEvent], int]:
    """Every event of ``chunks`` fed one by one, and the comments seen."""
    parser = EventParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.end(), parser.comments


def test_events_join_data_skip_comments_and_keep_ids() -> None:
    assert parse([STREAM]) == (EVENTS, 2)


def test_a_cr_ending_a_chunk_pairs_with_an_lf_opening_the_next() -> None:
    chunks = [b"data: a\r", b"\n", b"\r", b"\ndata: b\r", b"", b"\r", b"\n\n"]
    # CR then LF across chunks is one line end; CR then CR is two, so `b` is dispatched once.
    assert parse(chunks)[0] == [
        ServerEvent("message", "a", None),
        ServerEvent("message", "b", None),
    ]


@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_chunk_boundaries_anywhere_give_the_same_events(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(STREAM)]
    assert parse([STREAM[a:b] for a, b in itertools.pairwise(points)]) == (EVENTS, 2)


@given(st.lists(st.integers(0, 40), max_size=8))
def test_byte_at_a_time_and_whole_agree(cuts: list[int]) -> None:
    one = b"data: \xe2\x80\xa8\r\n\r\nid: 1\r\rdata: z\n\n" * 2
    points = [0, *sorted(c % (len(one) + 1) for c in cuts), len(one)]
    split = [one[a:b] for a, b in itertools.pairwise(points)]
    assert parse(split) == parse([one]) == parse([one[i : i + 1] for i in range(len(one))])


@pytest.mark.parametrize(
    "chunks",
    [[b"x" * 6, b"x" * 6], [b"x" * 11 + b"\n"], [b"data: 1\n", b"x" * 5, b"x" * 7 + b"\n"]],
)
def test_a_line_longer_than_the_bound_is_refused_however_it_comes(
    monkeypatch: pytest.MonkeyPatch, chunks: list[bytes]
) -> None:
    monkeypatch.setattr("trailkeep.sdk.sse.LINE_MAX", 10)
    with pytest.raises(ValueError, match="longer than 10"):
        parse(chunks)


ENTRY = {
    "seq": 3, "id": "evt_1", "time": "2026-12-07T10:00:00.000000Z", "action": "user.role.change",
    "kind": "user", "actor": {"type": "user", "id": "u1"},
    "target": {"type": "user", "id": "u2"}, "changes": [{"path": "/role", "new": "x"}],
}  # fmt: skip
STUB = {"seq": 4, "id": "evt_2", "time": "2026-12-07T10:00:00.000000Z", "erased": True}
AT = datetime(2026, 12, 7, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("filters", "entry", "stub"),
    [
        (Filters(), True, True),
        (Filters(actions=("user.login", "user.role.change")), True, False),
        (Filters(actions=("user.login",)), False, False),
        (Filters(action_prefix="user."), True, False),
        (Filters(action_prefix="users"), False, False),
        (Filters(actor="u1"), True, False),
        (Filters(actor="u2"), False, False),
        (Filters(target_type="user", target_id="u2"), True, False),
        (Filters(target_id="u1"), False, False),
        (Filters(kind="admin"), False, False),
        (Filters(changed_path="/role"), True, False),
        (Filters(changed_path="/name"), False, False),
        (Filters(exclude_actions=("user.login",)), True, False),
        (Filters(exclude_actions=("user.login", "user.role.change")), False, False),
        (Filters(since=AT, until=AT), True, True),
        (Filters(since=datetime(2026, 12, 8, tzinfo=UTC)), False, False),
    ],
)
def test_matches_decides_as_a_list_does(filters: Filters, entry: bool, stub: bool) -> None:
    assert filters.matches(ENTRY) is entry
    assert filters.matches(STUB) is stub  # a stub matches a filter on time alone
