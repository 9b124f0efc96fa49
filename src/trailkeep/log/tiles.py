"""The tree's hashes as C2SP tlog-tiles: what is stored, and every node computed from it.

Pure functions only, no I/O. A tile holds up to ``TILE_WIDTH`` consecutive hashes of one tree
level: tile level ``t`` holds tree level ``8t`` (tile level 0: the leaf hashes), tile ``(t, n)``
the hashes at indexes ``n * 256`` onwards. Every node between two tile levels is the root of a
perfect subtree over hashes of one tile, so it is computed, not stored.

Why tiles rather than a row per node: a tree of ``n`` leaves has ``2n - 1`` nodes, and writing
each as a row is a large share of SQLite's work per appended entry. Tiles store ``n * 256/255``
hashes in about ``n / 255`` rows, and a proof reads at most one row per tile level.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from trailkeep.log.merkle import HASH_SIZE, NodeId, hash_children

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
TileId = tuple[int, int]


def locate(node: NodeId) -> tuple[TileId, int, int]:
    """Return the tile a node is computed from and the slice ``[lo, hi)`` of its hashes."""
    level, index = node
    if level < 0 or index < 0:
        raise ValueError(f"no such node: {node}")
    tile_level = level // TILE_HEIGHT
    span = 1 << (level - tile_level * TILE_HEIGHT)
    first = index * span
    lo = first % TILE_WIDTH
    return (tile_level, first // TILE_WIDTH), lo, lo + span


def subtree_hash(hashes: bytes, lo: int, hi: int) -> bytes:
    """Return the root of the perfect subtree over hashes ``[lo, hi)`` of a tile's bytes."""
    level = [hashes[i * HASH_SIZE : (i + 1) * HASH_SIZE] for i in range(lo, hi)]
    while len(level) > 1:
        level = [hash_children(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def tiles_for(ids: Iterable[NodeId]) -> list[TileId]:
    """Return the tiles the nodes are computed from, each once, in order."""
    return sorted({locate(node)[0] for node in ids})


def nodes_from_tiles(ids: Iterable[NodeId], tiles: Mapping[TileId, bytes]) -> dict[NodeId, bytes]:
    """Return the nodes the tiles' hashes cover; a node beyond its tile's width is absent."""
    found: dict[NodeId, bytes] = {}
    for node in ids:
        tile, lo, hi = locate(node)
        hashes = tiles.get(tile)
        if hashes is not None and len(hashes) >= hi * HASH_SIZE:
            found[node] = subtree_hash(hashes, lo, hi)
    return found


def grown_tiles(written: Sequence[tuple[NodeId, bytes]]) -> dict[TileId, tuple[int, bytes]]:
    """Group an append's new nodes into the tiles they extend: tile -> (old width, new hashes).

    ``written`` is what ``merkle.append_leaves`` returns: every node the append completed, in
    order. Nodes between tile levels are dropped; the ones on tile levels must continue each
    tile from its old width without a gap, or ``ValueError`` is raised.
    """
    grown: dict[TileId, tuple[int, list[bytes]]] = {}
    for (level, index), digest in written:
        if level % TILE_HEIGHT:
            continue
        tile = (level // TILE_HEIGHT, index // TILE_WIDTH)
        position = index % TILE_WIDTH
        entry = grown.get(tile)
        if entry is None:
            grown[tile] = (position, [digest])
        elif entry[0] + len(entry[1]) == position:
            entry[1].append(digest)
        else:
            raise ValueError(f"node {(level, index)} does not continue tile {tile}")
    return {tile: (width, b"".join(hashes)) for tile, (width, hashes) in grown.items()}


def widened(
    grown: Mapping[TileId, tuple[int, bytes]], stored: Mapping[TileId, bytes]
) -> list[tuple[TileId, int, bytes]]:
    """Return (tile, old width, all its hashes now) for each tile of ``grown_tiles``' answer.

    ``stored`` holds the present hashes of the tiles the append continues (old width above 0).
    A stored tile of another width than the append continues from raises ``ValueError``: the
    tree's frontier and its tiles disagree, and writing on would store a wrong tile.
    """
    wider = []
    for tile, (width, added) in grown.items():
        prefix = stored.get(tile, b"") if width else b""
        if len(prefix) != width * HASH_SIZE:
            held = len(prefix) // HASH_SIZE
            raise ValueError(f"tile {tile} holds {held} hashes, the append continues it at {width}")
        wider.append((tile, width, prefix + added))
    return wider


def leaf_hashes(index: int, hashes: bytes) -> list[tuple[int, bytes]]:
    """Return (leaf index, hash) for each hash of level-0 tile ``index``."""
    first = index * TILE_WIDTH
    return [
        (first + i, hashes[i * HASH_SIZE : (i + 1) * HASH_SIZE])
        for i in range(len(hashes) // HASH_SIZE)
    ]
