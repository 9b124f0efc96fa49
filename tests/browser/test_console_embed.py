"""`<trailkeep-log>` on another origin: an app's admin page with one script tag and the element,
a session its backend minted; the viewer searches, opens an entry and verifies it, its styles and
the page's stay apart, the page themes it, and a refused origin or session says why. The
console's own page still refuses to be framed."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import jwt
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page

from tests.browser.console_pages import MARKUP, SHOTS, Seeded, reads_by
from tests.browser.sdk_pages import PageServer
from tests.browser.test_console_a11y import serious
from tests.integration.http_api import events_url, expect_created, expect_status
from tests.servers import Server

pytestmark = pytest.mark.timeout(180)

APP_NAME = "embedded"  # the app `seeded` (tests/browser/conftest.py) makes
#: The page's accent for the element, light and dark (each readable on its background).
ACCENT: Final = {"light": "rgb(200, 0, 100)", "dark": "rgb(255, 140, 200)"}
#: The app's admin page: its own styles (hostile to any table), one script tag, the element,
#: and its code handing the element a session from its backend (`/session` on the page server).
HOST_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Shop admin</title>
<style>
  table { display: none; }
  * { color: rgb(255, 0, 0); letter-spacing: 3px; }
  trailkeep-log { --tk-accent: %(light)s; --tk-font: Georgia, serif; }
  @media (prefers-color-scheme: dark) { trailkeep-log { --tk-accent: %(dark)s; } }
</style>
<script type="module" src="%(server)s/console/embed.mjs"></script>
</head>
<body>
<main>
<h1>Shop admin</h1>
<p id="host-text">The shop's own page.</p>
<label>Host field <input id="host-input"></label> <button id="host-button">Host button</button>
<table id="host-table"><tr><td>the page's own table</td></tr></table>
<h2>Audit log</h2>
<trailkeep-log app="%(app)s" tab="%(tab)s"></trailkeep-log>
</main>
<script type="module">
  const response = await fetch("/session");
  document.querySelector("trailkeep-log").session = await response.text();
</script>
</body>
</html>
"""
#: A page whose code sets the session before it loads the element's module.
LATE_PAGE: Final = """<!doctype html>
<html lang="en"><meta charset="utf-8"><title>Late</title>
<trailkeep-log app="%(app)s"></trailkeep-log>
<script type="module">
  const element = document.querySelector("trailkeep-log");
  element.session = await (await fetch("/session")).text();
  await import("%(server)s/console/embed.mjs");
</script>
</html>
"""
GUIDE: Final = Path(__file__).parents[2] / "docs" / "console.md"
#: The entries' rows inside the element (Playwright's CSS selectors pierce open shadow roots).
ROWS: Final = "trailkeep-log table.entries tbody tr"
MESSAGE: Final = "trailkeep-log [data-testid=embed-message]"


@pytest.fixture(scope="module")
def embedded(server: Server, seeded: Seeded, pages: PageServer) -> Seeded:
    """The seeded app with the page server's origin among its allowed origins (by the API, as
    an owner's tooling sets it; the server forgets its cached origins at once)."""
    with server.client(seeded.tenant.key) as client:
        patched = client.patch(
            f"/v1/apps/{seeded.app_id}", json={"allowed_origins": [pages.origin]}
        )
        expect_status(patched)
    return seeded


def host_page_url(server: Server, seeded: Seeded, pages: PageServer, origin: str | None = None,
                  tab: str = "user") -> str:  # fmt: skip
    """The host page, served by the page server (on its origin, or on ``origin``)."""
    html = HOST_PAGE % {"server": server.url, "app": seeded.app_id, "tab": tab, **ACCENT}
    return pages.add("/admin.html", html, origin)


