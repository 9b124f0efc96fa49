"""A small closed-loop HTTP/1.1 load generator, used when wrk is not installed.

``python -m bench.loadgen URL --connections N --seconds S --spec spec.json`` keeps N keep-alive
connections busy for S seconds, each sending the same request again as soon as the previous
answer is read, and prints what it measured as JSON (the fields of ``harness.Load``). It speaks
raw HTTP over asyncio streams, so that the client costs far less CPU than the server it loads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any
from urllib.parse import urlsplit


def _request(url: str, spec: dict[str, Any]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    body = (spec.get("body") or "").encode()
    lines = [f"{spec.get('method', 'GET')} {path} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in spec.get("headers", {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return parts.hostname or "127.0.0.1", parts.port or 80, head + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def _worker(
    host: str, port: int, request: bytes, deadline: float, stats: dict[str, Any]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            try:
                status = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                stats["errors"] += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            stats["latencies"].append(time.perf_counter() - started)
            if not 200 <= status < 400:
                stats["non_2xx"] += 1
    finally:
        writer.close()


async def run(url: str, connections: int, seconds: float, spec: dict[str, Any]) -> dict[str, Any]:
    """Load ``url`` with ``connections`` connections for ``seconds``; the measured figures."""
    host, port, request = _request(url, spec)
    stats: dict[str, Any] = {"latencies": [], "non_2xx": 0, "errors": 0}
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(_worker(host, port, request, deadline, stats) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    latencies = sorted(stats["latencies"])
    count = len(latencies)
    return {
        "requests_per_second": count / elapsed,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99_ms": latencies[min(count - 1, int(count * 0.99))] * 1000
        if latencies
        else float("nan"),
        "non_2xx": stats["non_2xx"],
        "errors": stats["errors"],
        "requests": count,
    }


def main() -> None:
    """Command line: print the figures as one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--spec", required=True, help="JSON: method, body, headers")
    args = parser.parse_args()
    with open(args.spec) as handle:
        spec = json.load(handle)
    print(json.dumps(asyncio.run(run(args.url, args.connections, args.seconds, spec))))


if __name__ == "__main__":
    main()
