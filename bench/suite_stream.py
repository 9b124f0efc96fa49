"""The live stream: many subscribers on one app while writes go on (issue 23).

Each write's 201 is timed, and so is each subscriber's receipt of that entry: the figure is the
p99 from a 201 to the event, over every subscriber and every write, on one SQLite node. A
dropped subscriber (one that fell ``TRAILKEEP_STREAM_QUEUE_ENTRIES`` behind) is a failure. The
subscribers run on asyncio in ``stream_listener_processes`` processes of their own
(``bench.stream_listeners``), so that listening is not what the figure measures. The server's
memory (RSS, its writer process included) is sampled from before the writes to after them.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from bench.config import Sizes
from bench.harness import ROOT, BenchServer, Result, Run, new_app, rss_kib

SUITE = "stream"
RSS_GROWTH_MAX_MIB = 10.0


class _Listeners:
    """One ``bench.stream_listeners`` process holding ``count`` subscriptions."""

    def __init__(self, url: str, app: dict[str, str], count: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.stream_listeners", url, app["app_id"], app["key"],
             str(count)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the listeners did not subscribe")

    def finish(self, last_seq: int) -> dict[str, Any]:
        """Tell the last seq written; what the streams received."""
        out, _ = self.proc.communicate(f"{last_seq}\n", timeout=120)
        if self.proc.returncode != 0:
            raise RuntimeError(f"the listeners failed ({self.proc.returncode})")
        got: dict[str, Any] = json.loads(out)
        return got

    def kill(self) -> None:
        """Stop it if it is still running."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _write(url: str, app: dict[str, str], count: int, rate: float) -> dict[str, Any]:
    """Single writes at ``rate`` a second, open loop (``bench.webhook_load write``): each is sent
    at its time whether or not the ones before were answered, so a slow server is offered the
    load the figure is about, not less."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.webhook_load", "write", url, app["app_id"], app["key"],
         "--rate", str(rate), "--count", str(count), "--connections", "8",
         "--action", "bench.stream"],
        capture_output=True, text=True, cwd=ROOT, check=True, timeout=count / rate + 600,
    )  # fmt: skip
    got: dict[str, Any] = json.loads(done.stdout)
    return got


def _sample_rss(pid: int, every: float, stop: threading.Event, into: list[int]) -> None:
    while not stop.wait(every):
        into.append(rss_kib(pid))


def run(run: Run, sizes: Sizes) -> None:
    """N subscribers on one app, single writes at a steady pace; p99 from 201 to event."""
    data = run.scratch("stream")
    url = f"sqlite:///{data / 'trailkeep.db'}"
    app = new_app(url)
    subscribers = sizes.stream_subscribers
    # Production caps are 100 streams an app and 10 a client IP; the target is 200
    # subscribers of one app, here all from one loopback address.
    env = {"TRAILKEEP_STREAMS_PER_APP": str(subscribers),
           "TRAILKEEP_STREAMS_PER_CLIENT": str(subscribers)}  # fmt: skip
    server = BenchServer(data, env).start()
    processes = max(1, min(sizes.stream_listener_processes, subscribers))
    shares = [subscribers // processes + (n < subscribers % processes) for n in range(processes)]
    groups: list[_Listeners] = []
    samples: list[int] = []
    stop = threading.Event()
    try:
        groups = [_Listeners(server.url, app, share) for share in shares]
        time.sleep(0.5)  # every stream joined its feed
        rss_start = rss_kib(server.pid)
        sampler = threading.Thread(target=_sample_rss, args=(server.pid, 1.0, stop, samples))
        sampler.start()
        wrote = _write(server.url, app, sizes.stream_writes, sizes.stream_write_rate)
        answered = {int(seq): at for seq, at in wrote["answered"].items()}
        round_trips, wall = wrote["round_trips"], wrote["seconds"]
        got = [group.finish(max(answered)) for group in groups]
        stop.set()
        sampler.join()
        rss_end = rss_kib(server.pid)
    finally:
        stop.set()
        for group in groups:
            group.kill()
        server.stop()
    arrived = [{int(k): v for k, v in a.items()} for g in got for a in g["arrived"]]
    dropped = sum(d for g in got for d in g["dropped"])
    delays: list[float] = []
    missing = 0
    for stream in arrived:
        for seq, at in answered.items():
            when = stream.get(seq)
            if when is None:
                missing += 1
            else:
                delays.append(max(0.0, when - at) * 1000)
    p99 = statistics.quantiles(delays, n=100)[98] if len(delays) >= 2 else float("nan")
    p50 = statistics.median(delays) if delays else float("nan")
    cpu = ", ".join(f"{g['cpu_seconds'] / wall:.0%}" for g in got)
    events = len(answered) * subscribers
    run.series["stream:rss_kib"] = [rss_start, *samples, rss_end]
    pace = len(answered) / wall
    run.add(Result(
        SUITE, f"201 → event p99, {subscribers} subscribers (SQLite)", p99, "ms",
        target=f"≤ 100 ms at {sizes.stream_write_rate:,.0f} writes/s, none dropped or missing",
        met=p99 <= 100 and not dropped and not missing and not wrote["failures"]
        and pace >= 0.95 * sizes.stream_write_rate,
        baseline=statistics.quantiles(round_trips, n=100)[98] if len(round_trips) >= 2 else None,
        baseline_name="p99 of the writes' own round trip, same run",
        notes=f"{len(answered)} single writes at {pace:,.0f}/s ({sizes.stream_write_rate:,.0f}/s "
        f"asked, open loop over 8 connections; {len(wrote['failures'])} failed), "
        f"{events:,} events out ({events / wall:,.0f}/s); p50 {p50:.1f} ms; {dropped} dropped, "
        f"{missing} events missing; listeners: {processes} asyncio process(es), CPU {cpu} of a "
        "core each",
    ))  # fmt: skip
    growth = (rss_end - rss_start) / 1024
    peak = max([rss_start, *samples, rss_end])
    run.add(Result(
        SUITE, f"server RSS growth over the writes, {subscribers} subscribers", growth, "MiB",
        target=f"≤ {RSS_GROWTH_MAX_MIB:.0f} MiB (memory flat)", met=growth <= RSS_GROWTH_MAX_MIB,
        baseline=rss_start / 1024, baseline_name="server RSS before the writes (streams open)",
        notes=f"serve and its writer process, /proc VmRSS; sampled every second: peak "
        f"{peak / 1024:.1f} MiB, after {rss_end / 1024:.1f} MiB",
    ))  # fmt: skip
