"""Webhook delivery (issue 23): backlog throughput, live latency, and a dead destination beside.

One SQLite node with the production delivery settings (``TRAILKEEP_WEBHOOK_*`` defaults), its
receivers on loopback (``TRAILKEEP_WEBHOOK_ALLOW_PRIVATE=1``), each a ``bench.webhook_load
receive`` process of its own that answers 204 and records when each entry arrived.

- Throughput: an app prefilled by batches, a destination created, then replayed from seq 0
  (a destination sends what is appended from its creation on; a replay is how a backlog is
  sent); entries a second until the receiver has every one, against the same app's NDJSON
  export read over HTTP to its end, in the same run.
- Live: single writes at a steady pace from ``bench.webhook_load write`` processes, two
  destinations on fast receivers: the p99 from each write's 201 to its arrival, at each.
- The same with dead destinations beside (one that accepts connections and never answers, one
  refused): the live destinations' p99 and the writes' p99 against the run without them.
- The live run again on a server whose only change is a shorter poll, to show what that
  setting is worth against the default.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from bench.config import Sizes
from bench.harness import ROOT, BenchServer, Result, Run, free_port, new_apps

SUITE = "webhooks"
LIVE_P99_MAX_MS = 1000.0
THROUGHPUT_MIN = 20_000.0
DEAD_RATIO_MAX = 1.5
FAST_POLL = "0.1"  # TRAILKEEP_WEBHOOK_POLL_INTERVAL of the comparison run; the default is 1 s


class _Receiver:
    """One receiver process."""

    def __init__(self, hang: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.webhook_load", "receive", str(self.port),
             *(["--hang"] if hang else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the receiver did not start")

    def arrivals(self, last_seq: int) -> dict[int, float]:
        """Wait until an entry at or past ``last_seq`` arrived (or a deadline); every arrival."""
        out, _ = self.proc.communicate(f"{last_seq}\n", timeout=300)
        return {int(k): v for k, v in json.loads(out).items()}

    def kill(self) -> None:
        """Stop it if it is still running."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _create(client: httpx.Client, app: dict[str, str], url: str) -> str:
    answer = client.post(f"/v1/apps/{app['app_id']}/webhooks", json={"url": url})
    answer.raise_for_status()
    return str(answer.json()["id"])


def _size(client: httpx.Client, app: dict[str, str]) -> int:
    answer = client.get(f"/v1/apps/{app['app_id']}/events", params={"limit": 1})
    answer.raise_for_status()
    return int(answer.json()["data"][0]["seq"]) + 1


def _client(server: BenchServer, app: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=120,
                        headers={"Authorization": f"Bearer {app['key']}"})  # fmt: skip


