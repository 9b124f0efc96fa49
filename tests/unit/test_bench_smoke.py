"""The benchmarks cannot rot: `python -m bench --smoke` runs every suite on tiny sizes.

The smoke run starts real servers and the real load generator, so it checks the benchmark code
end to end; the figures themselves mean nothing at these sizes and are not judged, only
required to exist. Two pieces the figures rest on are checked exactly as well: the generated
proof tree, and the parsing of wrk's report.
"""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from bench.datagen import fill_tree, stored_root, tree_leaf
from bench.fixtures import _cached
from bench.harness import parse_wrk

from tests.trees import root_of
from trailkeep.server.store import Store

ROOT = Path(__file__).resolve().parents[2]

FILTERS = (
    "none",
    "action",
    "action_prefix",
    "actor",
    "target_type",
    "target_id",
    "target_type+target_id",
    "kind",
)
# Every figure a smoke run must produce (the PostgreSQL variant is off in smoke runs).
EXPECTED = {
    "ingest": [
        "Ingest.append, 16 concurrent callers, batches of 100",
        "Ingest.append, batches of 100",
        "Ingest.append, 4 concurrent callers, batches of 100",
        "Ingest.append, batches of 1",
        "Ingest.append, 64 concurrent single-entry appends",
        "tree maintained, batches of 100",
        "tree maintained, batches of 1",
        "raw sqlite3 executemany of the same rows (entries and tree tiles), batches of 1,600",
        "raw sqlite3 executemany of the same rows (entries and tree tiles), batches of 100",
        "raw sqlite3 executemany of the same rows (entries and tree tiles), batches of 1",
        "raw sqlite3 executemany of the entry rows alone, batches of 100",
    ],
    "http_write": [
        "POST /events, 64 clients (SQLite)",
        "POST /events p99 latency, 64 clients (SQLite)",
        "POST /events, 32 clients (SQLite)",
        "POST /events/batch (100 a request), peak (SQLite)",
        "raw sqlite3 executemany of the same rows as the batch peak commits them (SQLite)",
        "POST /events/batch, 64 clients, while a CSV export streams (SQLite)",
        "POST /events, 32 clients, while 64 clients list the log (SQLite)",
        "GET /healthz (no-op route), 64 clients (SQLite)",
    ],
    "reads": [
        *(f"first page of 100, filter {name}" for name in (*FILTERS, "since+until (one day)")),
        *(f"deep page, filter {name}" for name in FILTERS),
        "export NDJSON over HTTP",
    ],
    "proofs": ["inclusion proof", "consistency proof"],
    "verify": ["verify --entries (offline export)", "verify --app (local database)"],
    "soak": ["server RSS growth after the first minute", "writes during the soak"],
}
PLOTS = ("http_throughput.png", "http_latency.png", "soak_rss.png")


@pytest.mark.timeout(600)
def test_smoke_run_produces_every_figure_plot_and_the_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=580,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["smoke"] is True
    assert results["failed"] == []
    found = {(r["suite"], r["name"]): r for r in results["results"]}
    missing = [(s, n) for s, names in EXPECTED.items() for n in names if (s, n) not in found]
    assert missing == []
    for result in found.values():
        assert isinstance(result["value"], int | float), result
        assert math.isfinite(result["value"]), result
    # Every list page's query plan was captured, and the report names every figure.
    assert {f"reads:{n}" for n in ("none", "actor", "kind")} <= set(results["plans"])
    report = (tmp_path / "performance.md").read_text()
    for names in EXPECTED.values():
        for name in names:
            assert name in report
    assert "## Where the time goes" in report
    for plot in PLOTS:
        assert (tmp_path / "perf" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A smoke run never overwrites the real report.
    assert "Smoke run" in report


@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 600, 65_537])
def test_generated_tree_holds_the_tiles_of_the_naive_tree(tmp_path: Path, size: int) -> None:
    db = tmp_path / "t.db"
    store = Store(f"sqlite:///{db}")
    store.migrate()
    store.close()
    leaves = [tree_leaf(i) for i in range(size)]
    assert fill_tree(db, "app_t", size) == root_of(leaves)
    with sqlite3.connect(db) as connection:
        stored = {
            (level, idx): (width, bytes(hashes))
            for level, idx, width, hashes in connection.execute(
                "SELECT level, idx, width, hashes FROM tree_tiles WHERE app_id = 'app_t'"
            )
        }
    expected = {}
    level = 0
    while (1 << level) <= size:  # every eighth level, its complete subtrees' roots, 256 a tile
        span = 1 << level
        row = [root_of(leaves[i * span : (i + 1) * span]) for i in range(size >> level)]
        for n in range(0, len(row), 256):
            expected[(level // 8, n // 256)] = (len(row[n : n + 256]), b"".join(row[n : n + 256]))
        level += 8
    assert stored == expected
    assert stored_root(db, "app_t", size) == root_of(leaves)


WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:1/healthz
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.10ms    3.20ms  40.00ms   78.50%
    Req/Sec     5.10k   300.00     5.50k    50.00%
  Latency Distribution
     50%   11.50ms
     75%   13.00ms
     90%   15.00ms
     99%    1.20s
  5123 requests in 1.00s, 1.00MB read
  Non-2xx or 3xx responses: 7
Requests/sec:   5100.50
Transfer/sec:      1.00MB
"""


def test_wrk_report_is_read_from_the_percentile_lines_only() -> None:
    load = parse_wrk(WRK_OUTPUT)
    assert load.requests_per_second == 5100.50
    assert load.p50_ms == 11.5
    assert load.p99_ms == 1200.0
    assert load.non_2xx == 7
    assert load.requests == 5123
    assert load.errors == 0


def test_a_new_cache_version_replaces_the_old_databases_of_its_kind(tmp_path: Path) -> None:
    for stale in ("reads-v1-10", "reads-v1-10.building", "reads-v1-99", "proofs-v1-10"):
        (tmp_path / stale).mkdir()
    made = _cached(tmp_path, "reads-v2-10", lambda folder: {"built": str(folder)})
    assert made.meta["built"].endswith("reads-v2-10.building")
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["proofs-v1-10", "reads-v1-99", "reads-v2-10"]