@contextmanager
def host_tab(
    browser: Browser, width: int = 1280, dark: bool = False, refused: bool = False
) -> Iterator[Page]:
    """A fresh tab; fails the test on a script error, or a console error other than a refused
    cross-origin request when one is expected (``refused``)."""
    context = browser.new_context(
        viewport={"width": width, "height": 900}, color_scheme="dark" if dark else "light"
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        text = message.text
        if message.type != "error" or "Failed to load resource" in text:
            return
        if refused and "blocked by CORS policy" in text:
            return
        problems.append(f"console error: {text}")

    page.on("console", on_console)
    try:
        yield page
    finally:
        context.close()
    assert problems == [], problems


def wait_rows(page: Page) -> None:
    """Until the element's log says its page is in (or why nothing is)."""
    page.wait_for_function(
        """() => {
             const root = document.querySelector("trailkeep-log")?.shadowRoot;
             const status = root?.querySelector('[data-testid="log-status"]');
             return status && status.textContent && status.textContent !== "Loading…";
           }"""
    )


def row_actions(page: Page) -> list[str]:
    """The action column of the element's table."""
    return page.locator(f"{ROWS} td[data-label=Action]").all_inner_texts()


def style_of(page: Page, selector: str, prop: str) -> str:
    """A computed style of the first element ``selector`` finds (piercing the shadow root)."""
    value: str = page.locator(selector).first.evaluate(
        "(node, prop) => getComputedStyle(node).getPropertyValue(prop)", prop
    )
    return value


def message(page: Page, starts: str) -> str:
    """Wait for the element's message to start with ``starts``; return all of it."""
    page.wait_for_function(
        """s => document.querySelector("trailkeep-log")?.shadowRoot
                 ?.querySelector('[data-testid="embed-message"]')?.textContent.startsWith(s)""",
        arg=starts,
    )
    return page.locator(MESSAGE).inner_text()


def test_the_embed_searches_opens_an_entry_and_verifies_it_from_another_origin(
    browser: Browser, server: Server, embedded: Seeded, pages: PageServer
) -> None:
    pages.session = server.session(embedded.tenant, "ada", role="auditor", name="Ada")
    before = len(reads_by(server, embedded, "ada"))
    url = host_page_url(server, embedded, pages)
    with host_tab(browser) as page:
        page.goto(url)
        wait_rows(page)
        # The user actions tab, as the element's `tab` attribute asks, newest first.
        assert row_actions(page) == ["product.update", "order.create", "cart.add", "order.refund"]
        refund = page.locator(f"{ROWS}:has-text('order.refund')")
        assert "Grace (user_42)" in refund.inner_text()

        page.fill("trailkeep-log #search", "action:order.* actor:user_7")
        page.press("trailkeep-log #search", "Enter")
        page.wait_for_function(
            "() => [...document.querySelector('trailkeep-log').shadowRoot"
            ".querySelectorAll('tbody tr')].length === 1"
        )
        assert row_actions(page) == ["order.create"]
        assert page.url == url  # the view is the element's: the page's address stays its own

        page.fill("trailkeep-log #search", "action:order.refund")
        page.press("trailkeep-log #search", "Enter")
        page.wait_for_function(
            "() => document.querySelector('trailkeep-log').shadowRoot"
            ".querySelector('tbody tr td[data-label=Actor]')?.textContent === 'Grace (user_42)'"
        )
        # By keyboard: the link to the entry, then Verify.
        page.focus("trailkeep-log table.entries a:text-is('order.refund')")
        page.keyboard.press("Enter")
        page.wait_for_selector("trailkeep-log article.entry")
        entry = page.locator("trailkeep-log article.entry")
        # Untrusted text stays text: the markup in the metadata shows as written.
        assert MARKUP in entry.inner_text()
        assert page.evaluate("window.__owned") is None
        assert page.url == url
        assert page.title() == "Shop admin"
        page.focus("trailkeep-log button:text-is('Verify')")
        page.keyboard.press("Enter")
        page.wait_for_selector("trailkeep-log [data-testid=verdict].ok, "
                               "trailkeep-log [data-testid=verdict].bad")  # fmt: skip
        verdict = page.locator("trailkeep-log [data-testid=verdict]").inner_text()
        assert verdict.startswith("Verified"), verdict
        assert f"seq {embedded.entries['refund']['seq']}" in verdict

        # Back to the log: the search it had.
        page.click("trailkeep-log a.back")
        page.wait_for_selector(f"{ROWS}")
        assert page.locator("trailkeep-log #search").input_value() == "action:order.refund"

        # The live view streams from the other origin too: a new refund appears at the top.
        page.click("trailkeep-log button:text-is('Live')")
        page.wait_for_function(
            "() => document.querySelector('trailkeep-log').shadowRoot"
            ".querySelector('[data-testid=live-status]').textContent.startsWith('Live: new')"
        )
        grace = server.session(embedded.tenant, "user_42", name="Grace")
        with server.client(grace) as client:
            body = {"action": "order.refund", "target_type": "order", "target_id": "ord_11"}
            fresh_entry = expect_created(client.post(events_url(embedded.app_id), json=body))
        page.wait_for_selector(f"{ROWS}.fresh[data-seq='{fresh_entry['seq']}']")
        page.click("trailkeep-log button:text-is('Live')")
    # Every read was recorded as Ada's, as a person's read through the console is.
    reads = reads_by(server, embedded, "ada")
    fresh = reads[: len(reads) - before]  # newest first
    assert len(fresh) >= 4  # the first page, two searches, the entry (and counts)
    assert {r["actor"]["role"] for r in fresh} == {"auditor"}


@pytest.mark.parametrize(("width", "scheme"), [(1280, "light"), (390, "dark")])
def test_the_page_and_the_element_keep_their_styles_apart_and_the_page_themes_it(
    browser: Browser, server: Server, embedded: Seeded, pages: PageServer, width: int, scheme: str
) -> None:
    pages.session = server.session(embedded.tenant, "ada", role="owner", name="Ada")
    with host_tab(browser, width=width, dark=scheme == "dark") as page:
        page.goto(host_page_url(server, embedded, pages))
        wait_rows(page)
        # The page's `table { display: none }` and `* { color: red }` do not reach inside.
        table = "trailkeep-log table.entries"
        assert style_of(page, table, "display") == "table"
        assert page.locator(table).is_visible()
        cell = f"{ROWS} td[data-label=Actor]"
        assert style_of(page, cell, "color") != "rgb(255, 0, 0)"
        assert style_of(page, cell, "letter-spacing") == "normal"
        # Theming: the page's --tk-accent and --tk-font, through the shadow boundary.
        accent = ACCENT[scheme]
        assert style_of(page, "trailkeep-log form button[type=submit]", "background-color") == (
            accent
        )
        assert style_of(page, "trailkeep-log .frame", "font-family").startswith("Georgia")
        # Light or dark as the system is.
        background = style_of(page, "trailkeep-log .frame", "background-color")
        assert background == ("rgb(13, 17, 23)" if scheme == "dark" else "rgb(255, 255, 255)")
        # The element's stylesheet does not restyle the page: its own table is still hidden,
        # its input keeps the browser's width, its button the browser's colours.
        assert style_of(page, "#host-table", "display") == "none"
        assert page.locator("#host-input").bounding_box()["width"] < 300  # type: ignore[index]
        assert style_of(page, "#host-button", "background-color") != accent
        # Usable at this width, and no serious axe-core violation inside the element either.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        found = [v for v in serious(page) if "trailkeep-log" in " ".join(v["nodes"])]
        assert found == [], found
        # docs/console.md's picture of it (written only when asked, as test_console_a11y's).
        if os.environ.get("TRAILKEEP_SCREENSHOTS") == "1" and width == 1280:
            page.screenshot(path=str(SHOTS / f"embed-{width}-{scheme}.png"), full_page=True)


def test_a_page_on_an_origin_the_app_does_not_allow_is_told_so(
    browser: Browser, server: Server, embedded: Seeded, pages: PageServer
) -> None:
    pages.session = server.session(embedded.tenant, "ada", role="owner")
    with host_tab(browser, refused=True) as page:
        page.goto(host_page_url(server, embedded, pages, origin=pages.other_origin))
        said = message(page, "The Trailkeep server at")
        assert f"Its origin, {pages.other_origin}, must be among the app's allowed origins" in said
        assert f"--allow-origin {pages.other_origin}" in said
        assert page.locator(ROWS).count() == 0


def test_a_session_for_another_app_expired_or_not_the_apps_is_told_so(
    browser: Browser, server: Server, embedded: Seeded, pages: PageServer
) -> None:
    tenant = embedded.tenant
    pages.session = ""  # the page waits until its code sets one
    other = server.new_app("embedded elsewhere")
    now = int(time.time())
    claims = {"sub": "ada", "aud": tenant.app_id, "role": "owner", "iat": now - 120}
    expired = jwt.encode({**claims, "exp": now - 60}, tenant.session_secret, algorithm="HS256")
    wrong_secret = "not the app's session secret, but as long"
    forged = jwt.encode({**claims, "exp": now + 600}, wrong_secret, algorithm="HS256")

    def give(token: str) -> None:
        page.evaluate("t => { document.querySelector('trailkeep-log').session = t; }", token)

    with host_tab(browser) as page:
        page.goto(host_page_url(server, embedded, pages))
        message(page, "Waiting for a session")
        page.evaluate(
            """() => document.querySelector("trailkeep-log").addEventListener(
                 "trailkeep-session-expired",
                 () => { window.__expired = (window.__expired ?? 0) + 1; })"""
        )
        give(server.session(other, "ada", role="owner"))
        said = message(page, "The session is for app")
        app = tenant.app_id
        assert said == f"The session is for app {other.app_id}, not {app}: mint it for {app}."
        give(expired)
        assert message(page, "The session has expired") == (
            "The session has expired: this page must mint a new one."
        )
        give(forged)
        assert "was not minted with this app's session secret" in message(
            page, "The server does not take this session"
        )
        assert page.evaluate("window.__expired") == 2  # the page hears of it, to mint anew
        assert page.locator(ROWS).count() == 0
        # A plain user's session is the app's, but cannot read: the viewer says so.
        give(server.session(tenant, "user_42"))
        page.wait_for_function(
            "() => document.querySelector('trailkeep-log').shadowRoot"
            ".querySelector('[data-testid=log-error]')?.textContent"
        )
        assert (
            page.locator("trailkeep-log [data-testid=log-error]")
            .inner_text()
            .startswith("A user session cannot read the log (owners, admins and auditors can)")
        )
        assert page.locator(ROWS).count() == 0
        # A good session after all that: the log appears.
        give(server.session(tenant, "ada", role="owner"))
        wait_rows(page)
        assert page.locator(ROWS).count() > 0
        assert page.locator(MESSAGE).inner_text() == ""
        # The token was never an attribute, and cannot be read back from the element.
        assert page.evaluate("document.querySelector('trailkeep-log').session") is None
        assert "eyJ" not in page.evaluate("document.documentElement.outerHTML")

        # A page that sets the session before the script defines the element: taken on upgrade.
        pages.session = server.session(tenant, "ada", role="owner")
        page.goto(pages.add("/late.html", LATE_PAGE % {"server": server.url, "app": tenant.app_id}))
        wait_rows(page)
        assert page.locator(ROWS).count() > 0


def test_the_example_page_in_the_guide_runs(
    browser: Browser, server: Server, embedded: Seeded, pages: PageServer
) -> None:
    # docs/console.md cannot rot: its page and its script, the server's address and the app
    # id put in, the script inlined (the page server serves pages only), `/session` its backend.
    text = GUIDE.read_text().partition("## Embed it in your app")[2].partition("\n## ")[0]
    found = [re.search(rf"^```{kind}\n(.*?)^```$", text, re.M | re.S) for kind in ("html", "js")]
    html, script = found
    assert html is not None
    assert script is not None
    page_html = (
        html.group(1)
        .replace("https://audit.example.com", server.url)
        .replace("app_7Kq2…", embedded.app_id)
        .replace('<script type="module" src="/admin/audit-log.js"></script>',
                 f'<script type="module">{script.group(1)}</script>')
        .replace("/admin/trailkeep-session", "/session")
    )  # fmt: skip
    pages.session = server.session(embedded.tenant, "ada", role="auditor")
    with host_tab(browser) as page:
        page.goto(pages.add("/guide.html", page_html))
        wait_rows(page)
        # Its attributes: the administrator actions, audit.read left out.
        kinds = page.locator(f"{ROWS} td[data-label=Kind]").all_inner_texts()
        assert set(kinds) == {"admin"}
        assert "audit.read" not in row_actions(page)
        assert "user.role.change" in row_actions(page)
        # Its theme: --tk-accent #8a1c5c.
        button = "trailkeep-log form button[type=submit]"
        assert style_of(page, button, "background-color") == "rgb(138, 28, 92)"


def test_the_console_page_is_never_framed_and_only_its_files_are_shared(server: Server) -> None:
    with server.client() as client:
        console = expect_status(client.get("/console", headers={"Origin": "https://a.example"}))
        embed = expect_status(client.get("/console/embed.mjs"))
        again = client.get("/console/embed.mjs", headers={"If-None-Match": embed.headers["etag"]})
        key = expect_status(client.get("/v1/checkpoint-key"))
    assert "frame-ancestors 'none'" in console.headers["content-security-policy"]
    assert "access-control-allow-origin" not in console.headers
    assert embed.headers["access-control-allow-origin"] == "*"
    assert embed.headers["content-type"] == "text/javascript; charset=utf-8"
    assert embed.headers["cross-origin-resource-policy"] == "cross-origin"
    # A revalidation of a cross-origin module passes the same check.
    assert again.status_code == 304
    assert again.headers["access-control-allow-origin"] == "*"
    assert key.headers["access-control-allow-origin"] == "*"
