"""``python -m bench [--smoke] [--only SUITE ...]``: run the benchmarks and write the report."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import pgserver, report
from bench.config import FULL, SMOKE, SUITES
from bench.harness import OUT, ROOT, Run, machine


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, same code paths")
    parser.add_argument("--only", nargs="+", choices=SUITES, metavar="SUITE",
                        help=f"run only these suites: {', '.join(SUITES)}")  # fmt: skip
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results and cached databases (default bench/out; with --smoke, bench/out/smoke)",
    )
    parser.add_argument("--report", type=Path, default=None,
                        help="the Markdown report to write (default docs/performance.md; "
                        "with --smoke, OUT/performance.md)")  # fmt: skip
    parser.add_argument("--pg", choices=("auto", "on", "off"), default=None,
                        help="PostgreSQL variant of the write benchmark: TRAILKEEP_BENCH_PG_URL, "
                        "or a throwaway cluster (default: auto; off with --smoke)")  # fmt: skip
    parser.add_argument("--no-soak", action="store_true", help="skip the memory soak")
    parser.add_argument("--soak-seconds", type=float, default=None,
                        help=f"soak length (default {FULL.soak_seconds:.0f};"
                             " the target is stated for 600)")  # fmt: skip
    return parser


def _merge(path: Path, fresh: dict[str, Any], rerun: set[str]) -> dict[str, Any]:
    """Keep the suites this run did not redo from the previous results of the same mode."""
    if not path.exists():
        return fresh
    try:
        old = json.loads(path.read_text())
    except ValueError:
        return fresh
    if old.get("smoke") != fresh["smoke"]:
        return fresh
    kept = [r for r in old.get("results", []) if r["suite"] not in rerun]
    fresh["results"] = kept + fresh["results"]
    for key in ("series", "plans", "profiles", "info", "timings"):
        merged = {k: v for k, v in old.get(key, {}).items() if k.split(":")[0] not in rerun}
        merged.update(fresh[key])
        fresh[key] = merged
    fresh["suites"] = sorted(set(old.get("suites", [])) | set(fresh["suites"]))
    return fresh


def main(argv: list[str] | None = None) -> int:
    """Run the chosen suites, write results.json, the plots and the report."""
    args = _parser().parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    if args.soak_seconds is not None:
        sizes = dataclasses.replace(sizes, soak_seconds=args.soak_seconds)
    # A smoke run keeps its own results, so it never replaces a full run's figures.
    out: Path = (args.out or (OUT / "smoke" if args.smoke else OUT)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    suites = list(args.only or SUITES)
    if args.no_soak and "soak" in suites:
        suites.remove("soak")
    pg_mode = args.pg or ("off" if args.smoke else "auto")
    report_path = args.report or (out / "performance.md" if args.smoke else
                                  ROOT / "docs" / "performance.md")  # fmt: skip
    os.chdir(ROOT)
    run = Run(smoke=args.smoke, out=out)
    # One secret key for the run's servers and the apps it makes (and its cached databases).
    os.environ["TRAILKEEP_SECRET_KEY_FILE"] = str(run.cache / "secret.key")
    started = time.monotonic()
    from bench import (
        suite_console,
        suite_governance,
        suite_http,
        suite_ingest,
        suite_proofs,
        suite_reads,
        suite_soak,
        suite_stream,
        suite_verify,
        suite_webhooks,
    )

    modules = {"ingest": suite_ingest, "http_write": suite_http, "reads": suite_reads,
               "proofs": suite_proofs, "verify": suite_verify, "soak": suite_soak,
               "governance": suite_governance, "stream": suite_stream,
               "webhooks": suite_webhooks, "console": suite_console}  # fmt: skip
    failed: list[str] = []
    timings: dict[str, float] = {}
    wants_pg = {"http_write", "governance"} & set(suites)
    with pgserver.maybe_postgres(pg_mode if wants_pg else "off") as pg:
        if "http_write" in suites:
            run.info["http_write:postgresql"] = pg.describe() if pg else pgserver.why_not(pg_mode)
        for name in suites:
            print(f"== {name}", flush=True)
            suite_started = time.monotonic()
            try:
                if name in ("http_write", "governance"):
                    modules[name].run(run, sizes, pg)
                else:
                    modules[name].run(run, sizes)
            except Exception as exc:  # one broken suite must not hide the others' figures
                import traceback

                traceback.print_exc()
                failed.append(f"{name}: {exc}")
            timings[name] = round(time.monotonic() - suite_started, 1)
            print(f"   ({timings[name]:.0f} s)", flush=True)
    if not failed:
        # Throwaway databases and server logs; kept when a suite failed, to look into it.
        shutil.rmtree(out / "tmp", ignore_errors=True)
    results = {
        "smoke": args.smoke,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1),
        "machine": machine(),
        "suites": suites,
        "failed": failed,
        "results": [r.as_json() for r in run.results],
        "series": run.series,
        "plans": run.plans,
        "profiles": run.profiles,
        "info": run.info,
        "timings": timings,
    }
    path = out / "results.json"
    if args.only:
        results = _merge(path, results, set(suites))
    if version := results["info"].get("http_write:postgresql_version"):
        results["machine"]["postgresql"] = version
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    report.write(results, report_path)
    print(f"results: {path}\nreport: {report_path}\ntook {results['duration_s']} s")
    if failed:
        print("FAILED suites:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
