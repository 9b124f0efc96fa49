"""Write docs/performance.md (and its plots) from a run's results.

The tables, plots and machine description are generated from ``results.json`` through the
Jinja2 template ``performance.md.j2``; the hand-written analysis lives in ``report_notes.md``
and is included as it is, so a new run never loses it.
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any

import jinja2

HERE = Path(__file__).resolve().parent
NOTES = HERE / "report_notes.md"
TITLES = {
    "ingest": "In-process append",
    "http_write": "HTTP writes",
    "reads": "Reads: list pages, query plans, export",
    "proofs": "Inclusion and consistency proofs",
    "verify": "`trailkeep verify`",
    "governance": "Retention and erasure",
    "stream": "Live stream",
    "webhooks": "Webhook delivery",
    "console": "The console in a browser",
    "soak": "Memory during an ingest soak",
}


def number(value: float | None, unit: str = "") -> str:
    """A figure as the report prints it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if unit.startswith("ms"):
        return f"{value:,.2f}"
    if unit == "%":
        return f"{value:,.1f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def verdict(met: bool | None) -> str:
    """Met, missed, or nothing to meet."""
    return {True: "yes", False: "**no**", None: ""}[met]


def plan_steps(lines: list[str]) -> list[str]:
    """The steps of a captured query plan that read ``events``, in order, each once."""
    steps = [line.strip() for line in lines if not line.startswith("--")]
    return list(dict.fromkeys(s for s in steps if re.match(r"(SEARCH|SCAN) events\b", s)))


def _plot_http(series: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dbs = [k.split(":", 1)[1] for k in series if k.startswith("http_write:") and
           isinstance(series[k], dict) and "single" in series[k]]  # fmt: skip
    if not dbs:
        return []
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for db in dbs:
        for kind, style in (("single", "o-"), ("batch", "s--")):
            points = series[f"http_write:{db}"][kind]
            label = f"{db}, {'POST /events' if kind == 'single' else 'POST /events/batch (100)'}"
            ax.plot([p["connections"] for p in points], [p["entries_s"] for p in points],
                    style, label=label)  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent clients (wrk connections)")
    ax.set_ylabel("entries / second")
    ax.set_title("Durable write throughput")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "http_throughput.png", dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, kind in zip(axes, ("single", "batch"), strict=True):
        for db in dbs:
            points = series[f"http_write:{db}"][kind]
            x = [p["connections"] for p in points]
            ax.plot(x, [p["p50_ms"] for p in points], "o-", label=f"{db} p50")
            ax.plot(x, [p["p99_ms"] for p in points], "^--", label=f"{db} p99")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent clients")
        ax.set_title("POST /events" if kind == "single" else "POST /events/batch (100 entries)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("latency (ms)")
    fig.tight_layout()
    fig.savefig(folder / "http_latency.png", dpi=110)
    plt.close(fig)
    return [("Write throughput against concurrency", "http_throughput.png"),
            ("p50 and p99 latency against concurrency", "http_latency.png")]  # fmt: skip


def _plot_soak(series: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
    soak = series.get("soak")
    if not soak:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = soak["samples"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot([s[0] for s in samples], [s[1] / 1024 for s in samples], "o-", label="RSS")
    ax.axvline(soak["warmup_s"], color="grey", linestyle=":", label="end of the first minute")
    ax.set_xlabel("seconds of sustained writes")
    ax.set_ylabel("server RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    rates = ax.twinx()
    pairs = list(itertools.pairwise(samples))
    rates.plot([b[0] for a, b in pairs], [(b[2] - a[2]) / max(b[0] - a[0], 1e-9) for a, b in pairs],
               "s--", color="tab:orange", label="entries/s")  # fmt: skip
    rates.set_ylabel("entries / second")
    rates.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    more = rates.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(folder / "soak_rss.png", dpi=110)
    plt.close(fig)
    return [("Server memory and write rate during the soak", "soak_rss.png")]


def write(results: dict[str, Any], path: Path) -> None:
    """Render the report (and its plots, in ``perf/`` beside it)."""
    folder = path.parent / "perf"
    folder.mkdir(parents=True, exist_ok=True)
    series = results.get("series", {})
    plots = {"http_write": _plot_http(series, folder), "soak": _plot_soak(series, folder)}
    environment = jinja2.Environment(
        # Markdown, not HTML: nothing to escape.
        loader=jinja2.FileSystemLoader(HERE), trim_blocks=True,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
    )  # fmt: skip
    environment.filters["number"] = number
    environment.filters["verdict"] = verdict
    environment.filters["plan_steps"] = plan_steps
    order = {name: i for i, name in enumerate(TITLES)}
    results["results"].sort(key=lambda r: order.get(r["suite"], len(order)))
    by_suite: dict[str, list[dict[str, Any]]] = {}
    for result in results["results"]:
        by_suite.setdefault(result["suite"], []).append(result)
    missed = [r for r in results["results"] if r["met"] is False or r["ratio_met"] is False]
    text = environment.get_template("performance.md.j2").render(
        r=results, titles=TITLES, by_suite=by_suite, plots=plots, missed=missed,
        series=series, notes=NOTES.read_text() if NOTES.exists() else "",
        perf=folder.name,
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
