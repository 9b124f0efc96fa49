"""An append's rows (rows.py): numbered, stamped, hashed, and the tree grown, all without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.trees import root_of
from trailkeep.log import merkle
from trailkeep.log.record import Actor, EventWrite, Origin, PendingEntry, prepare
from trailkeep.server.ids import new_entry_id
from trailkeep.server.ingest.rows import Head, build
from trailkeep.server.store import EVENT_COLUMNS

APP = "app_rows"
MOMENT = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
SEQ, ENTRY = EVENT_COLUMNS.index("seq"), EVENT_COLUMNS.index("entry")


def _entries(count: int, tag: str) -> list[PendingEntry]:
    actor, origin = Actor(type="user", id="usr_1"), Origin(ip=None, user_agent="hypothesis")
    return [
        prepare(
            APP,
            new_entry_id(),
            EventWrite(action=f"t.{tag}{n}", metadata={"n": n}),
            actor,
            origin,
            10_240,
        )
        for n in range(count)
    ]


groups = st.lists(st.integers(0, 40), min_size=1, max_size=6)


@given(before=groups, after=groups)
@settings(max_examples=60, deadline=None)
def test_building_on_a_head_equals_building_the_whole(before: list[int], after: list[int]) -> None:
    # Two appends, the second built on the head the first leaves, make the same rows and tree
    # nodes as one append of both: the head is all a commit needs to know of the log before.
    first = [_entries(n, f"a{i}.") for i, n in enumerate(before)]
    second = [_entries(n, f"b{i}.") for i, n in enumerate(after)]
    whole = build(APP, first + second, 0, MOMENT, [], MOMENT)
    one = build(APP, first, 0, MOMENT, [], MOMENT)
    two = build(APP, second, one.head.size, MOMENT, one.head.frontier, MOMENT)
    assert one.rows + two.rows == whole.rows
    assert one.stored + two.stored == whole.stored
    assert dict(one.written) | dict(two.written) == dict(whole.written)
    assert two.head == whole.head


@given(sizes=groups, start=st.integers(0, 600))
@settings(max_examples=60, deadline=None)
def test_rows_number_stamp_and_hash_every_entry(sizes: list[int], start: int) -> None:
    leaves = [merkle.hash_leaf(bytes([n % 256])) for n in range(start)]
    frontier_ids = merkle.frontier(start)
    nodes = dict(merkle.append_leaves(0, [], leaves)[0])
    built = build(
        APP,
        [_entries(n, "x") for n in sizes],
        start,
        MOMENT,
        [nodes[i] for i in frontier_ids],
        MOMENT,
    )
    total = sum(sizes)
    assert [row[SEQ] for row in built.rows] == list(range(start, start + total))
    assert [len(group) for group in built.stored] == sizes
    stored = [entry for group in built.stored for entry in group]
    assert [row[ENTRY] for row in built.rows] == stored
    for entry in stored:
        document = orjson.loads(entry)
        assert document["time"] == "2026-11-24T03:00:00.000000Z"
        leaf = bytes.fromhex(document.pop("leaf_hash"))
        leaves.append(leaf)
    assert built.head == Head(start + total, built.head.frontier)
    assert merkle.root_from_frontier(built.head.frontier) == root_of(leaves)


def test_another_time_makes_other_rows() -> None:
    # The time is part of every entry's bytes, so of its leaf and of the tree.
    entries = [_entries(3, "t")]
    now = build(APP, entries, 0, MOMENT, [], MOMENT)
    moment = MOMENT + timedelta(microseconds=1)
    later = build(APP, entries, 0, moment, [], moment)
    assert now.stored != later.stored
    assert now.head.frontier != later.head.frontier
