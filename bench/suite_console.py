"""The console at scale: the read database's second app (1,000,000 entries) in headless Chromium.

An auditor signs in with a sign-in link (a session minted with the app's session secret, as
``trailkeep console link`` does), so every read is a person's read and is recorded: each run
appends its ``audit.read`` entries to that app of the cached database (a few hundred, against a
million; the reads and verify benchmarks use the first app, which this leaves alone).

Figures, each the median of ``console_repeats`` (timed in the page: see ``bench.console_page``):
navigation to the first rows of the landing page, with an empty HTTP cache and with revalidated
files; each single qualifier's search to its rows and to its histogram, with the API request's
own duration (Resource Timing) as the baseline; combinations and negations, without a target;
Verify to "Verified"; and the compressed size of every script and stylesheet the page loaded.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from bench import console_page, datagen, fixtures
from bench.config import Sizes
from bench.harness import Result, Run, serving
from trailkeep.sdk import mint_session
from trailkeep.server.store import Store

SUITE = "console"
ROWS_MS = 500
SEARCH_MS = 300
VERIFY_MS = 200
ASSETS_KB = 150


def _median(samples: list[dict[str, Any]], pick: Callable[[dict[str, Any]], float]) -> float:
    return statistics.median(pick(s) for s in samples)


def _api_ms(sample: dict[str, Any], route: str) -> float:
    """The page's own request to ``route`` (events or stats), summed over its requests."""
    return float(sum(ms for name, ms in sample["api"] if name.startswith(route + "?")))


