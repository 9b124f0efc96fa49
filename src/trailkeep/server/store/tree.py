"""The tree's tiles in the database: the nodes proofs and appends need, and tiles that grow."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Connection

from trailkeep.log import tiles
from trailkeep.log.merkle import HASH_SIZE, NodeId
from trailkeep.log.tiles import TILE_WIDTH, TileId
from trailkeep.server.store.driver import MARKS, driver_executemany, driver_rows, placeholder

# Each statement's text is the same for every set of tiles: a text per shape of proof would
# fill sqlite3's per-connection statement caches, native memory outside Python's accounting.
# SQLite is in-process, so a seek per tile by its key is cheap (the widest version, as two
# exist only inside an appending transaction): cheaper, for the one or two tiles an append
# widens, than joining a JSON array of the tiles through json_each. PostgreSQL is a round trip
# away, so its tiles travel as two arrays in one statement.
_SQLITE_TILE = (
    "SELECT hashes FROM tree_tiles WHERE app_id = :app AND level = :level AND idx = :idx"
    " ORDER BY width DESC LIMIT 1"
)
_POSTGRES_TILES = (
    "SELECT t.level, t.idx, t.hashes"
    " FROM unnest(%(levels)s::int[], %(idxs)s::bigint[]) AS r(level, idx)"
    " JOIN tree_tiles AS t ON t.app_id = %(app)s AND t.level = r.level AND t.idx = r.idx"
)


def _write_tiles(mark: Callable[[str], str]) -> tuple[str, str]:
    key = f"app_id = {mark('app')} AND level = {mark('level')} AND idx = {mark('idx')}"
    names = ", ".join(mark(name) for name in ("app", "level", "idx", "width", "hashes"))
    return (
        f"INSERT INTO tree_tiles (app_id, level, idx, width, hashes) VALUES ({names})",
        f"DELETE FROM tree_tiles WHERE {key} AND width = {mark('width')}",
    )


# The append's two statements, written once per dialect rather than once per commit.
_WRITE_TILES = {dialect: _write_tiles(mark) for dialect, mark in MARKS.items()}


def read_tiles(c: Connection, app_id: str, ids: Sequence[TileId]) -> dict[TileId, bytes]:
    """The hashes of each tile asked for (its widest stored version); unstored ones are absent."""
    found: dict[TileId, bytes] = {}
    if c.dialect.name != "postgresql":
        for level, index in ids:
            key = {"app": app_id, "level": level, "idx": index}
            for (stored,) in driver_rows(c, _SQLITE_TILE, key):
                found[(level, index)] = bytes(stored)
        return found
    if not ids:
        return found
    levels, indexes = [level for level, _ in ids], [index for _, index in ids]
    rows = driver_rows(c, _POSTGRES_TILES, {"app": app_id, "levels": levels, "idxs": indexes})
    for level, index, stored in rows:
        # Two versions of a tile exist only inside an appending transaction, between the
        # insert of the wider one and the delete of the narrower.
        if len(stored) > len(found.get((level, index), b"")):
            found[(level, index)] = bytes(stored)
    return found


def read_nodes(c: Connection, app_id: str, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
    """Tree node hashes by (level, index), computed from their tiles; missing nodes are absent."""
    return tiles.nodes_from_tiles(ids, read_tiles(c, app_id, tiles.tiles_for(ids)))


def extend(c: Connection, app_id: str, written: Sequence[tuple[NodeId, bytes]]) -> None:
    """Store an append's new nodes: each tile they grow is written wider, its old version dropped.

    ``written`` is what ``merkle.append_leaves`` returned for this append, in this transaction.
    """
    grown = tiles.grown_tiles(written)
    if not grown:
        return
    partial = read_tiles(c, app_id, [tile for tile, (width, _) in grown.items() if width])
    rows, superseded = [], []
    for (level, index), width, hashes in tiles.widened(grown, partial):
        key = {"app": app_id, "level": level, "idx": index}
        rows.append({**key, "width": len(hashes) // HASH_SIZE, "hashes": hashes})
        if width:
            superseded.append({**key, "width": width})
    insert, drop = _WRITE_TILES[c.dialect.name]
    driver_executemany(c, insert, rows)
    # After the insert: the database lets a tile go only once a wider one extends it.
    if superseded:
        driver_executemany(c, drop, superseded)


def leaf_range(c: Connection, app_id: str, start: int, end: int) -> list[tuple[int, bytes]]:
    """(index, hash) of the stored leaves in [start, end), in order."""
    if end <= start:
        return []
    mark = placeholder(c.dialect)
    sql = (
        f"SELECT idx, hashes FROM tree_tiles WHERE app_id = {mark('app')} AND level = 0"
        f" AND idx BETWEEN {mark('lo')} AND {mark('hi')} ORDER BY idx, width"
    )
    params = {"app": app_id, "lo": start // TILE_WIDTH, "hi": (end - 1) // TILE_WIDTH}
    widest = {index: bytes(stored) for index, stored in driver_rows(c, sql, params)}
    return [
        (i, digest)
        for index, stored in widest.items()
        for i, digest in tiles.leaf_hashes(index, stored)
        if start <= i < end
    ]
