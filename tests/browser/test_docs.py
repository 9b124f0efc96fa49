"""docs/sdk-browser.md cannot rot: every example in it runs here, in Chromium, against a server;
and the API's own docs pages (`/docs`, `/redoc`) render with no network beyond the server.

The guide's placeholders (server address, app id, page origin, session secret) are replaced by
real values; the `sh` block is run with the real CLI, the `python` block mints the session the
pages fetch from `/session`, `html` blocks are served as pages whose buttons are clicked, and
`js` blocks run in a page that loaded the SDK.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Route

from tests.browser.sdk_pages import PageServer, sdk_page
from tests.integration.http_api import list_all
from tests.servers import Server, Tenant

pytestmark = pytest.mark.timeout(120)

GUIDE = Path(__file__).parents[2] / "docs" / "sdk-browser.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
USER = "user_docs"


def blocks(substitutions: dict[str, str]) -> list[tuple[str, str]]:
    """The guide's fenced blocks as (language, code), placeholders replaced."""
    text = GUIDE.read_text()
    for placeholder in substitutions:
        assert placeholder in text, f"the guide no longer uses {placeholder!r}"
    found = []
    for language, code in BLOCK.findall(text):
        for placeholder, value in substitutions.items():
            code = code.replace(placeholder, value)
        found.append((language, code))
    return found


def test_every_example_in_the_guide_runs(
    browser: Browser, pages: PageServer, server: Server
) -> None:
    app: Tenant = server.new_app("docs")  # no origins yet: the guide's `sh` step adds ours
    examples = blocks({
        "https://audit.example.com": server.url, "app_4f6ts2xqvbwy3kdn": app.app_id,
        "https://shop.example": pages.origin, "replace-with-the-app-session-secret":
        app.session_secret,
    })  # fmt: skip
    by_language: dict[str, list[str]] = {}
    for language, code in examples:
        by_language.setdefault(language, []).append(code)
    assert {k: len(v) for k, v in by_language.items()} == {"sh": 1, "python": 1, "html": 2, "js": 4}

    command = shlex.split(by_language["sh"][0])
    assert command[:3] == ["trailkeep", "apps", "update"]
    server.cli(*command[1:])

    backend: dict[str, Any] = {}
    exec(by_language["python"][0], backend)  # noqa: S102 - our own guide's code
    pages.session = backend["session_token"](USER, "Doc Reader")

    for number, html in enumerate(by_language["html"]):
        run_page(browser, pages.add(f"/doc-{number}.html", html))

    errors: list[str] = []
    with sdk_page(browser, pages, server, app, pages.session) as page:
        page.on("pageerror", lambda error: errors.append(str(error)))
        for code in by_language["js"]:
            page.evaluate(f"async () => {{\n{code}\n}}")
    assert errors == []

    with server.client(app.key) as client:
        # The guide's `apps update` is the operator's change, logged as an admin entry.
        entries = list_all(client, app.app_id, {"kind": "user"})
        (change,) = list_all(client, app.app_id, {"kind": "admin"})
    assert change["action"] == "app.settings.change"
    assert change["actor"]["type"] == "operator"
    assert sorted(e["action"] for e in entries) == sorted([
        "order.refund", "order.refund", "settings.email.change", "session.refresh.check",
        "user.invite", "user.role.change",
    ])  # fmt: skip
    assert {e["actor"]["id"] for e in entries} == {USER}
    assert {e["actor"]["name"] for e in entries} == {"Doc Reader"}


def run_page(browser: Browser, url: str) -> None:
    """Open an example page, click each of its buttons, and wait for each to be recorded."""
    context = browser.new_context()
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        buttons = page.locator("button")
        assert buttons.count() >= 1, url
        for index in range(buttons.count()):
            with page.expect_console_message(recorded, timeout=30_000) as message:
                buttons.nth(index).click()
            assert re.fullmatch(r"recorded evt_[0-9a-f]{44} as entry \d+", message.value.text)
    finally:
        context.close()
    assert errors == [], url


def recorded(message: ConsoleMessage) -> bool:
    """The examples' success line (or their error line, so that a failure fails fast)."""
    return message.text.startswith(("recorded", "not recorded"))


# What each page shows once it has rendered the schema: an operation of the API.
RENDERED = {
    "/docs": ".swagger-ui .opblock-summary-path",  # Swagger UI's list of operations
    "/redoc": "[data-section-id^='operation/']",  # ReDoc's sections, one per operation
}


@pytest.mark.parametrize("path", sorted(RENDERED))
def test_api_docs_render_offline(browser: Browser, server: Server, path: str) -> None:
    # Every request that leaves the loopback interface is refused, as on a machine without
    # internet: the page must load its scripts, styles and schema from the server alone (and
    # its Content-Security-Policy keeps it from even asking, as for ReDoc's CDN logo).
    context = browser.new_context()
    outside: list[str] = []
    loaded: list[str] = []

    def only_loopback(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1":
            loaded.append(url)
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    errors: list[str] = []
    try:
        context.route("**/*", only_loopback)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.url + path)
        page.wait_for_selector(RENDERED[path], timeout=60_000)
        text = page.inner_text("body")
    finally:
        context.close()
    assert outside == []
    assert errors == []
    assert "/v1/apps/{app_id}/events" in text
    assert f"{server.url}/openapi.json" in loaded
    assert any(url.startswith(f"{server.url}/docs/assets/") for url in loaded), loaded
