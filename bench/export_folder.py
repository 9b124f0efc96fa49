"""`trailkeep export` to a Parquet folder and `trailkeep verify --export`, timed (suite reads).

Both run as the real command against the suite's server, beside the raw NDJSON export of the
same app measured in the same run: the folder's rate is judged against that stream's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import Result, Run

SUITE = "reads"
BIN = Path(sys.executable).with_name("trailkeep")


def _timed(*args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([str(BIN), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"trailkeep {args[0]}: {done.stderr}{done.stdout}")
    return time.perf_counter() - started


def measure(run: Run, url: str, app_id: str, key: str, ndjson_rate: float) -> None:
    """Export the app to a Parquet folder, verify it, and add both figures to ``run``."""
    verifier = httpx.get(f"{url}/v1/checkpoint-key", timeout=30).text
    with tempfile.TemporaryDirectory(prefix="bench-export-") as folder:
        out = Path(folder) / "export"
        seconds = _timed("export", "--server", url, "--api-key", key, "--app", app_id,
                         "--out", str(out), "--format", "parquet", "--quiet")  # fmt: skip
        manifest = json.loads((out / f"app={app_id}" / "_manifest.json").read_text())
        rows = manifest["next_seq"] - manifest["first_seq"]
        rate = rows / seconds
        run.add(Result(
            SUITE, "trailkeep export --format parquet (folder)", rate, "entries/s",
            baseline=ndjson_rate, baseline_name="export NDJSON over HTTP (same run)",
            ratio_target="≥ 0.8", ratio_met=rate >= 0.8 * ndjson_rate,
            notes=f"{rows:,} entries in {len(manifest['files'])} files, {seconds:.1f} s, "
            "the whole command (start-up included)",
        ))  # fmt: skip
        key_file = Path(folder) / "key.txt"
        key_file.write_text(verifier)
        seconds = _timed("verify", "--export", str(out), "--key", str(key_file))
        run.add(Result(
            SUITE, "trailkeep verify --export (Parquet folder)", rows / seconds, "entries/s",
            target="≥ 250,000 entries/s", met=rows / seconds >= 250_000,
            notes=f"{rows:,} entries in {seconds:.1f} s, the whole command (start-up included)",
        ))  # fmt: skip
