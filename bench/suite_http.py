"""HTTP writes: a real `trailkeep serve`, loaded by wrk at 1 to 256 connections.

Single-entry writes (``POST /events``) and batches of 100 (``POST /events/batch``), on SQLite
and, when there is one, on PostgreSQL (one node, then three nodes sharing the database). The
ceiling is the same server answering ``GET /healthz`` (a route that does nothing) at 64
connections, measured in the same run.
"""

from __future__ import annotations

import json
import random
import threading
import time
from contextlib import ExitStack
from typing import Any

import httpx
from tests.pg import MissingTool, RedisServer

from bench.config import Sizes
from bench.datagen import ACTIONS, TARGETS
from bench.harness import BenchServer, LoadRun, Result, Run, load, new_app, new_apps, serving
from bench.idp_sessions import idp_vs_hs256
from bench.pgserver import Postgres
from bench.suite_ingest import prepared, rate_of, raw_variant
from trailkeep.log.record import EventWrite

SUITE = "http_write"
BATCH = 100


def bodies() -> tuple[str, str]:
    """(single-entry body, batch body of 100 entries), as the SDKs send them."""
    rng = random.Random(3)

    def one(n: int) -> dict[str, Any]:
        target = rng.choice(TARGETS)
        return {
            "action": rng.choice(ACTIONS), "target_type": target,
            "target_id": f"{target}_{rng.randrange(100_000)}",
            "metadata": {"amount": rng.randrange(10_000), "reason": "bench", "n": n},
            "project": "bench",
        }  # fmt: skip

    return json.dumps(one(0)), json.dumps({"events": [one(n) for n in range(BATCH)]})


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def _sweep(run: Run, sizes: Sizes, server: BenchServer, owner_url: str, db: str) -> dict[str, Any]:
    """Healthz at 64 connections, then both write routes at every concurrency.

    Each point writes to an app of its own, so every point starts from an empty log and the
    points differ only in concurrency (how an app's log size affects writes is the soak's to
    show).
    """
    single, batch = bodies()
    apps = iter(new_apps(owner_url, 2 * len(sizes.concurrencies)))
    noop = load(f"{server.url}/healthz", connections=64, seconds=sizes.load_seconds)
    series: dict[str, Any] = {"healthz_64": noop.requests_per_second, "single": [], "batch": []}
    for kind, path, body, per in (("single", "/events", single, 1),
                                  ("batch", "/events/batch", batch, BATCH)):  # fmt: skip
        for connections in sizes.concurrencies:
            app = next(apps)
            key, base = app["key"], f"{server.url}/v1/apps/{app['app_id']}"
            before = _commits(server)
            got = load(base + path, connections=connections, seconds=sizes.load_seconds,
                       method="POST", body=body, headers=_headers(key))  # fmt: skip
            after = _commits(server)
            point = {
                "connections": connections, "requests_s": got.requests_per_second,
                "entries_s": got.requests_per_second * per, "p50_ms": got.p50_ms,
                "p99_ms": got.p99_ms, "non_2xx": got.non_2xx, "errors": got.errors,
                "per_commit": (after[0] - before[0]) / max(1.0, after[1] - before[1]),
            }  # fmt: skip
            series[kind].append(point)
            print(f"  {db} {kind} c={connections}: {point['entries_s']:,.0f} entries/s "
                  f"p50 {got.p50_ms:.1f} ms p99 {got.p99_ms:.1f} ms"
                  + (f" NON-2XX {got.non_2xx}" if got.non_2xx else ""), flush=True)  # fmt: skip
    run.series[f"{SUITE}:{db}"] = series
    return series


