"""The benchmarks cannot rot: `python -m bench --smoke` runs every suite on tiny sizes.

The smoke run starts real servers and the real load generator, so it checks the benchmark code
end to end. The figures themselves mean nothing at these sizes and are not judged; what is
checked is that each suite runs, reports figures (numbers, with units, and the ratio to their
baseline where they have one), and that the report shows every figure it reported, whatever
the figures are called. Each suite runs on its own, so that the suites run in parallel and a
broken one is named. Two pieces the figures rest on are checked exactly as well: the generated
proof tree, and the parsing of wrk's report.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bench.config import SUITES
from bench.datagen import fill_tree, stored_root, tree_leaf
from bench.fixtures import _cached
from bench.harness import parse_wrk
from bench.report import NOTES, plan_steps

from tests.trees import root_of
from trailkeep.server.store import Store

ROOT = Path(__file__).resolve().parents[2]
REAL_REPORT = ROOT / "docs" / "performance.md"
PNG = b"\x89PNG\r\n\x1a\n"
# The suites whose report draws plots from their series.
PLOTTED = {"http_write", "soak"}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def _check_figure(figure: dict[str, Any]) -> None:
    """A figure is a finite number with a unit; one with a baseline carries its ratio too."""
    assert figure["name"].strip(), figure
    assert isinstance(figure["value"], int | float), figure
    assert not isinstance(figure["value"], bool), figure
    assert math.isfinite(figure["value"]), figure
    assert figure["unit"].strip(), figure
    baseline = figure["baseline"]
    if baseline is None:
        assert figure["ratio"] is None, figure
        assert not figure["ratio_target"], figure  # a ratio target needs a baseline
        return
    assert isinstance(baseline, int | float), figure
    assert math.isfinite(baseline), figure
    assert figure["baseline_name"].strip(), figure
    if baseline:
        assert figure["ratio"] == pytest.approx(figure["value"] / baseline), figure
        assert math.isfinite(figure["ratio"]), figure
    if figure["ratio_target"]:
        assert isinstance(figure["ratio_met"], bool), figure


@pytest.mark.timeout(600)
@pytest.mark.parametrize("suite", SUITES)
def test_each_suite_runs_and_reports_its_figures(tmp_path: Path, suite: str) -> None:
    real_report = _digest(REAL_REPORT)
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--only", suite, "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=580,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["smoke"] is True
    assert (results["suites"], results["failed"]) == ([suite], [])
    assert set(results["timings"]) == {suite}
    figures = results["results"]
    assert figures, f"{suite} reported no figure"
    assert {f["suite"] for f in figures} == {suite}
    assert len({f["name"] for f in figures}) == len(figures), "two figures of one name"
    for figure in figures:
        _check_figure(figure)
    # Every suite measures something against a baseline of the same run. The soak compares its
    # last write rate with its first, which takes at least two sampling intervals.
    compared = [f for f in figures if f["baseline"] is not None]
    if suite == "soak":
        assert results["series"]["soak"]["samples"]
        if len(results["series"]["soak"]["samples"]) >= 3:
            assert compared, figures
    else:
        assert compared, f"{suite} compared no figure with a baseline"
    # The report shows each figure in a table row, and keeps the hand-written notes.
    report = (tmp_path / "performance.md").read_text()
    if suite == "reads":  # and, for each list page, the steps its query plan takes on events
        assert results["plans"]
        for name, lines in results["plans"].items():
            assert name.startswith("reads:"), name
            assert all(isinstance(line, str) for line in lines), name
            steps = plan_steps(lines)
            assert steps, name  # every list page reads events somehow
            row = f"| {name.split(':', 1)[1]} | " + "; ".join(f"`{s}`" for s in steps) + " |"
            assert row in report, (name, row)
    for figure in figures:
        assert f"| {figure['name']} |" in report, figure["name"]
    assert NOTES.read_text().strip() in report
    plots = re.findall(r"!\[[^\]]*\]\(perf/([^)]+)\)", report)
    assert bool(plots) == (suite in PLOTTED), plots
    for plot in plots:
        assert (tmp_path / "perf" / plot).read_bytes()[:8] == PNG, plot
    # A smoke run never overwrites the real report.
    assert _digest(REAL_REPORT) == real_report


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