def _throughput(run: Run, sizes: Sizes, server: BenchServer, app: dict[str, str]) -> None:
    with _client(server, app) as client:
        body = {"events": [{"action": "bench.fill", "metadata": {"n": n}} for n in range(1000)]}
        for _ in range(sizes.webhook_entries // 1000):
            client.post(f"/v1/apps/{app['app_id']}/events/batch", json=body).raise_for_status()
        started = time.perf_counter()
        exported = 0
        with client.stream("GET", f"/v1/apps/{app['app_id']}/export") as answer:
            answer.raise_for_status()
            for chunk in answer.iter_bytes():
                exported += chunk.count(b"\n")
        export_rate = exported / (time.perf_counter() - started)
        receiver = _Receiver()
        try:
            hook = _create(client, app, receiver.url)
            started = time.perf_counter()
            client.post(f"/v1/apps/{app['app_id']}/webhooks/{hook}/replay",
                        json={"from_seq": 0}).raise_for_status()  # fmt: skip
            last = _size(client, app) - 1
            arrived = receiver.arrivals(last)
        finally:
            receiver.kill()
    missing = sum(seq not in arrived for seq in range(last + 1))
    seconds = max(arrived.values()) - started if arrived else float("nan")
    rate = len(arrived) / seconds
    run.add(Result(
        SUITE, f"delivery of a {sizes.webhook_entries:,}-entry backlog to one destination",
        rate, "entries/s", target=f"≥ {THROUGHPUT_MIN:,.0f}/s, none missing",
        met=rate >= THROUGHPUT_MIN and not missing, baseline=export_rate,
        baseline_name="NDJSON export of the same app over HTTP, same run",
        notes=f"{len(arrived):,} entries in {seconds:.1f} s from the replay's request; "
        f"{missing} missing; the export read {exported:,} lines",
    ))  # fmt: skip


@dataclass
class _Live:
    """What one live run measured."""

    p99: float
    p50: float
    writes_p99: float
    rate: float
    writes: int
    missing: int
    failures: int


def _live(sizes: Sizes, server: BenchServer, app: dict[str, str], dead: bool) -> _Live:
    receivers = [_Receiver(), _Receiver()]
    hanging = _Receiver(hang=True) if dead else None
    writers: list[subprocess.Popen[str]] = []
    try:
        with _client(server, app) as client:
            for receiver in receivers:
                _create(client, app, receiver.url)
            if hanging is not None:
                _create(client, app, hanging.url)
                _create(client, app, f"http://127.0.0.1:{free_port()}/refused")
            # Warm: the first write delivered to both before the measured ones start.
            client.post(f"/v1/apps/{app['app_id']}/events", json={"action": "bench.warm"})
            time.sleep(2 * 1.0)  # two of the deliverer's polls (TRAILKEEP_WEBHOOK_POLL_INTERVAL)
        processes = sizes.webhook_writer_processes
        count = round(sizes.webhook_write_rate * sizes.webhook_live_seconds / processes)
        for n in range(processes):
            writers.append(subprocess.Popen(
                [sys.executable, "-m", "bench.webhook_load", "write", server.url, app["app_id"],
                 app["key"], "--rate", str(sizes.webhook_write_rate / processes), "--count",
                 str(count), "--offset", str(n / processes)],
                stdout=subprocess.PIPE, text=True, cwd=ROOT,
            ))  # fmt: skip
        done = [json.loads(w.communicate(timeout=600)[0]) for w in writers]
        answered = {int(k): v for d in done for k, v in d["answered"].items()}
        last = max(answered)
        arrivals = [receiver.arrivals(last) for receiver in receivers]
    finally:
        for proc in writers:
            if proc.poll() is None:
                proc.kill()
        for receiver in [*receivers, *([hanging] if hanging else [])]:
            receiver.kill()
    delays = [(got[seq] - at) * 1000 for got in arrivals for seq, at in answered.items()
              if seq in got]  # fmt: skip
    round_trips = [t for d in done for t in d["round_trips"]]
    return _Live(
        p99=_p99(delays), p50=statistics.median(delays) if delays else float("nan"),
        writes_p99=_p99(round_trips), rate=len(answered) / max(d["seconds"] for d in done),
        writes=len(answered), missing=len(answered) * len(arrivals) - len(delays),
        failures=sum(len(d["failures"]) for d in done),
    )  # fmt: skip


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else float("nan")


def run(run: Run, sizes: Sizes) -> None:
    """Throughput of a backlog, then live latency without and with dead destinations."""
    data = run.scratch("webhooks")
    backlog, alone, beside_dead = new_apps(f"sqlite:///{data / 'trailkeep.db'}", 3, "webhooks")
    server = BenchServer(data, {"TRAILKEEP_WEBHOOK_ALLOW_PRIVATE": "1"}).start()
    try:
        _throughput(run, sizes, server, backlog)
        live = _live(sizes, server, alone, dead=False)
        beside = _live(sizes, server, beside_dead, dead=True)
    finally:
        server.stop()
    # The same live run with a shorter poll (not the default): what the setting is worth.
    faster = run.scratch("webhooks-poll")
    (quick,) = new_apps(f"sqlite:///{faster / 'trailkeep.db'}", 1, "webhooks poll")
    env = {"TRAILKEEP_WEBHOOK_ALLOW_PRIVATE": "1", "TRAILKEEP_WEBHOOK_POLL_INTERVAL": FAST_POLL}
    server = BenchServer(faster, env).start()
    try:
        polled = _live(sizes, server, quick, dead=False)
    finally:
        server.stop()
    pace = f"{sizes.webhook_write_rate:,.0f}/s asked"
    for label, got in (("", live), (" beside two dead ones", beside)):
        run.add(Result(
            SUITE, f"201 → delivery p99, 2 live destinations{label}", got.p99, "ms",
            target=f"< {LIVE_P99_MAX_MS:,.0f} ms, none missing",
            met=got.p99 < LIVE_P99_MAX_MS and not got.missing and not got.failures,
            baseline=live.p99 if label else got.writes_p99,
            baseline_name="the same without dead destinations, same run" if label else
            "p99 of the writes' own round trip, same run",
            ratio_target=f"≤ {DEAD_RATIO_MAX}" if label else "",
            ratio_met=got.p99 <= DEAD_RATIO_MAX * live.p99 if label else None,
            notes=f"{got.writes:,} single writes at {got.rate:,.0f}/s ({pace}); p50 "
            f"{got.p50:,.0f} ms; {got.missing} deliveries missing; {got.failures} writes failed",
        ))  # fmt: skip
    run.add(Result(
        SUITE, f"201 → delivery p99, 2 live destinations, poll {FAST_POLL} s (not the default)",
        polled.p99, "ms", target=f"< {LIVE_P99_MAX_MS:,.0f} ms, none missing",
        met=polled.p99 < LIVE_P99_MAX_MS and not polled.missing and not polled.failures,
        baseline=live.p99, baseline_name="the same at the default poll (1 s), same run",
        notes=f"TRAILKEEP_WEBHOOK_POLL_INTERVAL={FAST_POLL}; {polled.writes:,} single writes at "
        f"{polled.rate:,.0f}/s ({pace}); p50 {polled.p50:,.0f} ms; {polled.missing} deliveries "
        f"missing; {polled.failures} writes failed",
    ))  # fmt: skip
    run.add(Result(
        SUITE, "writes' round-trip p99 beside two dead destinations", beside.writes_p99, "ms",
        target="unchanged within noise", baseline=live.writes_p99,
        baseline_name="the same without dead destinations, same run",
        ratio_target=f"≤ {DEAD_RATIO_MAX}",
        ratio_met=beside.writes_p99 <= DEAD_RATIO_MAX * live.writes_p99,
        notes=f"{beside.writes:,} writes at {beside.rate:,.0f}/s; {live.rate:,.0f}/s without",
    ))  # fmt: skip
