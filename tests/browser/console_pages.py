"""The console's browser tests share this: an app whose log holds administrator and user actions
(written through the real API by keys and sessions), sign-in links, and reading the page."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from playwright.sync_api import Browser, ConsoleMessage, Page

from tests.integration.http_api import events_url, expect_created, list_all
from tests.servers import Server, Tenant, run_cli

SHOTS: Final = Path(__file__).parents[2] / "docs" / "console"
#: Untrusted text in the log: it must show as these characters, never act as markup.
MARKUP: Final = "<img src=x onerror=window.__owned=1>"


@dataclass
class Seeded:
    """The app and what its log holds, by name."""

    tenant: Tenant
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def app_id(self) -> str:
        """The app's id."""
        return self.tenant.app_id


def seed(server: Server, name: str) -> Seeded:
    """An app with a known mix: the owner's, a key's and end users' actions."""
    tenant = server.new_app(name)
    seeded = Seeded(tenant)
    ada = server.session(tenant, "ada", role="owner", name="Ada")
    user_42 = server.session(tenant, "user_42", name="Grace")
    user_7 = server.session(tenant, "user_7")
    writes: list[tuple[str, str, dict[str, Any]]] = [
        ("role", ada, {"action": "user.role.change", "target_type": "user", "target_id": "u_1",
                       "changes": [{"path": "/role", "old": "member", "new": "admin"}]}),
        ("key_refund", tenant.key, {"action": "order.refund", "target_type": "order",
                                    "target_id": "ord_9", "metadata": {"amount": 49.99}}),
        ("refund", user_42, {
            "action": "order.refund", "target_type": "order", "target_id": "ord_9",
            "metadata": {"amount": 49.99, "reason": "damaged",
                         "items": [{"sku": "A-1", "qty": 2}], "note": MARKUP,
                         "shown": "refund\u202egnp.exe"},
            "project": "checkout", "server": "web-3",
        }),
        ("cart", user_42, {"action": "cart.add", "target_type": "cart", "target_id": "c_1"}),
        ("create", user_7, {"action": "order.create", "target_type": "order",
                            "target_id": "ord_10"}),
        ("price", user_7, {"action": "product.update", "target_type": "product",
                           "target_id": "p_1",
                           "changes": [{"path": "/price", "old": 10, "new": 12},
                                       {"path": "/tag", "new": "sale"}]}),
    ]  # fmt: skip
    for label, credential, body in writes:
        with server.client(credential) as client:
            seeded.entries[label] = expect_created(
                client.post(events_url(tenant.app_id), json=body)
            )
    return seeded


def reads_by(server: Server, seeded: Seeded, actor: str) -> list[dict[str, Any]]:
    """The `audit.read` entries recorded for ``actor``, newest first."""
    with server.client(seeded.tenant.key) as client:
        return list_all(client, seeded.app_id, {"action": "audit.read", "actor": actor})


def link(
    server: Server, seeded: Seeded, sub: str, role: str, name: str | None = None, ttl: str = "15m"
) -> str:
    """A sign-in link from the real `trailkeep console link`, on this server's address."""
    args = ["console", "link", "--app", seeded.app_id, "--sub", sub, "--role", role, "--ttl", ttl]
    if name:
        args += ["--name", name]
    made = run_cli(*args, env={**server.env, "TRAILKEEP_PUBLIC_URL": server.url})
    return made.stdout.strip()


@contextmanager
def console_page(
    browser: Browser, width: int = 1280, height: int = 900, dark: bool = False
) -> Iterator[Page]:
    """A fresh tab (its own storage); fails the test on a script error or a CSP violation."""
    context = browser.new_context(
        viewport={"width": width, "height": height},
        color_scheme="dark" if dark else "light",
        timezone_id="Europe/Paris",
        locale="en-GB",
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        # A refused inline script or style, or a request to another host, is a console error.
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(f"console error: {message.text}")

    page.on("console", on_console)
    try:
        yield page
    finally:
        context.close()
    assert problems == [], problems


def rows(page: Page) -> list[dict[str, str]]:
    """The table's rows as the person sees them, column by column."""
    found: list[dict[str, str]] = page.eval_on_selector_all(
        "table.entries tbody tr",
        """trs => trs.map(tr => {
             const cells = [...tr.cells].map(td => td.textContent);
             return {time: cells[0], actor: cells[1], action: cells[2], target: cells[3],
                     kind: cells[4], ip: cells[5], title: tr.querySelector("time")?.title};
           })""",
    )
    return found


def actions(found: list[dict[str, str]]) -> list[str]:
    """The action column of rows."""
    return [row["action"] for row in found]


def wait_loaded(page: Page) -> None:
    """Until the log's status says the page is in (or why nothing is)."""
    page.wait_for_function(
        """() => {
             const status = document.querySelector('[data-testid="log-status"]');
             const error = document.querySelector('[data-testid="log-error"]');
             return (status && status.textContent && status.textContent !== "Loading…")
               || (error && error.textContent);
           }"""
    )


def verify(page: Page) -> str:
    """Press Verify and wait for the verdict (verified or not); return what it says."""
    page.click("button:text-is('Verify')")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=verdict]').matches('.ok, .bad')"
    )
    return page.inner_text('[data-testid="verdict"]')


def search(page: Page, text: str) -> list[dict[str, str]]:
    """Type a search, press Enter, and read the rows."""
    page.fill("#search", text)
    page.press("#search", "Enter")
    page.wait_for_function("q => new URLSearchParams(location.search).get('q') === q", arg=text)
    wait_loaded(page)
    return rows(page)
