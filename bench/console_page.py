"""The console benchmark's browser side: headless Chromium, and timings taken inside the page.

Every figure is ``performance.now()`` read in the page, not a Playwright wait measured from
Python: a wait polls and crosses a process boundary (several milliseconds each way), which would
be a large part of a 300 ms budget. A navigation's clock starts at the navigation itself (the
document's time origin); a search's or a Verify's at the moment the page submits or clicks. An
end is the first animation frame after the DOM shows the result, i.e. when it can be painted.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, Response, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")

# Installed before any script of each document: the time the table first shows rows (or says
# that none match) after the navigation, in the frame after the change.
FIRST_ROWS = """
(() => {
  const done = () => {
    const status = document.querySelector('[data-testid="log-status"]');
    const text = status ? status.textContent : "";
    return text && text !== "Loading…"
      && (document.querySelector("table.entries tbody tr") || text === "No entries match.");
  };
  const watch = new MutationObserver(() => {
    if (!done()) return;
    watch.disconnect();
    requestAnimationFrame(() => { window.__tkFirstRows = performance.now(); });
  });
  watch.observe(document, { childList: true, subtree: true, characterData: true });
})();
"""

# Submit a search as the form does, and time (from the submit) the table's answer and the
# histogram's, each at the frame after the DOM changed; with the API requests' own durations.
SEARCH = """
async (q) => {
  const input = document.querySelector("#search");
  const status = document.querySelector('[data-testid="log-status"]');
  const chart = document.querySelector('[data-testid="histogram"]');
  const frame = () => new Promise((done) => requestAnimationFrame(() => done(performance.now())));
  performance.clearResourceTimings();
  const result = await new Promise((resolve, reject) => {
    // null: not yet; "frame": the DOM changed, waiting for the next frame; a number: done.
    let loading = false, rows = null, histogram = null, t0 = 0;
    // An empty histogram after an empty one changes nothing to observe: fail, do not hang.
    const timer = setTimeout(() => reject(new Error(`no rows or histogram for ${q}`)), 60000);
    const finish = () => {
      if (typeof rows !== "number" || typeof histogram !== "number") return;
      clearTimeout(timer);
      tableWatch.disconnect(); chartWatch.disconnect();
      resolve({ rows: rows - t0, histogram: histogram - t0, status: status.textContent,
                shown: document.querySelectorAll("table.entries tbody tr").length,
                caption: chart.querySelector('[data-testid="histogram-caption"]')?.textContent
                  ?? "(no histogram)" });
    };
    const tableWatch = new MutationObserver(() => {
      const text = status.textContent;
      if (text === "Loading…") { loading = true; return; }
      if (!loading || rows !== null) return;
      rows = "frame";
      frame().then((at) => { rows = at; finish(); });
    });
    const chartWatch = new MutationObserver(() => {
      if (histogram !== null) return;
      histogram = "frame";
      frame().then((at) => { histogram = at; finish(); });
    });
    tableWatch.observe(status, { childList: true, subtree: true, characterData: true });
    chartWatch.observe(chart, { childList: true });
    input.value = q;
    t0 = performance.now();
    input.form.requestSubmit();
  });
  result.api = performance.getEntriesByType("resource")
    .filter((e) => e.name.includes("/v1/"))
    .map((e) => [new URL(e.name).pathname.split("/").pop() + "?"
                 + new URL(e.name).searchParams.get("group_by"), e.duration]);
  return result;
}
"""

# Press Verify and time it to the verdict (from the click, at the frame after it shows).
VERIFY = """
async () => {
  const button = [...document.querySelectorAll("button")].find((b) => b.textContent === "Verify");
  const verdict = document.querySelector('[data-testid="verdict"]');
  return await new Promise((resolve) => {
    let t0 = 0;
    const watch = new MutationObserver(() => {
      if (!verdict.matches(".ok, .bad")) return;
      watch.disconnect();
      requestAnimationFrame(() => resolve({ ms: performance.now() - t0, ok: verdict.matches(".ok"),
                                            text: verdict.textContent }));
    });
    watch.observe(verdict, { attributes: true, childList: true, subtree: true });
    t0 = performance.now();
    button.click();
  });
}
"""


@dataclass
class Loaded:
    """The scripts and stylesheets a page load fetched (bodies read once the load is over)."""

    responses: list[Response] = field(default_factory=list)

    def record(self, response: Response) -> None:
        """Keep a script's or a stylesheet's answer (a 304 brings no body: the cold load has)."""
        if response.request.resource_type in ("script", "stylesheet") and response.status == 200:
            self.responses.append(response)

    def files(self) -> dict[str, bytes]:
        """Each file's body by its name."""
        return {r.url.split("?")[0].rsplit("/", 1)[-1]: r.body() for r in self.responses}


def compressed(body: bytes) -> tuple[int, str]:
    """(size, how): brotli -q 11 when the `brotli` tool is installed, else gzip -9."""
    tool = shutil.which("brotli")
    if tool:
        out = subprocess.run([tool, "-q", "11", "-c"], input=body, capture_output=True, check=True)
        return len(out.stdout), "brotli -q 11"
    return len(gzip.compress(body, compresslevel=9, mtime=0)), "gzip -9"


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's headless Chromium (no sandbox as root, as in a container)."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's `chromium`")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            yield browser
        finally:
            browser.close()


def wait_loaded(page: Page) -> None:
    """Until the log's status says the page is in (or the error why not)."""
    page.wait_for_function(
        """() => {
             const status = document.querySelector('[data-testid="log-status"]');
             const error = document.querySelector('[data-testid="log-error"]');
             return (status && status.textContent && status.textContent !== "Loading…")
               || (error && error.textContent);
           }""",
        timeout=120_000,
    )
    error = page.text_content('[data-testid="log-error"]')
    if error:
        raise RuntimeError(f"the console shows an error: {error}")


def first_rows_ms(page: Page, url: str, cold: bool) -> dict[str, float]:
    """Navigate (after emptying the HTTP cache when ``cold``): when rows were shown, and when
    the page's request for them started and was answered (all from the navigation's start)."""
    if cold:
        session = page.context.new_cdp_session(page)
        session.send("Network.clearBrowserCache")
        session.detach()
    page.goto(url)
    page.wait_for_function("() => window.__tkFirstRows !== undefined", timeout=120_000)
    found: dict[str, float] = page.evaluate(
        """() => {
             const list = performance.getEntriesByType("resource")
               .filter((e) => new URL(e.name).pathname.endsWith("/events"));
             return { rows: window.__tkFirstRows, start: list[0]?.startTime ?? NaN,
                      end: list[0]?.responseEnd ?? NaN };
           }"""
    )
    return found


def search(page: Page, text: str) -> dict[str, Any]:
    """Submit one search; its timings (ms from submit) and what the page showed."""
    found: dict[str, Any] = page.evaluate(SEARCH, text)
    return found


def verify(page: Page) -> dict[str, Any]:
    """Press Verify once; the time to the verdict and whether it is Verified."""
    found: dict[str, Any] = page.evaluate(VERIFY)
    return found
