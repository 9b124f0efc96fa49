"""The group-commit writer against a real SQLite file: its own thread, its shutdown, its tiles."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from tests.integration.writer_inputs import APP, pending_entries, store_with_app
from tests.trees import root_of
from trailkeep.log import merkle
from trailkeep.log.tiles import TILE_HEIGHT, TILE_WIDTH
from trailkeep.server.ingest.writer import Ingest
from trailkeep.server.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    made = store_with_app(tmp_path / "ingest.db")
    yield made
    made.close()


def test_a_write_does_not_wait_behind_a_busy_thread_pool(store: Store) -> None:
    # Reads and credential lookups run in the event loop's default pool. The writer once ran
    # each commit there too, so a pool full of slow reads held every write back.
    release = threading.Event()

    async def main() -> float:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
        ingest = Ingest(store)
        await ingest.start()
        blocked = loop.run_in_executor(None, release.wait, 10)  # the pool's one thread, taken
        started = time.perf_counter()
        appended = await ingest.append(APP, pending_entries(3))
        elapsed = time.perf_counter() - started
        assert [e.count(b'"seq":') for e in appended.entries] == [1, 1, 1]
        release.set()
        await blocked
        await ingest.stop()
        return elapsed

    assert asyncio.run(main()) < 5.0  # with the pool's thread held, a to_thread write took 10 s


def test_stop_commits_what_is_queued_then_refuses(store: Store) -> None:
    async def main() -> None:
        ingest = Ingest(store)
        await ingest.start()
        writes = [asyncio.ensure_future(ingest.append(APP, pending_entries(10))) for _ in range(20)]
        await asyncio.sleep(0)  # every append is queued
        await ingest.stop()
        done = [w.result() for w in writes]  # all answered by the time stop() returns
        seqs = sorted(e.first_seq for e in done)
        assert seqs == list(range(0, 200, 10))
        with pytest.raises(RuntimeError, match="not running"):
            await ingest.append(APP, pending_entries(1))

    asyncio.run(main())
    assert store.log_size(APP) == 200


def test_an_append_before_start_is_refused(store: Store) -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="not running"):
            await Ingest(store).append(APP, pending_entries(1))

    asyncio.run(main())


def test_appends_of_any_size_keep_the_tiles_of_the_whole_tree(store: Store) -> None:
    # Sizes that end tiles mid-way, exactly on a boundary, and span a full level-1 hash.
    sizes = [1, 254, 1, 1, 300, 256, 1_000, 7, 256 * 4 + 3]

    async def main() -> list[bytes]:
        ingest = Ingest(store)
        await ingest.start()
        stored: list[bytes] = []
        for count in sizes:
            stored += (await ingest.append(APP, pending_entries(count))).entries
        await ingest.stop()
        return stored

    entries = asyncio.run(main())
    leaves = [bytes.fromhex(orjson.loads(e)["leaf_hash"]) for e in entries]
    size = len(leaves)
    written, _ = merkle.append_leaves(0, [], leaves)
    expected = {}
    for (level, index), digest in written:
        if level % TILE_HEIGHT == 0:
            tile = (level // TILE_HEIGHT, index // TILE_WIDTH)
            expected[tile] = expected.get(tile, b"") + digest
    with store.reader_engine.connect() as c:
        rows = c.execute(text("SELECT level, idx, width, hashes FROM tree_tiles")).all()
    # One row a tile, the narrower versions deleted, each exactly the tree's hashes.
    assert {(r.level, r.idx): bytes(r.hashes) for r in rows} == expected
    assert len(rows) == len(expected)
    assert all(r.width * 32 == len(r.hashes) for r in rows)
    # Every proof the server serves is built from them and checks against the root.
    root = root_of(leaves)
    for index in (0, 255, 256, 1_500, size - 1):
        ids = merkle.inclusion_proof_nodes(index, size)
        proof = merkle.inclusion_proof(index, size, store.nodes(APP, ids))
        merkle.verify_inclusion(leaves[index], index, size, proof, root)
    ids = merkle.consistency_proof_nodes(555, size)
    proof = merkle.consistency_proof(555, size, store.nodes(APP, ids))
    merkle.verify_consistency(555, size, root_of(leaves[:555]), root, proof)
