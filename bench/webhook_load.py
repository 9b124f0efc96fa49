"""Helper processes of the webhook and stream benchmarks: a fast receiver and a paced writer.

``python -m bench.webhook_load receive PORT [--hang]`` is an HTTP/1.1 server on loopback,
asyncio and raw bytes, so that receiving costs little: it answers every POST 204 and records,
per delivered entry seq, when it arrived (``time.perf_counter``: CLOCK_MONOTONIC, comparable
across processes); with ``--hang`` it accepts connections and never answers (a dead
destination). It prints ``ready``, then is sent a seq on stdin, waits until it has received an
entry at or past it (a destination gets its batches in seq order) or a deadline, and prints
the arrivals as JSON.

``python -m bench.webhook_load write URL APP KEY --rate R --count N --connections C`` sends N
single writes at R a second over C keep-alive connections (raw HTTP, open loop: each write is
sent at its time on a free connection) and prints, as JSON, each 201's seq and when it came
back, and the round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import orjson


class _Receiving(asyncio.Protocol):
    """One delivery connection: requests parsed from raw bytes, each answered 204."""

    def __init__(self, arrived: dict[int, float], progress: asyncio.Event, hang: bool) -> None:
        """Record into ``arrived``; set ``progress`` at each answer; never answer if ``hang``."""
        self.arrived = arrived
        self.progress = progress
        self.hang = hang
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport to answer on."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """Parse what came, record each delivered entry's arrival, answer each request."""
        now = time.perf_counter()
        if self.hang:
            return  # read and never answer: the sender waits for its timeout
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            message = orjson.loads(body) if body else {}
            if message.get("type") == "audit.entries":
                for entry in message["data"]["entries"]:
                    self.arrived.setdefault(int(entry["seq"]), now)
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            self.progress.set()


async def receive(port: int, hang: bool, wait: float) -> None:
    """Serve until told the last seq, then print what arrived."""
    arrived: dict[int, float] = {}
    progress = asyncio.Event()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Receiving(arrived, progress, hang), "127.0.0.1", port, backlog=1024
    )
    print("ready", flush=True)
    last = int(await asyncio.to_thread(sys.stdin.readline))
    deadline = time.monotonic() + wait
    while not hang and max(arrived, default=-1) < last and time.monotonic() < deadline:
        progress.clear()
        try:
            await asyncio.wait_for(progress.wait(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            break
    server.close()
    sys.stdout.write(json.dumps({str(k): v for k, v in arrived.items()}) + "\n")
    sys.stdout.flush()


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length) if length else b""


async def write(
    url: str,
    app_id: str,
    key: str,
    rate: float,
    count: int,
    connections: int,
    offset: float,
    action: str = "bench.webhook",
) -> dict[str, Any]:
    """``count`` single writes at ``rate`` a second; each 201's seq and time, the round trips."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))
    answered: dict[str, float] = {}
    round_trips: list[float] = []
    failures: list[str] = []

    async def one(i: int) -> None:
        body = orjson.dumps({"action": action, "metadata": {"i": i}})
        request = (
            f"POST /v1/apps/{app_id}/events HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        reader, writer = await pool.get()
        try:
            sent = time.perf_counter()
            writer.write(request)
            status, content = await _response(reader)
            done = time.perf_counter()
        finally:
            pool.put_nowait((reader, writer))
        if status != 201:
            failures.append(f"{status} {content[:200]!r}")
            return
        answered[str(orjson.loads(content)["seq"])] = done
        round_trips.append((done - sent) * 1000)

    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter() + offset / rate
    for i in range(count):
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    seconds = time.perf_counter() - started
    while not pool.empty():
        pool.get_nowait()[1].close()
    return {"answered": answered, "round_trips": round_trips, "failures": failures,
            "seconds": seconds}  # fmt: skip


def main() -> None:
    """Command line: ``receive`` or ``write``."""
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_load")
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("receive")
    rec.add_argument("port", type=int)
    rec.add_argument("--hang", action="store_true")
    rec.add_argument("--wait", type=float, default=120.0)
    wri = commands.add_parser("write")
    for name in ("url", "app_id", "key"):
        wri.add_argument(name)
    wri.add_argument("--rate", type=float, required=True)
    wri.add_argument("--count", type=int, required=True)
    wri.add_argument("--connections", type=int, default=16)
    wri.add_argument("--offset", type=float, default=0.0, help="start this many periods late")
    wri.add_argument("--action", default="bench.webhook")
    args = parser.parse_args()
    if args.command == "receive":
        asyncio.run(receive(args.port, args.hang, args.wait))
    else:
        out = asyncio.run(write(args.url, args.app_id, args.key, args.rate, args.count,
                                args.connections, args.offset, args.action))  # fmt: skip
        print(json.dumps(out))


if __name__ == "__main__":
    main()
