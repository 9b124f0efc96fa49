"""Sets of seqs as runs (``trailkeep.log.seqs``), checked against Python sets."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from trailkeep.log import seqs

small_sets = st.sets(st.integers(min_value=0, max_value=60), max_size=40)


def _members(runs: seqs.Runs) -> set[int]:
    return {s for first, last in runs for s in range(first, last + 1)}


def _is_normal(runs: seqs.Runs) -> bool:
    return all(a[1] + 1 < b[0] for a, b in itertools.pairwise(runs)) and all(
        first <= last for first, last in runs
    )


def test_runs_of_consecutive_seqs() -> None:
    assert seqs.runs([0, 1, 2, 5, 7, 8]) == [[0, 2], [5, 5], [7, 8]]
    assert seqs.runs([]) == []


@given(small_sets, small_sets)
def test_union_and_difference_are_the_set_operations(a: set[int], b: set[int]) -> None:
    ra, rb = seqs.runs(sorted(a)), seqs.runs(sorted(b))
    assert _members(ra) == a
    assert _is_normal(ra)
    assert _members(seqs.union(ra, rb)) == a | b
    assert _is_normal(seqs.union(ra, rb))
    diff = seqs.difference(ra, rb)
    assert _members(diff) == a - b
    assert _is_normal(diff)
    assert seqs.count(diff) == len(a - b)
    for first in range(0, 60, 7):
        assert seqs.overlaps(ra, first, first + 6) == bool(a & set(range(first, first + 7)))


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 10)), max_size=20))
def test_normalized_merges_any_pairs(pairs: list[tuple[int, int]]) -> None:
    ranges = [[first, first + length] for first, length in pairs]
    merged = seqs.normalized(ranges)
    assert _is_normal(merged)
    assert _members(merged) == _members(ranges)