def _queries(middle: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(single qualifiers, combinations and negations): search texts with values from the data."""
    day = datetime.fromisoformat(middle["time"].replace("Z", "+00:00")).date().isoformat()
    target = f"{middle['target']['type']}/{middle['target']['id']}"
    single = {
        "action:": "action:order.update",
        "action:prefix.*": "action:order.*",
        "actor:": "actor:user_42",
        "target:type/id": f"target:{target}",
        "target_type:": "target_type:invoice",
        "kind:": "kind:admin",
        "changed: (1 in 20)": f"changed:{datagen.COMMON_PATH.lstrip('/')}",
        "changed: (1 in 1,000)": f"changed:{datagen.RARE_PATH.lstrip('/')}",
        "since: (half the app)": f"since:{day}",
        "until: (half the app)": f"until:{day}",
    }
    combined = {
        "no search (the whole app)": "",
        "action: + actor:": "action:order.update actor:user_42",
        "target_type: + since: + until: (one day)": f"target_type:invoice since:{day} until:{day}",
        "action:prefix.* + kind:": "action:order.* kind:admin",
        "changed: + action:": f"changed:{datagen.COMMON_PATH.lstrip('/')} action:order.update",
        "-action:audit.read": "-action:audit.read",
        "action:prefix.* -action:": "action:order.* -action:order.view",
    }
    return single, combined


def _navigation(run: Run, page: Any, base: str, repeats: int) -> None:
    for cold in (True, False):
        url = f"{base}/console"
        samples = [console_page.first_rows_ms(page, url, cold) for _ in range(repeats)]
        value = _median(samples, lambda s: s["rows"])
        start = _median(samples, lambda s: s["start"])
        end = _median(samples, lambda s: s["end"])
        how = "HTTP cache emptied" if cold else "files revalidated (304)"
        run.add(Result(
            SUITE, f"navigation → first table rows, landing page ({how})", value, "ms (median)",
            target=f"≤ {ROWS_MS} ms", met=value <= ROWS_MS,
            notes=f"Administrator actions tab (kind=admin), 50 rows; its GET …/events sent at "
            f"{start:.0f} ms (the modules loaded), answered at {end:.0f} ms; "
            f"runs {samples_text([s['rows'] for s in samples])}",
        ))  # fmt: skip


def samples_text(samples: list[float]) -> str:
    """The samples, rounded, for a note."""
    return ", ".join(f"{s:.0f}" for s in samples)


def _searches(
    run: Run, page: Any, queries: dict[str, str], repeats: int, targeted: bool
) -> None:  # fmt: skip
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in queries}
    # Round-robin, so that no search follows itself (the same address twice) and each run of a
    # query finds the database as the others left it.
    for _ in range(repeats):
        for name, text in queries.items():
            found[name].append(console_page.search(page, text))
    for name, samples in found.items():
        text = queries[name]
        rows = _median(samples, lambda s: s["rows"])
        chart = _median(samples, lambda s: s["histogram"])
        events = _median(samples, lambda s: _api_ms(s, "events"))
        stats = _median(samples, lambda s: _api_ms(s, "stats"))
        shown = samples[-1]["status"]
        run.series.setdefault(SUITE, []).append({
            "what": name, "query": text, "rows_ms": rows, "histogram_ms": chart,
            "events_ms": events, "stats_ms": stats, "targeted": targeted,
        })  # fmt: skip
        pairs = (
            ("rows", rows, events, "GET …/events (page of 50)"),
            ("histogram", chart, stats, "GET …/stats (by day, then hour if ≤ 2 days)"),
        )
        for what, value, api, route in pairs:
            run.add(Result(
                SUITE, f"search `{text or '(none)'}` → {what}", value, "ms (median)",
                target=f"≤ {SEARCH_MS} ms" if targeted else "",
                met=value <= SEARCH_MS if targeted else None,
                baseline=api or None, baseline_name=f"its {route} request, in the page",
                notes=f"{name}; {shown}" if what == "rows" else f"{name}; "
                + samples[-1]["caption"][:90],
            ))  # fmt: skip


def _verify(run: Run, page: Any, base: str, entry_id: str, repeats: int) -> None:
    page.goto(f"{base}/console?entry={entry_id}")
    page.wait_for_selector("button:text-is('Verify')", timeout=120_000)
    samples = [console_page.verify(page) for _ in range(repeats + 1)][1:]
    bad = [s["text"] for s in samples if not s["ok"]]
    if bad:
        raise RuntimeError(f"Verify did not verify: {bad[0]}")
    value = _median(samples, lambda s: s["ms"])
    runs = samples_text([s["ms"] for s in samples])
    run.add(Result(
        SUITE, "Verify → Verified (an entry 500,000 in)", value, "ms (median)",
        target=f"≤ {VERIFY_MS} ms", met=value <= VERIFY_MS,
        notes="the proof fetched, the leaf hash, audit path and Ed25519 signature checked in the "
        f"page; the first click left out (a warm-up); runs {runs}",
    ))  # fmt: skip


def _assets(run: Run, files: dict[str, bytes]) -> None:
    sizes = {name: console_page.compressed(body) for name, body in files.items()}
    how = next(iter(sizes.values()))[1] if sizes else "gzip -9"
    total = sum(size for size, _ in sizes.values())
    raw = sum(len(body) for body in files.values())
    listed = ", ".join(f"{n} {s / 1024:.1f}" for n, (s, _) in sorted(sizes.items()))
    run.add(Result(
        SUITE, f"console JavaScript and CSS, compressed ({how})", total / 1024, "KB",
        target=f"≤ {ASSETS_KB} KB", met=total <= ASSETS_KB * 1024,
        baseline=raw / 1024, baseline_name="the same files uncompressed",
        notes=f"{len(files)} files the page loaded (KB): {listed}",
    ))  # fmt: skip


def run(run: Run, sizes: Sizes) -> None:
    """Serve the read database, sign in as an auditor, and time what a person waits for."""
    data = fixtures.reads_db(run.cache, sizes.reads_entries)
    app = data.meta["apps"][1]
    app_id, count = app["app_id"], int(data.meta["count"])
    store = Store(data.url)
    try:
        middle: dict[str, Any] = orjson.loads(store.entries(app_id, count // 2, 1)[0])
    finally:
        store.close()
    single, combined = _queries(middle)
    token = mint_session(app_id, app["session_secret"], "bench_auditor", role="auditor",
                         name="Bench Auditor", ttl=3600)  # fmt: skip
    repeats = sizes.console_repeats
    with serving(data.path) as server, console_page.chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script(console_page.FIRST_ROWS)
        page = context.new_page()
        loaded = console_page.Loaded()
        page.on("response", loaded.record)
        page.goto(f"{server.url}/console#session={token}")
        console_page.wait_loaded(page)
        page.remove_listener("response", loaded.record)
        _assets(run, loaded.files())
        _navigation(run, page, server.url, repeats)
        page.goto(f"{server.url}/console?tab=all")
        console_page.wait_loaded(page)
        _searches(run, page, single, repeats, targeted=True)
        _searches(run, page, combined, repeats, targeted=False)
        _verify(run, page, server.url, middle["id"], repeats)
        context.close()
    run.info[SUITE] = (
        f"app B of the read database ({count:,} entries, 100 days), served by `trailkeep serve` "
        "on SQLite; Debian's Chromium, headless, 1280×900, through Playwright; an auditor's "
        "session, so each run appends its reads (audit.read) to that app"
    )
