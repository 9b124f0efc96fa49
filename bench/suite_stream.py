"""The live stream: many subscribers on one app while writes go on (issue 23).

Each write's 201 is timed, and so is each subscriber's receipt of that entry: the figure is the
p99 from a 201 to the event, over every subscriber and every write, on one SQLite node. A
dropped subscriber (one that fell ``TRAILKEEP_STREAM_QUEUE_ENTRIES`` behind) is a failure.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import httpx

from bench.config import Sizes
from bench.harness import BenchServer, Result, Run, new_app

SUITE = "stream"


class _Listener:
    """One subscriber on a thread: when each seq arrived, and whether it was dropped."""

    def __init__(self, url: str, app_id: str, key: str) -> None:
        self.arrived: dict[int, float] = {}
        self.dropped = False
        self.ready = threading.Event()
        self._client = httpx.Client(base_url=url, timeout=60)
        request = self._client.build_request(
            "GET", f"/v1/apps/{app_id}/events/stream", headers={"Authorization": f"Bearer {key}"}
        )
        self._response = self._client.send(request, stream=True)
        self._response.raise_for_status()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        from trailkeep.sdk.sse import EventParser

        parser = EventParser()
        try:
            for chunk in self._response.iter_bytes():
                for event in parser.feed(chunk):
                    if event.event == "dropped":
                        self.dropped = True
                        return
                    if event.id is not None and event.data:
                        self.arrived[int(event.id)] = time.perf_counter()
        except httpx.HTTPError:
            return  # closed at the end

    def close(self) -> None:
        """Hang up."""
        self._response.close()
        self._client.close()
        self._thread.join(10)


def _write(
    url: str, app: dict[str, str], count: int, rate: float
) -> tuple[dict[int, float], list[float]]:
    """Single writes at ``rate`` a second: when each one's 201 came back, by seq; round trips."""
    answered: dict[int, float] = {}
    round_trips: list[float] = []
    headers = {"Authorization": f"Bearer {app['key']}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        started = time.perf_counter()
        for i in range(count):
            time.sleep(max(0.0, started + i / rate - time.perf_counter()))
            body = {"action": "bench.stream", "metadata": {"i": i}}
            sent = time.perf_counter()
            response = client.post(f"/v1/apps/{app['app_id']}/events", json=body)
            response.raise_for_status()
            answered[int(response.json()["seq"])] = time.perf_counter()
            round_trips.append((time.perf_counter() - sent) * 1000)
    return answered, round_trips


def run(run: Run, sizes: Sizes) -> None:
    """N subscribers on one app, single writes at a steady pace; p99 from 201 to event."""
    data = run.scratch("stream")
    url = f"sqlite:///{data / 'trailkeep.db'}"
    app = new_app(url)
    server = BenchServer(data).start()
    listeners: list[_Listener] = []
    try:
        listeners = [_Listener(server.url, app["app_id"], app["key"])
                     for _ in range(sizes.stream_subscribers)]  # fmt: skip
        time.sleep(0.5)  # every stream subscribed
        answered, round_trips = _write(
            server.url, app, sizes.stream_writes, sizes.stream_write_rate
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
            len(x.arrived) < len(answered) and not x.dropped for x in listeners
        ):
            time.sleep(0.05)
    finally:
        for listener in listeners:
            listener.close()
        server.stop()
    delays: list[float] = []
    missing = 0
    for listener in listeners:
        for seq, at in answered.items():
            got = listener.arrived.get(seq)
            if got is None:
                missing += 1
            else:
                delays.append(max(0.0, got - at) * 1000)
    dropped = sum(x.dropped for x in listeners)
    p99 = statistics.quantiles(delays, n=100)[98] if len(delays) >= 2 else float("nan")
    notes: dict[str, Any] = {
        "subscribers": len(listeners), "writes": len(answered),
        "rate": sizes.stream_write_rate, "p50": statistics.median(delays) if delays else None,
    }  # fmt: skip
    run.add(Result(
        SUITE, f"201 → event p99, {len(listeners)} subscribers (SQLite)", p99, "ms",
        target="≤ 100 ms, none dropped or missing", met=p99 <= 100 and not dropped and not missing,
        baseline=statistics.quantiles(round_trips, n=100)[98] if len(round_trips) >= 2 else None,
        baseline_name="p99 of the writes' own round trip, same run",
        notes=f"{notes['writes']} single writes at {notes['rate']:.0f}/s; p50 "
        f"{notes['p50'] or 0:.1f} ms; {dropped} dropped, {missing} events missing",
    ))  # fmt: skip
