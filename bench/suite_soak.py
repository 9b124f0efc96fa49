"""Memory under sustained ingest: the server's RSS, sampled while wrk writes without pause.

Bounded: ``soak_seconds`` (2 minutes in the full run, not the 10 the target is stated for, to
keep `make bench` under 10 minutes), ``soak_connections`` clients sending single-entry writes,
RSS read from ``/proc/<pid>/status`` of the server and of its writer process every
``soak_sample_seconds``. Growth is counted from the first sample at or after
``soak_warmup_seconds`` (one minute) to the largest sample after it.
"""

from __future__ import annotations

import itertools
import time

from bench.config import Sizes
from bench.harness import LoadRun, Result, Run, new_app, rss_kib, serving
from bench.suite_http import bodies
from trailkeep.server.store import Store

SUITE = "soak"


def run(run: Run, sizes: Sizes) -> None:
    """Write for ``soak_seconds`` and watch the server's resident memory."""
    data = run.scratch(SUITE)
    app = new_app(f"sqlite:///{data / 'trailkeep.db'}")
    single, _ = bodies()
    samples: list[tuple[float, int, int]] = []  # (seconds, RSS KiB, entries in the log)
    store = Store(f"sqlite:///{data / 'trailkeep.db'}")
    with serving(data) as server:
        load = LoadRun(
            f"{server.url}/v1/apps/{app['app_id']}/events",
            connections=sizes.soak_connections, seconds=sizes.soak_seconds, method="POST",
            body=single,
            headers={"Authorization": f"Bearer {app['key']}", "Content-Type": "application/json"},
        )  # fmt: skip
        started = time.monotonic()
        while load.proc.poll() is None:
            size = store.log_size(app["app_id"])
            samples.append((time.monotonic() - started, rss_kib(server.pid), size))
            time.sleep(sizes.soak_sample_seconds)
        got = load.result()
    store.close()
    after = [kib for t, kib, _ in samples if t >= sizes.soak_warmup_seconds] or [samples[-1][1]]
    base, peak = after[0], max(after)
    growth = (peak - base) / base * 100
    run.series[SUITE] = {"samples": samples, "warmup_s": sizes.soak_warmup_seconds}
    run.add(Result(
        SUITE, "server RSS growth after the first minute", growth, "%",
        target="≤ 10%", met=growth <= 10,
        notes=f"{base / 1024:.0f} → {peak / 1024:.0f} MiB from "
        f"{sizes.soak_warmup_seconds:.0f} s to the end of a {sizes.soak_seconds:.0f} s soak "
        f"at {got.requests_per_second:,.0f} entries/s ({sizes.soak_connections} clients)",
    ))  # fmt: skip
    run.add(Result(
        SUITE, "writes during the soak", got.requests_per_second, "entries/s",
        notes=f"{got.requests:,} requests, {got.non_2xx + got.errors} failed",
    ))  # fmt: skip
    rates = _rates(samples)
    if len(rates) >= 2:
        first, last = rates[0][1], rates[-1][1]
        run.add(Result(
            SUITE, "write rate at the end of the soak", last, "entries/s", baseline=first,
            baseline_name="the rate in the first sampling interval",
            notes=f"the log grew to {samples[-1][2]:,} entries",
        ))  # fmt: skip


def _rates(samples: list[tuple[float, int, int]]) -> list[tuple[float, float]]:
    """(time, entries a second) between consecutive samples."""
    return [
        (t1, (n1 - n0) / (t1 - t0))
        for (t0, _, n0), (t1, _, n1) in itertools.pairwise(samples)
        if t1 > t0
    ]
