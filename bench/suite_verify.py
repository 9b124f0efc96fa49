"""`trailkeep verify`: an export of 1,000,000 entries offline, and the same app in the database.

The export is the first app of the read benchmark's database, written in the bytes the export
route streams (one stored entry per line), with a checkpoint signed by that data directory's key.
Each run is the real command in a new process, so the figure includes the interpreter's start;
that start is measured on its own (``trailkeep verify --help``) and reported next to it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import orjson

from bench import fixtures
from bench.config import Sizes
from bench.harness import BIN, ORIGIN, Result, Run

SUITE = "verify"


def _timed(*args: str) -> tuple[float, str]:
    started = time.perf_counter()
    env = {**os.environ, "TRAILKEEP_ORIGIN": ORIGIN}
    done = subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=900, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"trailkeep {' '.join(args)} failed: {done.stderr}{done.stdout}")
    return elapsed, done.stdout


def floor_rate(path: Path) -> float:
    """Lines a second of the least any verifier must do: read, parse and hash each line."""
    sha = hashlib.sha256
    count = 0
    started = time.perf_counter()
    with path.open("rb") as handle:
        for line in handle:
            orjson.loads(line)
            sha(b"\x00" + line).digest()
            count += 1
    return count / (time.perf_counter() - started)


def run(run: Run, sizes: Sizes) -> None:
    """Verify the export, then the app in the local database."""
    data = fixtures.reads_db(run.cache, sizes.reads_entries)
    app = data.meta["apps"][0]
    count = int(data.meta["count"])
    entries, checkpoint, key = fixtures.export_files(data, app)
    startup, _ = _timed("verify", "--help")
    # Best of two: the first run of each may read the export or the database from disk, after
    # the suites before it pushed them out of the page cache.
    offline, local = float("inf"), float("inf")
    for _ in range(2):
        took, said = _timed("verify", "--entries", str(entries), "--checkpoint", str(checkpoint),
                            "--key", str(key))  # fmt: skip
        if f"OK: {count} entries" not in said:
            raise RuntimeError(f"verify did not report {count} entries: {said}")
        offline = min(offline, took)
        took, said = _timed("verify", "--app", app["app_id"], "--data-dir", str(data.path))
        if "OK:" not in said:
            raise RuntimeError(f"verify --app did not pass: {said}")
        local = min(local, took)
    floor = floor_rate(entries)
    floor_name = "read + parse + SHA-256 per line, in-process (no JCS, no tree)"
    note = f"{count:,} entries; wall time {{:.1f}} s, of which ~{startup:.1f} s starting Python"
    run.add(Result(
        SUITE, "verify --entries (offline export)", count / offline, "entries/s",
        target="≥ 200,000 entries/s", met=count / offline >= 200_000,
        baseline=floor, baseline_name=floor_name,
        notes=note.format(offline),
    ))  # fmt: skip
    run.add(Result(
        SUITE, "verify --app (local database)", count / local, "entries/s",
        target="≥ 200,000 entries/s", met=count / local >= 200_000,
        baseline=floor, baseline_name=floor_name,
        notes=note.format(local),
    ))  # fmt: skip
