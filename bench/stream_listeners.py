"""``python -m bench.stream_listeners``: live-stream subscribers on one asyncio loop.

One process holds many SSE connections and parses them with the SDK's :class:`EventParser`,
so that listening costs the benchmark little CPU (threads parsing in the bench process would
compete with the server for the GIL and the cores). Protocol on stdin/stdout: it prints
``ready`` once every stream is open; it is then sent the last seq written, waits until every
stream has it (or was dropped, or a deadline passed), and prints one JSON object: each
stream's arrival times by seq (``time.perf_counter``, CLOCK_MONOTONIC: comparable across
processes), which were dropped, and the CPU seconds the process used while listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time

import httpx

from trailkeep.sdk.sse import EventParser


class Stream:
    """One subscriber: when each seq arrived, whether it was dropped, the highest seq seen."""

    def __init__(self) -> None:
        """Nothing received yet."""
        self.arrived: dict[int, float] = {}
        self.dropped = False
        self.last = -1
        self.changed = asyncio.Event()

    async def read(self, client: httpx.AsyncClient, path: str, opened: asyncio.Event) -> None:
        """Subscribe and record each entry's arrival until the stream ends or is cancelled."""
        parser = EventParser()
        async with client.stream("GET", path) as response:
            response.raise_for_status()
            opened.set()
            async for chunk in response.aiter_bytes():
                now = time.perf_counter()
                for event in parser.feed(chunk):
                    if event.event == "dropped":
                        self.dropped = True
                        self.changed.set()
                        return
                    if event.id is not None and event.data:
                        seq = int(event.id)
                        self.arrived[seq] = now
                        self.last = max(self.last, seq)
                self.changed.set()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main(url: str, app_id: str, key: str, count: int, wait: float) -> None:
    """Open ``count`` streams, report ready, then arrivals once the last seq is in."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=httpx.Timeout(60), limits=limits
    ) as client:
        streams = [Stream() for _ in range(count)]
        opened = [asyncio.Event() for _ in streams]
        path = f"/v1/apps/{app_id}/events/stream"
        tasks = [
            asyncio.create_task(s.read(client, path, o))
            for s, o in zip(streams, opened, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(o.wait() for o in opened)), 60)
        cpu_start = _cpu()
        print("ready", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        last_seq = int(line)
        deadline = time.monotonic() + wait
        for stream in streams:
            while not stream.dropped and stream.last < last_seq:
                stream.changed.clear()
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(stream.changed.wait(), left)
                except TimeoutError:
                    break
        cpu = _cpu() - cpu_start
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    out = {
        "arrived": [{str(k): v for k, v in s.arrived.items()} for s in streams],
        "dropped": [s.dropped for s in streams],
        "cpu_seconds": cpu,
    }
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.stream_listeners")
    parser.add_argument("url")
    parser.add_argument("app_id")
    parser.add_argument("key")
    parser.add_argument("count", type=int)
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the end")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.app_id, args.key, args.count, args.wait))
