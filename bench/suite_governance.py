"""Retention and erasure on a 1,000,000-entry log (SQLite).

A purge erases the content of every entry older than its cutoff in chunks of 5,000, each one
transaction that writes the stubs, raises the horizon, deletes the rows and appends its
``retention.purge`` entry. Its baseline is the storage alone, measured in the same run on a copy
of the same file: raw sqlite3 deleting the same rows in the same chunks (``secure_delete`` on,
one durable commit a chunk, the append-only triggers dropped), with no stubs and no log entries.
The erasure of one subject (an actor with about 1,000 entries) is timed on its own.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import fixtures
from bench.config import Sizes
from bench.harness import Result, Run, secret_key
from trailkeep.log.record import Origin
from trailkeep.server.governance import RETENTION
from trailkeep.server.governance.retention import PURGE_CHUNK, Retention
from trailkeep.server.governance.subjects import Subjects
from trailkeep.server.store import Store, Subject

SUITE = "governance"
ORIGIN = Origin(ip=None, user_agent="bench")


def _copy(data: fixtures.DataDir, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    target = into / "trailkeep.db"
    shutil.copyfile(data.path / "trailkeep.db", target)
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


def run(run: Run, sizes: Sizes) -> None:
    """Time a subject's erasure, a purge of the whole log, and raw SQLite deleting the same."""
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
        started = time.perf_counter()
        report = Retention(store).purge(
            app_id, datetime.now(UTC) + timedelta(minutes=1), RETENTION, ORIGIN
        )
        purge_seconds = time.perf_counter() - started
    finally:
        store.close()
        shutil.rmtree(work, ignore_errors=True)

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
    purge_rate = report.erased / purge_seconds
    raw_rate = count / raw_seconds
    run.add(Result(
        SUITE, "purge of the whole log", purge_rate, "entries/s",
        target="≥ 100,000 entries/s", met=purge_rate >= 100_000,
        baseline=raw_rate, baseline_name="raw sqlite3 DELETE of the same rows, 5,000 a commit",
        notes=f"{report.erased:,} entries in {report.chunks} chunks, {purge_seconds:.1f} s; each "
        "chunk also writes its stubs and a retention.purge entry",
    ))  # fmt: skip