def _commits(server: BenchServer) -> tuple[float, float]:
    """(entries, group commits) the server has committed so far, from its /metrics."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("trailkeep_commit_batch_entries_sum", "trailkeep_commit_batch_entries_count"):
            found[name.rpartition("_")[2]] = float(value)
    if len(found) != 2:  # a renamed metric must not turn into a ceiling at 1 a transaction
        raise RuntimeError("the server's /metrics has no trailkeep_commit_batch_entries")
    return found["sum"], found["count"]


def _at(series: dict[str, Any], kind: str, connections: int) -> dict[str, Any]:
    return next(p for p in series[kind] if p["connections"] == connections)


def _peak(series: dict[str, Any], kind: str) -> dict[str, Any]:
    return max(series[kind], key=lambda p: p["entries_s"])


def _faults(series: dict[str, Any]) -> str:
    bad = sum(p["non_2xx"] + p["errors"] for kind in ("single", "batch") for p in series[kind])
    return f"{bad} failed requests during the sweep" if bad else ""


def _record(run: Run, series: dict[str, Any], db: str, label: str) -> None:
    at64 = _at(series, "single", 64)
    ok = at64["entries_s"] >= 5_000 and at64["p99_ms"] <= 50
    run.add(Result(
        SUITE, f"POST /events, 64 clients ({label})", at64["entries_s"], "entries/s",
        target="≥ 5,000 entries/s with p99 ≤ 50 ms" if db == "sqlite" else "",
        met=ok if db == "sqlite" else None, baseline=series["healthz_64"],
        baseline_name="GET /healthz (no-op route), 64 clients", ratio_target="≥ 0.5",
        ratio_met=at64["entries_s"] / series["healthz_64"] >= 0.5, notes=_faults(series),
    ))  # fmt: skip
    run.add(Result(
        SUITE, f"POST /events p99 latency, 64 clients ({label})", at64["p99_ms"], "ms",
        target="≤ 50 ms" if db == "sqlite" else "",
        met=at64["p99_ms"] <= 50 if db == "sqlite" else None,
        notes=f"p50 {at64['p50_ms']:.1f} ms",
    ))  # fmt: skip
    at32 = _at(series, "single", 32) if any(
        p["connections"] == 32 for p in series["single"]) else at64  # fmt: skip
    run.add(Result(
        SUITE, f"POST /events, {at32['connections']} clients ({label})", at32["entries_s"],
        "entries/s", notes=f"p50 {at32['p50_ms']:.1f} ms, p99 {at32['p99_ms']:.1f} ms",
    ))  # fmt: skip
    peak = _peak(series, "batch")
    ceiling = series.get("storage_ceiling")
    raw_name = "raw sqlite3 executemany of the same rows"
    run.add(Result(
        SUITE, f"POST /events/batch (100 a request), peak ({label})", peak["entries_s"],
        "entries/s", target="≥ 40,000 entries/s" if db == "sqlite" else "",
        met=peak["entries_s"] >= 40_000 if db == "sqlite" else None,
        baseline=ceiling["entries_s"] if ceiling else None,
        baseline_name=f"{raw_name}, {ceiling['per_commit']:,} a transaction" if ceiling else "",
        notes=f"at {peak['connections']} clients, group commits of ~{peak['per_commit']:,.0f}"
        f" entries; p99 {peak['p99_ms']:.1f} ms",
    ))  # fmt: skip
    if ceiling:
        run.add(Result(
            SUITE, f"{raw_name} as the batch peak commits them ({label})",
            ceiling["entries_s"], "entries/s",
            notes=f"the storage's ceiling for that figure: the batch body's entries, "
            f"{ceiling['per_commit']:,} a transaction, tree tiles included",
        ))  # fmt: skip
    run.add(Result(
        SUITE, f"GET /healthz (no-op route), 64 clients ({label})", series["healthz_64"],
        "requests/s", notes="the ceiling of the HTTP stack on this machine",
    ))  # fmt: skip


def _sqlite(run: Run, sizes: Sizes) -> dict[str, Any]:
    data = run.scratch("http_sqlite")
    url = f"sqlite:///{data / 'trailkeep.db'}"
    new_apps(url, 0)  # migrated before the server starts
    server = BenchServer(data).start()
    try:
        series = _sweep(run, sizes, server, url, "sqlite")
        _beside_export(run, sizes, server, url, _at(series, "batch", 64)["entries_s"])
        _beside_reads(run, sizes, server, url, _at(series, "single", 32)["entries_s"])
        idp_vs_hs256(run, sizes, server, url, bodies()[0])
    finally:
        server.stop()
    per_commit = max(1, round(_peak(series, "batch")["per_commit"]))
    series["storage_ceiling"] = {
        "per_commit": per_commit, "entries_s": _storage_ceiling(run, sizes, per_commit)
    }  # fmt: skip
    _record(run, series, "sqlite", "SQLite")
    return series


def _storage_ceiling(run: Run, sizes: Sizes, per_commit: int) -> float:
    """Raw sqlite3 executemany of rows like the batch body's, ``per_commit`` a transaction.

    What the storage alone does with what the server wrote at its batch peak: the same 100
    entries again and again (so the same targets), in transactions of the server's mean
    group commit, with their tree tiles, the same schema and connection settings.
    """
    scratch = run.scratch("http_ceiling")
    template = scratch / "template.db"
    app_id = new_app(f"sqlite:///{template}")["app_id"]
    items = [EventWrite.model_validate(item) for item in json.loads(bodies()[1])["events"]]
    count = max(sizes.ingest_batch100_entries, 4 * per_commit)
    pending = prepared(app_id, (items[n % len(items)] for n in range(count)))
    variant = raw_variant(per_commit)
    best = max(
        rate_of(variant, template, scratch, app_id, pending, sizes.ingest_max_seconds)
        for _ in range(sizes.ingest_rounds)
    )
    print(f"  sqlite raw, {per_commit} a transaction: {best:,.0f} entries/s", flush=True)
    return best


def _filled_app(sizes: Sizes, server: BenchServer, url: str) -> tuple[str, dict[str, str]]:
    """(URL prefix, headers) of a new app whose log has two seconds of batch writes in it."""
    _, batch = bodies()
    app = new_apps(url, 1)[0]
    base, headers = f"{server.url}/v1/apps/{app['app_id']}", _headers(app["key"])
    load(f"{base}/events/batch", connections=16, seconds=min(2.0, sizes.load_seconds),
         method="POST", body=batch, headers=headers)  # fmt: skip
    return base, headers


def _beside_export(run: Run, sizes: Sizes, server: BenchServer, url: str, alone: float) -> None:
    """Batch writes at 64 clients while a CSV export streams the same app's log, in a loop.

    The export's Python (a CSV row per entry) holds the GIL for long stretches: this is where
    the writer's SQLite work must not wait for the GIL once per row (store/packed.py).
    """
    _, batch = bodies()
    base, headers = _filled_app(sizes, server, url)
    stop, exported = threading.Event(), [0]

    def export_loop() -> None:
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                params = {"format": "csv"}
                with client.stream("GET", f"{base}/export", params=params, headers=headers) as r:
                    for chunk in r.iter_bytes():
                        exported[0] += chunk.count(b"\n")
                        if stop.is_set():
                            break

    exporter = threading.Thread(target=export_loop, name="bench-export")
    started = time.perf_counter()
    exporter.start()
    try:
        got = load(f"{base}/events/batch", connections=64, seconds=sizes.load_seconds,
                   method="POST", body=batch, headers=headers)  # fmt: skip
    finally:
        stop.set()
        exporter.join()
    rows_s = exported[0] / (time.perf_counter() - started)
    entries_s = got.requests_per_second * BATCH
    run.series[f"{SUITE}:beside_export"] = {"entries_s": entries_s, "export_rows_s": rows_s,
                                            "p99_ms": got.p99_ms, "alone": alone}  # fmt: skip
    print(
        f"  sqlite batch c=64 beside an export: {entries_s:,.0f} entries/s, "
        f"export {rows_s:,.0f} rows/s",
        flush=True,
    )
    run.add(Result(
        SUITE, "POST /events/batch, 64 clients, while a CSV export streams (SQLite)", entries_s,
        "entries/s", baseline=alone, baseline_name="the same load with no export, same run",
        notes=f"p99 {got.p99_ms:.0f} ms; the export meanwhile {rows_s:,.0f} rows/s",
    ))  # fmt: skip


def _beside_reads(run: Run, sizes: Sizes, server: BenchServer, url: str, alone: float) -> None:
    """Single writes at 32 clients while 64 more clients list the same app's log.

    Reads run in the event loop's thread pool; the writer is a process of its own
    (server/ingest/process.py), so its commits never wait in that pool's queue, nor for the
    GIL, behind the reads.
    """
    single, _ = bodies()
    base, headers = _filled_app(sizes, server, url)
    reads = LoadRun(f"{base}/events?limit=100", connections=64,
                    seconds=sizes.load_seconds + 2, headers=headers)  # fmt: skip
    try:
        time.sleep(1.0)  # the readers are at full speed before the writers start
        got = load(f"{base}/events", connections=32, seconds=sizes.load_seconds,
                   method="POST", body=single, headers=headers)  # fmt: skip
    finally:
        listed = reads.result()
    run.series[f"{SUITE}:beside_reads"] = {
        "entries_s": got.requests_per_second, "p99_ms": got.p99_ms, "alone": alone,
        "reads_s": listed.requests_per_second, "failed": got.non_2xx + listed.non_2xx,
    }  # fmt: skip
    print(f"  sqlite single c=32 beside 64 readers: {got.requests_per_second:,.0f} entries/s, "
          f"reads {listed.requests_per_second:,.0f}/s", flush=True)  # fmt: skip
    run.add(Result(
        SUITE, "POST /events, 32 clients, while 64 clients list the log (SQLite)",
        got.requests_per_second, "entries/s", baseline=alone,
        baseline_name="the same load with no readers, same run",
        notes=f"p50 {got.p50_ms:.0f} ms, p99 {got.p99_ms:.0f} ms; meanwhile "
        f"{listed.requests_per_second:,.0f} pages of 100 a second"
        + (f"; {got.non_2xx + listed.non_2xx} failed requests" if got.non_2xx + listed.non_2xx
           else ""),
    ))  # fmt: skip


def _postgres(run: Run, sizes: Sizes, pg: Postgres, sqlite: dict[str, Any]) -> None:
    owner, service = pg.database()
    env = {"TRAILKEEP_DATABASE_URL": service}
    server = BenchServer(run.scratch("http_pg"), env).start()
    try:
        series = _sweep(run, sizes, server, owner, "postgres")
    finally:
        server.stop()
    _record(run, series, "postgres", "PostgreSQL")
    pg_batch, lite_batch = _peak(series, "batch")["entries_s"], _peak(sqlite, "batch")["entries_s"]
    run.add(Result(
        SUITE, "POST /events/batch peak, PostgreSQL vs SQLite", pg_batch, "entries/s",
        baseline=lite_batch, baseline_name="the SQLite figure, same run",
        ratio_target="≥ 0.6", ratio_met=pg_batch / lite_batch >= 0.6,
    ))  # fmt: skip
    _nodes(run, sizes, pg, _at(series, "single", 64)["entries_s"])
    _workers(run, sizes, pg, _at(series, "single", 64)["entries_s"])


def _nodes(run: Run, sizes: Sizes, pg: Postgres, one_node: float) -> None:
    """Several nodes on one database, the 64 connections split between them."""
    owner, service = pg.database()
    app = new_app(owner)
    single, _ = bodies()
    env = {"TRAILKEEP_DATABASE_URL": service}
    with ExitStack() as stack:
        servers = []
        for n in range(sizes.nodes):
            server = BenchServer(run.scratch(f"http_pg_node{n}"), env).start()
            stack.callback(server.stop)
            servers.append(server)
        share = [64 // sizes.nodes + (1 if n < 64 % sizes.nodes else 0) for n in range(sizes.nodes)]
        runs = [LoadRun(f"{s.url}/v1/apps/{app['app_id']}/events", connections=c,
                        seconds=sizes.load_seconds, method="POST", body=single,
                        headers=_headers(app["key"]))
                for s, c in zip(servers, share, strict=True)]  # fmt: skip
        loads = [r.result() for r in runs]
    total = sum(x.requests_per_second for x in loads)
    run.series[f"{SUITE}:postgres_nodes"] = [x.__dict__ for x in loads]
    run.add(Result(
        SUITE, f"POST /events, {sizes.nodes} nodes on one PostgreSQL, 64 clients", total,
        "entries/s", baseline=one_node, baseline_name="one node, 64 clients",
        ratio_target="≥ 1.5", ratio_met=total / one_node >= 1.5,
        notes=f"p99 per node {', '.join(f'{x.p99_ms:.0f}' for x in loads)} ms; "
        "nodes, PostgreSQL and wrk share 2 cores",
    ))  # fmt: skip


def _workers(run: Run, sizes: Sizes, pg: Postgres, one_node: float) -> None:
    """One `serve --workers N` (N = the node count), with the Redis it requires."""
    try:
        redis = RedisServer().start()
    except MissingTool as exc:  # `make bench` installs it; a bare `python -m bench` may lack it
        run.info[f"{SUITE}:workers"] = f"not measured: {exc}"
        return
    owner, service = pg.database()
    app = new_app(owner)
    single, _ = bodies()
    env = {"TRAILKEEP_DATABASE_URL": service, "TRAILKEEP_REDIS_URL": redis.url()}
    args = ("--workers", str(sizes.nodes))
    try:
        with serving(run.scratch("http_pg_workers"), env, args) as server:
            got = load(f"{server.url}/v1/apps/{app['app_id']}/events", connections=64,
                       seconds=sizes.load_seconds, method="POST", body=single,
                       headers=_headers(app["key"]))  # fmt: skip
    finally:
        redis.stop()
    run.series[f"{SUITE}:postgres_workers"] = got.__dict__
    run.add(Result(
        SUITE, f"POST /events, `serve --workers {sizes.nodes}` on PostgreSQL, 64 clients",
        got.requests_per_second, "entries/s", baseline=one_node,
        baseline_name="one node, 64 clients",
        notes=f"p99 {got.p99_ms:.0f} ms; limits counted in Redis (one round trip a write); "
        "workers, PostgreSQL, Redis and wrk share 2 cores",
    ))  # fmt: skip


def run(run: Run, sizes: Sizes, pg: Postgres | None) -> None:
    """SQLite always; PostgreSQL when it is available."""
    sqlite = _sqlite(run, sizes)
    if pg is not None:
        run.info[f"{SUITE}:postgresql_version"] = pg.version
        _postgres(run, sizes, pg, sqlite)
