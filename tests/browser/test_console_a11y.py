"""The console's main views pass axe-core (no serious or critical violation) at 1280 and 390
pixels wide, light and dark; the screenshots in docs/console/ are taken here.

Every run takes them; they are written into docs/console/ only with `TRAILKEEP_SCREENSHOTS=1`
(times and ids differ from run to run, so a plain `make test` leaves the tree as it was).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Final

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.console_pages import SHOTS, Seeded, console_page, link, verify, wait_loaded
from tests.servers import Server

pytestmark = pytest.mark.timeout(180)

VENDOR: Final = Path(__file__).parent / "vendor"
AXE_RUN: Final = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5)}));
}"""
#: Which views are photographed for docs/console.md, and in which forms (the rest only checked).
SHOTS_TAKEN: Final = {
    ("signin", 1280, "light"), ("log", 1280, "light"), ("log", 1280, "dark"),
    ("log", 390, "light"), ("entry", 1280, "light"), ("entry", 1280, "dark"),
    ("entry", 390, "dark"),
}  # fmt: skip


def axe_source() -> str:
    """The vendored axe-core, checked against the checksum recorded when it was vendored."""
    sums = dict(
        reversed(line.split("  ")) for line in (VENDOR / "axe-core.sha256").read_text().splitlines()
    )
    body = (VENDOR / "axe.min.js").read_bytes()
    assert hashlib.sha256(body).hexdigest() == sums["axe.min.js"], "axe.min.js was changed"
    version = (VENDOR / "axe-core.version").read_text().strip()
    assert body.startswith(f"/*! axe v{version}".encode())
    return body.decode()


def serious(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    page.evaluate(axe_source())
    found: list[dict[str, Any]] = page.evaluate(AXE_RUN)
    return [v for v in found if v["impact"] in ("serious", "critical")]


APP_NAME = "Acme shop"  # the app `seeded` (tests/browser/conftest.py) makes


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [1280, 390])
def test_main_views_have_no_serious_accessibility_violations(
    browser: Browser, server: Server, seeded: Seeded, width: int, scheme: str, tmp_path: Path
) -> None:
    shots = SHOTS if os.environ.get("TRAILKEEP_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    views: dict[str, list[dict[str, Any]]] = {}

    def check(view: str, page: Page) -> None:
        views[view] = serious(page)
        if (view, width, scheme) in SHOTS_TAKEN:
            shot = shots / f"{view}-{width}-{scheme}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes().startswith(b"\x89PNG")

    with console_page(browser, width=width, dark=scheme == "dark") as page:
        page.goto(f"{server.url}/console")
        page.wait_for_selector("#signin-key")
        check("signin", page)
        page.goto(link(server, seeded, "ada", "owner", "Ada"))
        wait_loaded(page)
        page.goto(f"{server.url}/console?tab=all&q=-action%3Aaudit.read")
        wait_loaded(page)
        check("log", page)
        page.click("table.entries a:text-is('order.refund')")
        page.wait_for_selector("article.entry")
        assert verify(page).startswith("Verified")
        check("entry", page)
        # The check can fail: an unlabelled field added to the page is a critical violation.
        page.evaluate("document.querySelector('main').append(document.createElement('input'))")
        assert "label" in [v["id"] for v in serious(page)]
        # The page is usable at this width: nothing wider than the viewport but the table's
        # own scrolling region.
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= width, overflow
    assert views == {"signin": [], "log": [], "entry": []}
