"""Spans checked apart fold into the root of the whole run, through the checkpoint's head."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.trees import root_of
from tests.unit.test_verify import APP, export, reserialized
from trailkeep.log import merkle
from trailkeep.log.notes import Checkpoint
from trailkeep.log.verify import VerifyError, check_span, fold, spans, verify_entries

LINES, _ = export([{"n": n} for n in range(70)])
LEAVES = [bytes.fromhex(line[-66:-2].decode()) for line in LINES]


@settings(max_examples=150)
@given(
    count=st.integers(0, 70),
    first=st.integers(0, 20),
    data=st.data(),
)
def test_spans_fold_to_the_root_of_one_pass(count: int, first: int, data: st.DataObject) -> None:
    first = min(first, count)
    size = data.draw(st.integers(first, count), label="checkpoint size")
    cuts = sorted(data.draw(st.sets(st.integers(first, count)), label="cuts"))
    left = _frontier(first)
    checkpoint = Checkpoint(f"trailkeep.local/{APP}", size, root_of(LEAVES[:size]))
    # Entries past the checkpoint are allowed only when it is reached (verify --entries).
    bounds = [first, *cuts, count]
    spans = [check_span(LINES[a:b], a, app_id=APP, cuts=(size,)) for a, b in pairwise(bounds)]
    folded = fold(spans, checkpoint, first=first, left=left)
    whole = verify_entries(LINES[first:count], checkpoint, app_id=APP, first=first, left=left)
    assert folded == whole
    assert folded.root == checkpoint.root
    assert folded.beyond_checkpoint == count - size
    assert sum(s.count for s in spans) == count - first


def _frontier(size: int) -> list[bytes]:
    builder = merkle.TreeBuilder()
    for leaf in LEAVES[:size]:
        builder.append(leaf)
    return builder.frontier()


def test_a_gap_between_spans_is_named() -> None:
    checkpoint = Checkpoint(f"trailkeep.local/{APP}", 10, root_of(LEAVES[:10]))
    spans = [check_span(LINES[:4], 0, app_id=APP), check_span(LINES[5:10], 5, app_id=APP)]
    with pytest.raises(VerifyError) as failed:
        fold(spans, checkpoint)
    assert (failed.value.seq, failed.value.reason) == (4, "missing")


def test_only_entries_not_in_the_servers_form_are_marked_parsed() -> None:
    lines = list(LINES[:6])
    lines[2], lines[5] = reserialized(lines[2]), reserialized(lines[5])
    span = check_span(lines, 0, app_id=APP)
    assert span.parsed == (2, 5)


def test_a_subtree_appended_by_its_hash_is_its_leaves_appended() -> None:
    one, other = merkle.TreeBuilder(), merkle.TreeBuilder()
    for leaf in LEAVES[:12]:
        one.append(leaf)
    for leaf in LEAVES[:8]:
        other.append(leaf)
    other.append_subtree(2, root_of(LEAVES[8:12]))
    assert (one.size, one.root()) == (other.size, other.root())
    with pytest.raises(merkle.ProofError):
        other.append_subtree(3, root_of(LEAVES[12:20]))  # 12 is not a multiple of 8


@pytest.mark.parametrize("block", [1, 2, 4, 16])
def test_leaves_hashed_in_blocks_fold_alike(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spans, "BLOCK", block)
    for first, count, size, cut in [
        (0, 70, 70, 33),
        (3, 70, 50, 17),
        (8, 64, 64, 40),
        (5, 6, 6, 5),
    ]:
        checkpoint = Checkpoint(f"trailkeep.local/{APP}", size, root_of(LEAVES[:size]))
        parts = [
            check_span(LINES[first:cut], first, app_id=APP, cuts=(size,)),
            check_span(LINES[cut:count], cut, app_id=APP, cuts=(size,)),
        ]
        left = _frontier(first)
        whole = verify_entries(LINES[first:count], checkpoint, app_id=APP, first=first, left=left)
        assert fold(parts, checkpoint, first=first, left=left) == whole
        assert whole.root == checkpoint.root


def test_a_perfect_subtree_is_hashed_as_the_tree_builder_would() -> None:
    for k in range(7):
        assert merkle.perfect_root(LEAVES[: 1 << k]) == root_of(LEAVES[: 1 << k])
    with pytest.raises(merkle.ProofError):
        merkle.perfect_root(LEAVES[:6])
