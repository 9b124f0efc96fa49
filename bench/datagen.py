"""Fill an app's log with valid, realistic entries spread over past days, fast.

The entries go through the same model (validation, canonical form) and the same storage calls
as the writer, with times spread evenly over ``days`` ending now, so that time filters, the
Merkle tree and `trailkeep verify` all see a genuine log. ``fill_tree`` writes only the tiles of a
log (its tiles: the hashes of every eighth level), for the proof benchmark, which reads nothing
else.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from trailkeep.log import merkle
from trailkeep.log.record import Actor, EventWrite, Origin, format_time, prepare, with_leaf_hash
from trailkeep.log.tiles import TILE_HEIGHT, TILE_WIDTH
from trailkeep.server.ids import new_entry_id
from trailkeep.server.store import EventRow, Store

# Bump when what ``fill`` or ``fill_tree`` writes changes: cached databases are keyed by it.
VERSION = 6  # 6: one entry in 20 carries `changes` (one in 1,000 a rare path)

ACTIONS = [
    f"{noun}.{verb}"
    for noun in ("order", "user", "invoice", "project", "token", "report")
    for verb in ("create", "update", "delete", "view", "export")
]
TARGETS = ("order", "user", "invoice", "project", "token", "report")
CHUNK = 5_000
COMMON_PATH = "/amount"  # in one entry of 20
RARE_PATH = "/limits/daily"  # in one entry of 1,000


def fill(
    store: Store, app_ids: Sequence[str], count: int, *, days: float = 100, seed: int = 7,
    progress: Callable[[int], None] | None = None, end: datetime | None = None,
) -> None:  # fmt: skip
    """Append ``count`` entries to each app, interleaved, their times spread over ``days``.

    They end at ``end`` (now by default), which must not be before the apps' last entry.
    """
    rng = random.Random(seed)
    actors = [
        Actor(
            type="user", id=f"user_{i}", name=f"User {i}", role="admin" if i % 50 == 0 else "member"
        )
        for i in range(1000)
    ]
    origins = [Origin(ip=f"203.0.113.{i}", user_agent="Mozilla/5.0 bench") for i in range(1, 200)]
    end = end or datetime.now(UTC)
    start_time = end - timedelta(days=days)
    step = (end - start_time) / max(count, 1)
    done = 0
    # Each app's frontier is carried from one chunk to the next (this is the only writer), so
    # the build does not depend on how fast the store reads it back.
    frontiers: dict[str, list[bytes] | None] = dict.fromkeys(app_ids)
    while done < count:
        n = min(CHUNK, count - done)
        for app_id in app_ids:
            frontiers[app_id] = _chunk(
                store, app_id, done, n, rng, actors, origins, start_time, step, frontiers[app_id]
            )
        done += n
        if progress is not None:
            progress(done)


def _chunk(
    store: Store, app_id: str, done: int, n: int, rng: random.Random, actors: list[Actor],
    origins: list[Origin], start_time: datetime, step: timedelta, frontier: list[bytes] | None,
) -> list[bytes]:  # fmt: skip
    pending = []
    for i in range(n):
        target = rng.choice(TARGETS)
        event = EventWrite(
            action=rng.choice(ACTIONS),
            target_type=target,
            target_id=f"{target}_{rng.randrange(100_000)}",
            metadata={"amount": rng.randrange(10_000), "reason": "bench", "n": done + i},
            project="bench",
        )
        n_entry = done + i
        # What changed, as apps record it on updates: a common path and, rarely, another.
        changes = (
            [{"path": RARE_PATH if n_entry % 1_000 == 0 else COMMON_PATH,
              "old": rng.randrange(10_000), "new": rng.randrange(10_000)}]
            if n_entry % 20 == 0 else []
        )  # fmt: skip
        pending.append(
            prepare(app_id, new_entry_id(), event, rng.choice(actors), rng.choice(origins), 10_240,
                    changes=changes)
        )  # fmt: skip
    with store.append_tx() as tx:
        first, _ = tx.reserve(app_id, n, start_time + step * (done + n))
        if frontier is None:
            ids = merkle.frontier(first)
            known = tx.nodes(app_id, ids)
            frontier = [known[i] for i in ids]
        rows: list[EventRow] = []
        leaves = []
        for offset, entry in enumerate(pending):
            seq = first + offset
            moment = start_time + step * (done + offset)
            document = entry.canonical(seq, format_time(moment))
            leaf = merkle.hash_leaf(document)
            leaves.append(leaf)
            rows.append((
                app_id, seq, entry.id, tx.time_param(moment), entry.action, entry.kind,
                entry.actor_id, entry.target_type, entry.target_id,
                with_leaf_hash(document, leaf),
            ))  # fmt: skip
        written, frontier = merkle.append_leaves(first, frontier, leaves)
        tx.insert(rows)
        tx.insert_changes([
            (app_id, path, first + offset)
            for offset, entry in enumerate(pending)
            for path in entry.changed_paths
        ])  # fmt: skip
        tx.extend_tree(app_id, written)
    return frontier


def tree_leaf(seq: int) -> bytes:
    """The leaf hash ``fill_tree`` gives leaf ``seq``."""
    return merkle.hash_leaf(b"trailkeep bench leaf %d" % seq)


def fill_tree(db: Path, app_id: str, size: int) -> bytes:
    """Write the tiles of a ``size``-leaf tree into ``tree_tiles``; its root.

    The database must be a migrated one that nothing else has open: it is written with journaling
    off (a half-built file is thrown away, never used), then switched back to WAL.
    """
    sha = hashlib.sha256
    connection = sqlite3.connect(db, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-262144")
        sql = "INSERT INTO tree_tiles (app_id, level, idx, width, hashes) VALUES (?, ?, ?, ?, ?)"
        level_hashes = [tree_leaf(i) for i in range(size)]
        frontier: list[bytes] = []
        level = 0
        while level_hashes:
            if level % TILE_HEIGHT == 0:
                starts = range(0, len(level_hashes), TILE_WIDTH)
                tiles = (level_hashes[i : i + TILE_WIDTH] for i in starts)
                connection.execute("BEGIN")
                connection.executemany(sql, (
                    (app_id, level // TILE_HEIGHT, n, len(tile), b"".join(tile))
                    for n, tile in enumerate(tiles)
                ))  # fmt: skip
                connection.execute("COMMIT")
            if len(level_hashes) % 2:
                frontier.append(level_hashes[-1])  # the right edge's complete piece at this level
            pairs = range(0, len(level_hashes) - 1, 2)
            level_hashes = [sha(b"\x01" + level_hashes[i] + level_hashes[i + 1]).digest()
                            for i in pairs]  # fmt: skip
            level += 1
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()
    # merkle.frontier lists pieces largest first: the highest level first.
    return merkle.root_from_frontier(list(reversed(frontier)))


def stored_root(db: Path, app_id: str, size: int) -> bytes:
    """The root at ``size`` computed from the stored tiles, as the server reads them."""
    ids = merkle.frontier(size)
    store = Store(f"sqlite:///{db}")
    try:
        found = store.nodes(app_id, ids)
    finally:
        store.close()
    missing = [node for node in ids if node not in found]
    if missing:
        raise LookupError(f"tree nodes {missing} of {app_id} are missing")
    return merkle.root_from_frontier([found[node] for node in ids])
