"""The SDK's live streams, `AsyncAudit.stream` beside `Audit.stream`, against a real server.

Mirrors the raw-SSE tests of test_stream.py through the SDK: entries written after subscribing
arrive in order and as a list returns them, a stream resumes from its ``last_seq`` with no gap
or repeat, filters apply, the end of a stream ends the iteration, and a broken connection is
``ConnectionFailed``.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from tests.integration.http_api import list_all, write_batch
from tests.servers import Server, Tenant
from trailkeep.sdk import AsyncClient, Client, ConnectionFailed, Entry
from trailkeep.sdk.aclient import AsyncEntryStream

pytestmark = pytest.mark.timeout(120)


def listed(server: Server, tenant: Tenant, **params: Any) -> list[dict[str, Any]]:
    """The app's (matching) entries as a list returns them, oldest first."""
    with server.client(tenant.key) as client:
        return list(reversed(list_all(client, tenant.app_id, {"limit": 1000, **params})))


async def take(stream: AsyncEntryStream, count: int) -> list[Entry]:
    """The next ``count`` entries of ``stream``, within a deadline."""

    async def collect() -> list[Entry]:
        return [await anext(stream) for _ in range(count)]

    return await asyncio.wait_for(collect(), 30)


async def nothing_more(stream: AsyncEntryStream, wait: float = 0.5) -> None:
    """No further entry arrives within ``wait`` seconds."""
    try:
        extra = await asyncio.wait_for(anext(stream), wait)
    except TimeoutError:
        return
    pytest.fail(f"unexpected entry {extra}")


def test_entries_written_after_subscribing_arrive_in_order(server: Server) -> None:
    tenant = server.new_app("async stream")

    async def main() -> tuple[list[Entry], list[Entry], list[Entry], int | None]:
        async with AsyncClient(server.url, tenant.app_id, tenant.key) as client:
            await client.audit.log_many([{"action": "a.old"}] * 3)
            with Client(server.url, tenant.app_id, tenant.key) as sync:
                twin = sync.audit.stream()  # the sync stream, on the same connection's terms
                async with await client.audit.stream() as stream:
                    written = [await client.audit.log(f"a.one{i}") for i in range(4)]
                    written += await client.audit.log_many([{"action": "a.batch"}] * 20)
                    got = await take(stream, len(written))
                    await nothing_more(stream)
                    last_seq = stream.last_seq
                with twin:
                    twins = [next(twin) for _ in range(len(written))]
        return written, got, twins, last_seq

    written, got, twins, last_seq = asyncio.run(main())
    stored = listed(server, tenant)
    assert [e.seq for e in got] == list(range(3, 27))
    assert got == written == twins
    assert [e.raw for e in got] == stored[3:]  # exactly as a list returns them
    assert last_seq == 26


@pytest.mark.parametrize("how", ["after_seq", "last_event_id"])
def test_a_stream_resumes_from_its_last_seq_without_gap_or_repeat(server: Server, how: str) -> None:
    tenant = server.new_app("async resume")

    async def main() -> list[Entry]:
        async with AsyncClient(server.url, tenant.app_id, tenant.key) as client:
            await client.audit.log_many([{"action": "r.a"}] * 10)
            first = await client.audit.stream(after_seq=-1)
            head = await take(first, 7)  # as if the connection broke after the seventh entry
            await first.aclose()
            assert first.last_seq == head[-1].seq
            await client.audit.log_many([{"action": "r.b"}] * 4)  # written while away
            second = await client.audit.stream(**{how: first.last_seq})
            try:
                rest = await take(second, 3 + 4)
                await client.audit.log_many([{"action": "r.c"}] * 3)  # and live again
                rest += await take(second, 3)
                await nothing_more(second)
            finally:
                await second.aclose()
        return head + rest

    got = asyncio.run(main())
    assert [e.raw for e in got] == listed(server, tenant)  # every entry once, in order
    assert [e.seq for e in got] == list(range(17))


def test_filters_apply_as_in_a_list(server: Server) -> None:
    tenant = server.new_app("async filters")
    events = [
        {"action": f"{prefix}.{i}", "target_type": kind, "target_id": f"d{i}"}
        for i in range(6) for prefix in ("f", "g") for kind in ("doc", "user")
    ]  # fmt: skip
    params = {"action_prefix": "f.", "target_type": "doc"}

    async def main() -> tuple[list[Entry], list[Entry]]:
        async with AsyncClient(server.url, tenant.app_id, tenant.key) as client:
            await client.audit.log_many(events)  # before: replayed with after_seq
            stream = await client.audit.stream(after_seq=-1, **params)
            by_path = await client.audit.stream(changed_path="/role")
            try:
                await client.audit.log_many(events)  # after: live
                await client.audit.log(
                    "f.role", target_type="doc", target_id="u1",
                    before={"role": "a"}, after={"role": "b"},
                )  # fmt: skip
                got = await take(stream, 6 + 6 + 1)
                await nothing_more(stream)
                changed = await take(by_path, 1)
                await nothing_more(by_path)
            finally:
                await stream.aclose()
                await by_path.aclose()
        return got, changed

    got, changed = asyncio.run(main())
    assert [e.raw for e in got] == listed(server, tenant, **params)
    assert [e.action for e in changed] == ["f.role"]


def test_the_servers_end_ends_the_iteration_and_a_kill_is_connection_failed(
    sqlite_server: Server,
) -> None:
    srv = sqlite_server
    srv.env["TRAILKEEP_STREAM_MAX_SECONDS"] = "1"
    srv.start()
    tenant = srv.new_app("async end")

    async def ends() -> tuple[list[Entry], int | None]:
        async with AsyncClient(srv.url, tenant.app_id, tenant.key) as client:
            stream = await client.audit.stream()
            await client.audit.log_many([{"action": "e.a"}] * 3)
            got = await asyncio.wait_for(_all(stream), 10)  # to the clean end, after 1 s
            return got, stream.last_seq

    got, last_seq = asyncio.run(ends())
    assert [e.seq for e in got] == [0, 1, 2]
    assert last_seq == 2

    async def breaks() -> None:
        async with AsyncClient(srv.url, tenant.app_id, tenant.key) as client:
            stream = await client.audit.stream(after_seq=-1)
            assert len(await take(stream, 3)) == 3
            assert srv.proc is not None
            srv.proc.send_signal(signal.SIGKILL)  # no end of stream: the connection breaks
            with pytest.raises(ConnectionFailed, match="the live stream broke"):
                await asyncio.wait_for(_all(stream), 10)

    asyncio.run(breaks())
    with srv.client(tenant.key) as writer:  # the sync twin of the first half, on a new start
        srv.start()
        with Client(srv.url, tenant.app_id, tenant.key) as sync, sync.audit.stream() as stream:
            write_batch(writer, tenant.app_id, [{"action": "e.b"}] * 2)
            assert [e.seq for e in stream] == [3, 4]  # ends after the stream's second
            assert stream.last_seq == 4


async def _all(stream: AsyncEntryStream) -> list[Entry]:
    return [entry async for entry in stream]
