"""The writer in a process of its own: real child processes on a real SQLite file.

What the server relies on: an append comes back as the child committed it; the child's failures
come back as the same exceptions the in-thread writer raises; ``stop`` answers everything it
was given; a writer that dies is replaced, and the writes it could not answer get a clear error;
and the child never outlives the server, nor shows the database URL on its command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from tests.integration.http_api import events_url, write_one
from tests.integration.writer_inputs import APP, pending_entries, store_with_app
from tests.processes import alive, children
from tests.servers import Server
from tests.trees import root_of
from trailkeep.log import merkle
from trailkeep.server.ingest.process import WriterProcess
from trailkeep.server.ingest.writer import (
    Idempotency,
    IdempotencyConflict,
    IngestStats,
    WriterUnavailable,
)
from trailkeep.server.store import Store

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    made = store_with_app(tmp_path / "writer.db")
    yield made
    made.close()


@contextlib.asynccontextmanager
async def running(writer: WriterProcess) -> AsyncIterator[WriterProcess]:
    """The writer, started, and stopped when the block ends however it ends."""
    await writer.start()
    try:
        yield writer
    finally:
        await writer.stop()


def test_appends_come_back_as_committed_with_their_commits_counted(store: Store) -> None:
    commits: list[int] = []
    grown: list[set[str]] = []

    async def main() -> list[bytes]:
        writer = WriterProcess(
            store.url,
            stats=IngestStats(on_commit=lambda size, _seconds: commits.append(size)),
            on_appended=grown.append,
        )
        await writer.start()
        done = await asyncio.gather(
            *(writer.append(APP, pending_entries(n)) for n in (1, 100, 7, 250))
        )
        await writer.stop()
        assert sorted(d.first_seq for d in done) == [0, 1, 101, 108]
        assert not any(d.replayed for d in done)
        return [entry for d in sorted(done, key=lambda d: d.first_seq) for entry in d.entries]

    stored = asyncio.run(main())
    assert stored == store.entries(APP, 0, 358)  # what came back is byte for byte what is stored
    assert sum(commits) == 358
    assert grown
    assert all(apps == {APP} for apps in grown)
    leaves = [bytes.fromhex(orjson.loads(e)["leaf_hash"]) for e in stored]
    ids = merkle.frontier(358)
    stored_tree = store.nodes(APP, ids)
    assert merkle.root_from_frontier([stored_tree[i] for i in ids]) == root_of(leaves)


def test_idempotency_replays_and_conflicts_cross_the_process(store: Store) -> None:
    async def main() -> None:
        ttl = timedelta(minutes=5)
        async with running(WriterProcess(store.url, idempotency_ttl=ttl)) as writer:
            key = Idempotency.of("k1", b"body")
            first = await writer.append(APP, pending_entries(2), key)
            again = await writer.append(APP, pending_entries(2), key)
            assert again.replayed
            assert again.entries == first.entries
            with pytest.raises(IdempotencyConflict):
                await writer.append(APP, pending_entries(2), Idempotency.of("k1", b"another body"))

    asyncio.run(main())
    assert store.log_size(APP) == 2


def test_a_failed_append_fails_alone_with_the_childs_reason(store: Store) -> None:
    async def main() -> None:
        async with running(WriterProcess(store.url)) as writer:
            good = writer.append(APP, pending_entries(3))
            bad = writer.append("app_nowhere", pending_entries(1, app_id="app_nowhere"))
            results = await asyncio.gather(good, bad, return_exceptions=True)
            assert not isinstance(results[0], BaseException)
            assert isinstance(results[1], RuntimeError)
            assert "no such app: app_nowhere" in str(results[1])

    asyncio.run(main())
    assert store.log_size(APP) == 3


def test_stop_answers_everything_it_was_given_and_the_child_exits(store: Store) -> None:
    async def main() -> int:
        writer = WriterProcess(store.url)
        await writer.start()
        pid = writer.pid
        assert pid is not None
        writes = [asyncio.ensure_future(writer.append(APP, pending_entries(10))) for _ in range(30)]
        await asyncio.sleep(0)  # every append is sent
        await writer.stop()
        assert sorted(w.result().first_seq for w in writes) == list(range(0, 300, 10))
        with pytest.raises(RuntimeError, match="not running"):
            await writer.append(APP, pending_entries(1))
        return pid

    pid = asyncio.run(main())
    assert not alive(pid)
    assert store.log_size(APP) == 300


def test_a_killed_writer_is_replaced_and_its_unanswered_writes_are_told(store: Store) -> None:
    async def main() -> None:
        async with running(WriterProcess(store.url)) as writer:
            first = writer.pid
            assert first is not None
            await writer.append(APP, pending_entries(5))
            os.kill(first, signal.SIGSTOP)  # it holds this write, unanswered, until it dies
            waiting = asyncio.ensure_future(writer.append(APP, pending_entries(5)))
            await asyncio.sleep(0.2)
            os.kill(first, signal.SIGKILL)
            with pytest.raises(WriterUnavailable, match="ended before answering"):
                await waiting
            with pytest.raises(WriterUnavailable, match="restarting"):
                await writer.append(APP, pending_entries(1))
            deadline = time.monotonic() + 30
            while True:
                try:
                    later = await writer.append(APP, pending_entries(2))
                    break
                except WriterUnavailable:
                    assert time.monotonic() < deadline, "no new writer process"
                    await asyncio.sleep(0.1)
            assert writer.pid not in (None, first)
            assert later.first_seq == 5  # the new writer found the log where the old one left it

    asyncio.run(main())
    assert store.log_size(APP) == 7


def test_a_writer_that_cannot_start_fails_start_and_leaves_no_process() -> None:
    async def main() -> WriterProcess:
        writer = WriterProcess("nosuchdriver://nowhere")
        with pytest.raises(RuntimeError, match="ended as it started"):
            await writer.start()
        return writer

    writer = asyncio.run(main())
    assert writer.pid is not None
    assert not alive(writer.pid)


def test_the_child_never_shows_the_database_url(store: Store) -> None:
    async def main() -> None:
        async with running(WriterProcess(store.url)) as writer:
            cmdline = Path(f"/proc/{writer.pid}/cmdline")
            arguments = (await asyncio.to_thread(cmdline.read_bytes)).split(b"\0")
            assert b"trailkeep.server.ingest.process" in arguments
            assert not any(b"sqlite" in a or b"writer.db" in a for a in arguments)

    asyncio.run(main())


def test_a_child_whose_server_died_commits_what_it_got_and_exits(tmp_path: Path) -> None:
    # The server is a process of its own here, so that it can be killed without a goodbye.
    script = tmp_path / "server.py"
    script.write_text(
        "import asyncio, os, sys\n"
        "from tests.integration.writer_inputs import APP, pending_entries\n"
        "from trailkeep.server.ingest.process import WriterProcess\n"
        "async def main():\n"
        "    writer = WriterProcess(sys.argv[1])\n"
        "    await writer.start()\n"
        "    await writer.append(APP, pending_entries(4))\n"
        "    print(writer.pid, flush=True)\n"
        "    for _ in range(20):\n"
        "        asyncio.ensure_future(writer.append(APP, pending_entries(10)))\n"
        "    await asyncio.sleep(0.01)\n"
        "    os.kill(os.getpid(), 9)\n"
        "asyncio.run(main())\n"
    )
    store = store_with_app(tmp_path / "orphan.db")
    try:
        run = subprocess.run(
            [sys.executable, str(script), store.url],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        )  # fmt: skip
        assert run.returncode == -signal.SIGKILL, run.stderr
        child = int(run.stdout.split()[0])
        deadline = time.monotonic() + 30
        while alive(child):
            assert time.monotonic() < deadline, "the writer outlived its server"
            time.sleep(0.05)
        # Whatever reached the child before the server died is committed whole, or not at all.
        size = store.log_size(APP)
        assert size >= 4
        assert (size - 4) % 10 == 0
        assert len(store.entries(APP, 0, size)) == size
    finally:
        store.close()


def test_the_server_answers_503_while_its_writer_is_replaced(sqlite_server: Server) -> None:
    srv = sqlite_server.start()
    tenant = srv.new_app("restart")
    assert srv.proc is not None
    (writer,) = [pid for pid, cmdline in children(srv.proc.pid) if "ingest.process" in cmdline]
    with srv.client(tenant.key) as client:
        assert write_one(client, tenant.app_id, {"action": "before"})["seq"] == 0
        os.kill(writer, signal.SIGKILL)
        statuses = []
        deadline = time.monotonic() + 30
        while True:
            response = client.post(events_url(tenant.app_id), json={"action": "during"})
            statuses.append(response.status_code)
            if response.status_code == 201:
                break
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "1"
            assert response.json()["code"] == "unavailable"
            assert time.monotonic() < deadline, "the writer was not replaced"
            time.sleep(0.05)
        assert 503 in statuses  # the writer's death was seen, and answered clearly
        assert response.json()["seq"] == 1  # nothing was lost or doubled on the way
