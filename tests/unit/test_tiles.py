"""Tiles hold exactly the tree: every node computed from them is the node the tree has."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trailkeep.log import merkle
from trailkeep.log.merkle import NodeId
from trailkeep.log.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    TileId,
    grown_tiles,
    leaf_hashes,
    locate,
    nodes_from_tiles,
    tiles_for,
    widened,
)


def _leaves(count: int, seed: int = 0) -> list[bytes]:
    return [merkle.hash_leaf(b"%d/%d" % (seed, i)) for i in range(count)]


def _grow(stored: dict[TileId, bytes], written: list[tuple[NodeId, bytes]]) -> None:
    """What the store does with an append: each grown tile continues its stored prefix."""
    for tile, _, hashes in widened(grown_tiles(written), stored):
        stored[tile] = hashes


def _tiles_of(
    leaves: list[bytes], splits: list[int]
) -> tuple[dict[TileId, bytes], dict[NodeId, bytes]]:
    """Tiles after appending ``leaves`` in pieces cut at ``splits``; and every complete node."""
    stored: dict[TileId, bytes] = {}
    nodes: dict[NodeId, bytes] = {}
    frontier: list[bytes] = []
    cuts = [0, *sorted(set(splits)), len(leaves)]
    for a, b in itertools.pairwise(cuts):
        written, frontier = merkle.append_leaves(a, frontier, leaves[a:b])
        nodes.update(written)
        _grow(stored, written)
    return stored, nodes


@settings(max_examples=60, deadline=None)
@given(count=st.integers(0, 2_200), data=st.data())
def test_appends_in_any_pieces_store_the_same_tiles(count: int, data: st.DataObject) -> None:
    leaves = _leaves(count)
    splits = data.draw(st.lists(st.integers(0, count), max_size=12))
    pieces, nodes = _tiles_of(leaves, splits)
    whole, _ = _tiles_of(leaves, [])
    assert pieces == whole
    # Level 0 is the leaves; level 1 the level-8 nodes; nothing else is stored.
    assert b"".join(whole[(0, n)] for n in range(-(-count // TILE_WIDTH))) == b"".join(leaves)
    level8 = sorted((i, h) for (lv, i), h in nodes.items() if lv == TILE_HEIGHT)
    assert whole.get((1, 0), b"") == b"".join(h for _, h in level8)
    assert {level for level, _ in whole} <= {0, 1}


@settings(max_examples=60, deadline=None)
@given(count=st.integers(1, 2_200), data=st.data())
def test_every_complete_node_is_computed_from_the_tiles(count: int, data: st.DataObject) -> None:
    stored, nodes = _tiles_of(_leaves(count), [])
    asked = data.draw(st.lists(st.sampled_from(sorted(nodes)), min_size=1, max_size=40))
    assert nodes_from_tiles(asked, stored) == {node: nodes[node] for node in asked}


@given(count=st.integers(0, 1_000), level=st.integers(0, 20), index=st.integers(0, 5_000))
def test_a_node_the_tree_lacks_is_absent_not_invented(count: int, level: int, index: int) -> None:
    stored, nodes = _tiles_of(_leaves(count), [])
    found = nodes_from_tiles([(level, index)], stored)
    assert found == ({(level, index): nodes[(level, index)]} if (level, index) in nodes else {})


def test_nodes_above_two_tile_levels_come_from_the_third() -> None:
    count = TILE_WIDTH**2 + 3 * TILE_WIDTH + 5  # a full level-1 tile, and a level-2 hash
    stored, nodes = _tiles_of(_leaves(count, seed=7), [1, 65_536, 65_600])
    assert sorted(k for k in stored if k[0] == 2) == [(2, 0)]
    assert len(stored[(2, 0)]) == merkle.HASH_SIZE
    frontier = merkle.frontier(count)
    assert nodes_from_tiles(frontier, stored) == {node: nodes[node] for node in frontier}
    proof = merkle.inclusion_proof_nodes(1_000, count) + merkle.consistency_proof_nodes(300, count)
    assert nodes_from_tiles(proof, stored) == {node: nodes[node] for node in proof}


@given(level=st.integers(0, 40), index=st.integers(0, 2**40))
def test_locate_names_a_slice_of_one_tile(level: int, index: int) -> None:
    (tile_level, tile_index), lo, hi = locate((level, index))
    span = hi - lo
    assert tile_level == level // TILE_HEIGHT
    assert 0 <= lo < hi <= TILE_WIDTH
    assert span == 1 << (level % TILE_HEIGHT)
    first_below = index << (level % TILE_HEIGHT)  # the node's first hash on its tile level
    assert tile_index * TILE_WIDTH + lo == first_below


def test_tiles_for_names_each_tile_once() -> None:
    assert tiles_for([(0, 3), (1, 1), (7, 0), (0, 300), (8, 0), (9, 0)]) == [(0, 0), (0, 1), (1, 0)]


def test_a_gap_in_a_tile_is_refused() -> None:
    digest = bytes(32)
    with pytest.raises(ValueError, match="does not continue"):
        grown_tiles([((0, 4), digest), ((0, 6), digest)])
    with pytest.raises(ValueError, match="no such node"):
        locate((-1, 0))


def test_a_stored_tile_of_another_width_is_refused() -> None:
    written, _ = merkle.append_leaves(3, [bytes(32)] * 2, [bytes(32)])  # continues tile (0, 0)
    grown = grown_tiles(written)
    assert widened(grown, {(0, 0): bytes(96)}) == [((0, 0), 3, bytes(128))]
    for stored in ({}, {(0, 0): bytes(64)}, {(0, 0): bytes(128)}):
        with pytest.raises(ValueError, match=r"holds \d+ hashes, the append continues it at 3"):
            widened(grown, stored)


def test_leaf_hashes_number_a_tile_from_its_first_leaf() -> None:
    hashes = bytes(range(32)) + bytes(range(32, 64))
    assert leaf_hashes(2, hashes) == [(512, hashes[:32]), (513, hashes[32:])]
