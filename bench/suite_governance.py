"""Retention and erasure on a 1,000,000-entry log (SQLite).

A purge erases the content of every entry older than its cutoff in chunks of 1,000, each one
transaction that writes the stubs, raises the horizon, deletes the rows and appends its
``retention.purge`` entry. Its baseline is the storage alone, measured in the same run on a copy
of the same file: raw sqlite3 deleting the same rows in the same chunks (``secure_delete`` on,
one durable commit a chunk, the append-only triggers dropped), with no stubs and no log entries.
The erasure of one subject (an actor with about 1,000 entries) is timed on its own, and single
writes to the file's other app are timed alone and while the purge runs. On PostgreSQL a fresh
database is filled and purged the same way, against raw DELETEs of the same rows in a copy.
Steady retention writes a round of entries and purges the previous round, again and again, and
watches the SQLite file's size: freed pages must be reused, so it stops growing.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import datagen, fixtures
from bench.config import Sizes
from bench.harness import LoadRun, Result, Run, load, secret_key, serving
from bench.pgserver import Postgres
from trailkeep.log.record import Origin
from trailkeep.server.governance import RETENTION
from trailkeep.server.governance.retention import PURGE_CHUNK, Retention
from trailkeep.server.governance.subjects import Subjects
from trailkeep.server.provision import create_app
from trailkeep.server.store import Store, Subject

SUITE = "governance"
ORIGIN = Origin(ip=None, user_agent="bench")


def _copy(data: fixtures.DataDir, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    target = into / "trailkeep.db"
    shutil.copyfile(data.path / "trailkeep.db", target)
    # The copy's 2 GB of dirty pages are written back now, not during the next measurement's
    # fsyncs.
    os.sync()
    return target


def _raw_delete(db: Path, app_id: str, count: int) -> float:
    """Seconds raw sqlite3 takes to delete ``count`` entries, chunk by chunk, durably."""
    connection = sqlite3.connect(db, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON"):
            connection.execute(f"PRAGMA {pragma}")
        for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'"
        ).fetchall():
            connection.execute(f"DROP TRIGGER {name}")
        started = time.perf_counter()
        for low in range(0, count, PURGE_CHUNK):
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "DELETE FROM events WHERE app_id = ? AND seq >= ? AND seq < ?",
                (app_id, low, low + PURGE_CHUNK),
            )
            connection.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        connection.close()


def _purge_all(store: Store, app_id: str) -> tuple[int, float]:
    """Purge every entry of the app now: (entries erased, seconds)."""
    started = time.perf_counter()
    report = Retention(store).purge(
        app_id, datetime.now(UTC) + timedelta(minutes=1), RETENTION, ORIGIN
    )
    return report.erased, time.perf_counter() - started


def _postgres(run: Run, sizes: Sizes, pg: Postgres) -> None:
    """The purge on PostgreSQL, against raw DELETEs of the same rows in a copy of the database."""
    import psycopg

    owner, service = pg.database()
    store = Store(service, secrets=secret_key())
    try:
        app_id = create_app(store, "bench purge").app_id
        datagen.fill(store, [app_id], sizes.purge_pg_entries)
        with psycopg.connect(owner, autocommit=True) as c:
            # A copy for the baseline, made while nothing is connected to the original.
            store.close()
            name = str(c.info.dbname)
            c.execute(f"CREATE DATABASE {name}_raw TEMPLATE {name}")
        erased, seconds = _purge_all(store, app_id)
    finally:
        store.close()
    raw_url = owner.rsplit("/", 1)[0] + f"/{name}_raw"
    with psycopg.connect(raw_url, autocommit=True) as c:
        c.execute("SET session_replication_role = replica")  # no triggers: the storage alone
        started = time.perf_counter()
        for low in range(0, sizes.purge_pg_entries, PURGE_CHUNK):
            with c.transaction():
                c.execute(
                    "DELETE FROM events WHERE app_id = %s AND seq >= %s AND seq < %s",
                    (app_id, low, low + PURGE_CHUNK),
                )
        raw_rate = sizes.purge_pg_entries / (time.perf_counter() - started)
    rate = erased / seconds
    run.add(Result(
        SUITE, "purge, PostgreSQL", rate, "entries/s",
        target="≥ 50,000 entries/s", met=rate >= 50_000,
        baseline=raw_rate, baseline_name=f"raw DELETE of the same rows, {PURGE_CHUNK:,} a commit",
        notes=f"{erased:,} entries of a fresh {sizes.purge_pg_entries:,}-entry database; "
        "each chunk writes its stubs and deletes its rows (a statement each) and appends its "
        "retention.purge entry; no rest between chunks (PostgreSQL queues the writers)",
    ))  # fmt: skip


def _steady(run: Run, sizes: Sizes) -> None:
    """Write a round, purge the round before, again and again: the file must stop growing."""
    work = run.scratch("governance_steady")
    db = work / "trailkeep.db"
    store = Store(f"sqlite:///{db}", secrets=secret_key())
    start = datetime.now(UTC) - timedelta(days=sizes.steady_rounds + 1)
    sizes_mib: list[float] = []
    try:
        store.migrate()
        app_id = create_app(store, "bench steady").app_id
        for round_ in range(sizes.steady_rounds):
            # Each round's entries span one day; the purge keeps the newest round only.
            end = start + timedelta(days=round_ + 1)
            datagen.fill(store, [app_id], sizes.steady_entries, days=1, seed=round_, end=end)
            Retention(store).purge(app_id, end - timedelta(days=1), RETENTION, ORIGIN)
            store.checkpoint_wal()  # the file itself holds everything (a purge ends so anyway)
            sizes_mib.append(db.stat().st_size / 2**20)
    finally:
        store.close()
    kept = _kept_per_entry(db)
    # After the second round each purge frees a round's pages for the next: the file then
    # grows only by what the log keeps of an erased entry for ever (its stub, and its leaf in
    # the tree) so that proofs stay valid; the content's pages are reused.
    growth = (sizes_mib[-1] - sizes_mib[1]) * 2**20
    steady = growth / (sizes.steady_entries * (sizes.steady_rounds - 2))
    live = sizes_mib[0] * 2**20 / sizes.steady_entries
    run.add(Result(
        SUITE, "SQLite file growth per entry, steady write + retention", steady, "bytes",
        baseline=kept, baseline_name="what an erased entry keeps: its stub and its tree leaf",
        ratio_target="≤ 1.1", ratio_met=steady <= 1.1 * kept,
        notes=f"{sizes.steady_rounds} rounds of {sizes.steady_entries:,} entries, each purging "
        f"the round before; a live entry takes {live:,.0f} bytes; the file after each round "
        "(MiB): " + ", ".join(f"{size:,.1f}" for size in sizes_mib),
    ))  # fmt: skip


def _kept_per_entry(db: Path) -> float:
    """Bytes of the file that each erased entry keeps: its stub (with its indexes), its leaf."""
    connection = sqlite3.connect(db)
    try:
        pages = dict(connection.execute(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name"
        ).fetchall())  # fmt: skip
        stubs = connection.execute("SELECT count(*) FROM erased_entries").fetchone()[0]
        leaves = connection.execute("SELECT sum(size) FROM log_heads").fetchone()[0]
    finally:
        connection.close()
    stub_bytes = sum(
        size for name, size in pages.items()
        if name == "erased_entries" or name.startswith(("erased_entries_",
                                                         "sqlite_autoindex_erased_entries"))
    )  # fmt: skip
    tree_bytes = sum(size for name, size in pages.items() if "tree_tiles" in name)
    return float(stub_bytes / stubs + tree_bytes / leaves)


def run(run: Run, sizes: Sizes, pg: Postgres | None = None) -> None:
    """Time a subject's erasure and purges (SQLite and PostgreSQL); watch steady retention."""
    data = fixtures.reads_db(run.cache, sizes.reads_entries)
    app_id = data.meta["apps"][0]["app_id"]
    count = int(data.meta["count"])
    work = run.out / "governance"
    shutil.rmtree(work, ignore_errors=True)
    baseline_db = _copy(data, work / "raw")
    raw_seconds = _raw_delete(baseline_db, app_id, count)
    shutil.rmtree(work / "raw", ignore_errors=True)

    db = _copy(data, work / "purge")
    store = Store(f"sqlite:///{db}", secrets=secret_key())
    writer = data.meta["apps"][1]
    body = json.dumps({"action": "bench.write", "target_type": "doc", "target_id": "d1"})
    headers = {"Authorization": f"Bearer {writer['key']}", "Content-Type": "application/json"}
    try:
        store.migrate()
        subject = Subject(actor_id="user_7")
        started = time.perf_counter()
        erased = (
            Subjects(store)
            .request(app_id, subject, "bench", RETENTION, ORIGIN, approver="operator:bench")
            .result
        )
        erase_ms = (time.perf_counter() - started) * 1000
        # Writes go on during a purge: single writes to the file's other app, alone and then
        # while the purge runs (each of its chunks holds SQLite's one write lock).
        with serving(db.parent) as server:
            url = f"{server.url}/v1/apps/{writer['app_id']}/events"
            load_args: dict[str, Any] = {
                "connections": 32,
                "seconds": sizes.load_seconds,
                "method": "POST",
                "body": body,
                "headers": headers,
            }
            load(url, **(load_args | {"seconds": 1.0}))  # warm the server and the file's pages
            alone = load(url, **load_args)
            during = LoadRun(url, **load_args)
            purged, purge_seconds = _purge_all(store, app_id)
            beside = during.result()
    finally:
        store.close()
        shutil.rmtree(work, ignore_errors=True)
    if purge_seconds < sizes.load_seconds:
        print("    (the purge ended before the write load did: its p99 is partly without it)")

    run.info[SUITE] = (
        f"app A of the read benchmark's file ({count:,} entries, 1,000 actors), copied for each "
        "measurement"
    )
    run.add(Result(
        SUITE, "erasure of one subject", erase_ms, "ms",
        target="< 1000 ms", met=erase_ms < 1000,
        notes=f"an actor with {erased['erased']:,} entries in a log of {count:,}; one "
        "transaction: stubs, deletes, its erasure.request and erasure.done entries",
    ))  # fmt: skip
    run.add(Result(
        SUITE, "POST /events p99 during a purge, 32 clients", beside.p99_ms, "ms",
        baseline=alone.p99_ms, baseline_name="the same load without a purge, same run",
        ratio_target="≤ 3", ratio_met=beside.p99_ms <= 3 * alone.p99_ms,
        notes=f"{beside.requests_per_second:,.0f} writes/s during the purge, "
        f"{alone.requests_per_second:,.0f} alone; p50 {beside.p50_ms:.1f} ms vs "
        f"{alone.p50_ms:.1f} ms",
    ))  # fmt: skip
    purge_rate = purged / purge_seconds
    raw_rate = count / raw_seconds
    run.add(Result(
        SUITE, "purge of the whole log", purge_rate, "entries/s",
        target="≥ 100,000 entries/s", met=purge_rate >= 100_000,
        baseline=raw_rate,
        baseline_name=f"raw sqlite3 DELETE of the same rows, {PURGE_CHUNK:,} a commit",
        notes=f"{purged:,} entries in {purge_seconds:.1f} s; each chunk also writes its stubs "
        "and a retention.purge entry, then rests as long as it held the write lock, for the "
        "writers",
    ))  # fmt: skip
    _steady(run, sizes)
    if pg is not None:
        _postgres(run, sizes, pg)
