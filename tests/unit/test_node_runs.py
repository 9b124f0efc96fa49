"""Tree-node reads ask for runs of consecutive nodes: exactly the nodes wanted, fewest runs."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from trailkeep.store.append import _runs

node_ids = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 40)), max_size=60)


@given(node_ids)
def test_runs_cover_exactly_the_nodes_asked_for(ids: list[tuple[int, int]]) -> None:
    covered = [(level, i) for level, first, last in _runs(ids) for i in range(first, last + 1)]
    assert sorted(covered) == sorted(set(ids))
    assert len(covered) == len(set(covered))


@given(node_ids)
def test_runs_are_maximal(ids: list[tuple[int, int]]) -> None:
    runs = _runs(ids)
    for (level, _, last), (next_level, next_first, _) in pairwise(runs):
        assert (level, last + 1) != (next_level, next_first)


def test_a_proof_path_is_one_run_per_node_and_a_range_is_one_run() -> None:
    assert _runs([(3, 1), (0, 9), (1, 5)]) == [(0, 9, 9), (1, 5, 5), (3, 1, 1)]
    assert _runs([(1, i) for i in range(100, 0, -1)]) == [(1, 1, 100)]
