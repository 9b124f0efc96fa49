"""The console's settings pages in Chromium against a real `trailkeep serve`: each change an
owner makes there (retention and its approvals, origins, keys, webhooks, holds, erasures) and
the entry it leaves in the app's log; a second owner's approvals; what an auditor, an admin and
keys are offered, and the server refusing them; axe-core on every area, light and dark."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.console_pages import (
    MARKUP,
    SHOTS,
    Seeded,
    console_page,
    link,
    wait_loaded,
)
from tests.browser.test_console_a11y import serious
from tests.integration.http_api import events_url, expect_problem, expect_status, list_all
from tests.servers import Server, free_port
from trailkeep.sdk import mint_session

pytestmark = pytest.mark.timeout(180)

APP_NAME = "console settings"  # the app `seeded` (tests/browser/conftest.py) makes
NOTICE = '[data-testid="settings-notice"]'
ERROR = '[data-testid="settings-error"]'
AREAS = {
    "retention": "Retention", "origins": "Allowed origins", "keys": "API keys",
    "webhooks": "Webhooks", "holds": "Legal holds", "erasures": "Erasure requests",
    "session": "Session secret",
}  # fmt: skip


def logged(server: Server, seeded: Seeded, action: str) -> list[dict[str, Any]]:
    """The app's entries of ``action``, newest first (read with its key: not a recorded read)."""
    with server.client(seeded.tenant.key) as client:
        return list_all(client, seeded.app_id, {"action": action})


def area(page: Page, name: str) -> None:
    """Open a settings area from its tab and wait until it is drawn."""
    page.click(f"nav[aria-label='Settings'] a:text-is('{AREAS[name]}')")
    page.wait_for_selector(f".settings-area[data-area='{name}']:not([aria-busy])")


def act(page: Page, selector: str, confirm: str | None = None) -> str:
    """Press a button (and confirm in the dialog); return what the page says happened."""
    page.click(selector)
    if confirm is not None:
        page.click(f"dialog[open] button:text-is('{confirm}')")
    page.wait_for_function(
        f"""() => document.querySelector('{ERROR}').textContent
              || document.querySelector('{NOTICE}').textContent.startsWith('Done')"""
    )
    page.wait_for_selector(".settings-area:not([aria-busy])")
    return page.inner_text(ERROR) or page.inner_text(NOTICE)


def erase(page: Page, actor: str) -> str:
    """Ask, on the Erasure requests area, to erase an actor's entries; what the page says."""
    area(page, "erasures")
    form = "form[aria-label='Request an erasure']"
    page.fill(f"{form} input[name=value]", actor)
    page.fill(f"{form} input[name=reason]", "a data subject asked")
    return act(page, "button:text-is('Request erasure')", confirm="Request erasure")


def failed(server: Server, seeded: Seeded, hook: str) -> dict[str, Any]:
    """The webhook once the server has tried to deliver to it and failed (within 20 s)."""
    deadline = time.monotonic() + 20
    with server.client(seeded.tenant.key) as client:
        while time.monotonic() < deadline:
            found: dict[str, Any] = client.get(f"/v1/apps/{seeded.app_id}/webhooks/{hook}").json()
            if found["last_error"]:
                return found
            time.sleep(0.1)
    raise AssertionError(f"no delivery to {hook} failed")


def one(server: Server, seeded: Seeded, action: str, said: str) -> dict[str, Any]:
    """The newest entry of ``action``, which the page named in ``said``."""
    entry = logged(server, seeded, action)[0]
    assert f"{action} (seq {entry['seq']})" in said, said
    assert entry["kind"] == "admin"
    return entry


def test_an_owner_changes_each_setting_and_each_change_is_logged(
    browser: Browser, server: Server, seeded: Seeded
) -> None:
    with console_page(browser) as page:
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
        page.goto(link(server, seeded, "ada", "owner", "Ada"))
        wait_loaded(page)
        page.click("nav.views a:text-is('Settings')")
        page.wait_for_selector("h2:text-is('Settings: Retention')")
        assert page.get_attribute("nav.views a:text-is('Settings')", "aria-current") == "page"
        now = page.inner_text('[data-testid="retention-now"]')
        assert "kept forever" in now
        assert "1 owner" in now

        # Retention, and the approvals it and erasures need.
        page.select_option("select[name=approvals]", "2")
        said = act(page, "button:text-is('Change approvals')")
        entry = one(server, seeded, "app.settings.change", said)
        assert entry["changes"] == [{"path": "/erasure_approvals", "old": 1, "new": 2}]
        assert entry["actor"]["id"] == "ada"
        page.fill("input[name=days]", "30")
        said = act(page, "button:text-is('Change retention')")
        entry = one(server, seeded, "retention.change.request", said)
        assert entry["changes"] == [{"path": "/retention_days", "old": None, "new": 30}]
        waiting = page.inner_text('[data-testid="pending-retention"]')
        assert "30 days" in waiting
        assert "1 of 2" in waiting
        # Ada asked: her approval counts already, and the server's refusal is said plainly.
        said = act(page, "button:text-is('Approve')")
        assert said == "The server refused: user:ada approved it already"

        # Allowed origins: a bad one refused in the server's words, one added, one removed.
        area(page, "origins")
        # The tab followed, the area's heading has the focus: the keyboard goes on from there.
        assert page.evaluate("document.activeElement.textContent") == "Settings: Allowed origins"
        page.fill("input[name=origin]", "ftp://shop.example.com")
        said = act(page, "button:text-is('Add origin')")
        assert said.startswith("The server refused: allowed_origins: "), said
        page.fill("input[name=origin]", "https://shop.example.com")
        said = act(page, "button:text-is('Add origin')")
        entry = one(server, seeded, "app.settings.change", said)
        assert entry["changes"][0]["new"] == ["https://shop.example.com"]
        assert page.inner_text('[data-testid="origins"]').startswith("https://shop.example.com")
        said = act(page, "button[aria-label='Remove https://shop.example.com']", confirm="Remove")
        entry = one(server, seeded, "app.settings.change", said)
        assert entry["changes"] == [{"path": "/allowed_origins",
                                     "old": ["https://shop.example.com"], "new": []}]  # fmt: skip

        # A key: its secret shown once (and copied), working; revoked after a confirmation.
        area(page, "keys")
        page.fill("input[name=name]", MARKUP)
        page.check("input[value='events:read']")
        said = act(page, "button:text-is('Create key')")
        made = one(server, seeded, "key.create", said)
        secret = page.inner_text('[data-testid="secret"]')
        assert secret.startswith("tk_")
        assert "Shown once" in page.inner_text('[data-testid="shown-once"]')
        assert page.evaluate("document.activeElement.dataset.testid") == "shown-once"
        page.click("[data-testid='shown-once'] button:text-is('Copy')")
        page.wait_for_selector("[data-testid='shown-once'] :text('Copied.')")
        assert page.evaluate("navigator.clipboard.readText()") == secret
        assert made["metadata"] == {"name": MARKUP, "scopes": ["events:read"]}
        assert secret not in str(made)
        with server.client(secret) as client:
            expect_status(client.get(events_url(seeded.app_id), params={"limit": 1}))
        # The name is text, never markup.
        assert page.evaluate("window.__owned") is None
        assert MARKUP in page.inner_text('[data-testid="keys"]')
        page.click("button:text-is('I have stored it')")
        assert page.locator('[data-testid="shown-once"]').count() == 0
        assert secret not in page.inner_text("main")
        # Escape cancels: nothing revoked, nothing logged.
        revokes = len(logged(server, seeded, "key.revoke"))
        page.click(f"button[aria-label='Revoke {MARKUP}']")
        page.wait_for_selector("dialog[open]")
        assert page.evaluate("document.activeElement.textContent") == "Cancel"
        page.keyboard.press("Escape")
        page.wait_for_selector("dialog", state="detached")
        assert page.evaluate("document.activeElement.textContent") == "Revoke"  # back where it was
        assert len(logged(server, seeded, "key.revoke")) == revokes
        said = act(page, f"button[aria-label='Revoke {MARKUP}']", confirm="Revoke")
        entry = one(server, seeded, "key.revoke", said)
        assert entry["target"]["id"] == made["target"]["id"]
        with server.client(secret) as client:
            expect_problem(client.get(events_url(seeded.app_id)), 401, "unauthenticated")

        # A webhook to a port nothing listens on: its secret once, its last error, replay, delete.
        area(page, "webhooks")
        page.fill("input[name=url]", f"http://127.0.0.1:{free_port()}/hook")
        said = act(page, "button:text-is('Add destination')")
        created = one(server, seeded, "webhook.create", said)
        assert page.inner_text('[data-testid="secret"]').startswith("whsec_")
        hook = created["target"]["id"]
        found = failed(server, seeded, hook)
        area(page, "webhooks")
        card = f"article[data-hook='{hook}']"
        assert page.inner_text(f"{card} [data-testid='hook-error']") == found["last_error"]
        page.click(f"{card} button:text-is('Recent deliveries')")
        page.wait_for_selector(f"{card} [data-testid='deliveries'] tbody tr")
        assert "no answer" in page.inner_text(f"{card} [data-testid='deliveries']")
        page.fill(f"{card} input[name=from_seq]", "0")
        said = act(page, f"{card} button:text-is('Replay')")
        assert one(server, seeded, "webhook.replay", said)["metadata"] == {"from_seq": 0}
        said = act(page, f"{card} button:text-is('Delete')", confirm="Delete")
        assert one(server, seeded, "webhook.delete", said)["target"]["id"] == hook
        assert page.inner_text('[data-testid="webhooks"]') == "No webhook destinations."

        # A hold on user_7 refuses an erasure of user_7 (409 held); released, the erasure waits.
        area(page, "holds")
        page.fill("form[aria-label='Place a legal hold'] input[name=value]", "user_7")
        page.fill("form[aria-label='Place a legal hold'] input[name=reason]", MARKUP)
        said = act(page, "button:text-is('Place hold')")
        held = one(server, seeded, "hold.place", said)
        assert MARKUP in page.inner_text('[data-testid="holds"]')
        said = erase(page, "user_7")
        assert said.startswith("The server refused: seq "), said
        assert said.endswith(f"is under legal hold {held['target']['id']}: nothing was erased")
        area(page, "holds")
        said = act(page, f"button[aria-label='Release {held['target']['id']}']", confirm="Release")
        one(server, seeded, "hold.release", said)
        said = erase(page, "user_7")
        requested = one(server, seeded, "erasure.request", said)
        assert "pending" in page.inner_text('[data-testid="erasures"] tbody tr')
        assert "1 of 2" in page.inner_text('[data-testid="erasures"] tbody tr')

        # Another owner approves the erasure (carried out) and the retention change, then
        # cancels that.
        page.goto(link(server, seeded, "bob", "owner", "Bob"))
        wait_loaded(page)
        page.goto(f"{server.url}/console?view=settings&area=erasures")
        page.wait_for_selector(".settings-area[data-area='erasures']:not([aria-busy])")
        said = act(page, "[data-testid='erasures'] button:text-is('Approve')", confirm="Approve")
        approved = one(server, seeded, "erasure.approve", said)
        done = one(server, seeded, "erasure.done", said)
        assert approved["actor"]["id"] == "bob"
        assert approved["target"] == done["target"] == requested["target"]
        assert "done" in page.inner_text('[data-testid="erasures"] tbody tr')
        area(page, "retention")
        said = act(page, "button:text-is('Approve')")
        one(server, seeded, "retention.change.approve", said)
        assert "2 of 2" in page.inner_text('[data-testid="pending-retention"]')
        # Approved by as many owners as it needs: nothing more is offered but cancelling.
        assert page.locator('[data-testid="pending-approved"]').is_visible()
        assert (
            page.locator('[data-testid="pending-retention"] button:text-is("Approve")').count() == 0
        )
        said = act(page, "button:text-is('Cancel the change')", confirm="Cancel the change")
        one(server, seeded, "retention.change.cancel", said)
        assert page.locator('[data-testid="pending-retention"]').count() == 0


def test_an_auditor_is_offered_nothing_to_manage_and_the_server_refuses_it(
    browser: Browser, server: Server, seeded: Seeded
) -> None:
    app = seeded.app_id
    with console_page(browser) as page:
        page.goto(link(server, seeded, "ines", "auditor", "Inès"))
        wait_loaded(page)
        assert page.locator("nav.views").count() == 0  # no way to the settings
        page.goto(f"{server.url}/console?view=settings&area=keys")
        refused = page.wait_for_selector('[data-testid="settings-refused"]')
        assert refused.inner_text().startswith("An auditor session reads and verifies the log")
        buttons = page.eval_on_selector_all("button", "bs => bs.map(b => b.textContent)")
        assert buttons == ["Sign out"]
        assert page.locator("form, input, select").count() == 0

        # A key with `manage` manages, but never approves: an erasure waits for an owner.
        with server.client(seeded.tenant.key) as client:
            expect_status(client.patch(f"/v1/apps/{app}", json={"erasure_approvals": 2}))
        owner = server.session(seeded.tenant, "ada", role="owner")
        with server.client(owner) as client:
            body = {"subject": {"actor_id": "nobody"}, "reason": "asked"}
            waiting = expect_status(client.post(events_url(app, "erasures"), json=body), 202)
            assert waiting.json()["status"] == "pending"
        page.click("button:text-is('Sign out')")
        page.fill("#signin-key", seeded.tenant.key)
        page.fill("#signin-app", app)
        page.click("button:text-is('Sign in')")
        wait_loaded(page)
        page.click("nav.views a:text-is('Settings')")
        area(page, "erasures")
        row = page.locator("[data-testid='erasures'] tbody tr", has_text=waiting.json()["id"])
        assert "an owner's session approves" in row.inner_text()
        assert row.locator("button").count() == 0
        area(page, "keys")
        mine = page.locator("[data-testid='keys'] tbody tr", has_text="(this sign-in)")
        assert seeded.tenant.key_id in mine.inner_text()

        # A key that only reads is told so by the server's refusal, and shown no form.
        reader = server.new_key(app, "events:read").key
        page.click("button:text-is('Sign out')")
        page.fill("#signin-key", reader)
        page.fill("#signin-app", app)
        page.click("button:text-is('Sign in')")
        wait_loaded(page)
        page.click("nav.views a:text-is('Settings')")
        said = page.wait_for_selector(f"{ERROR}:not(:empty)").inner_text()
        assert said.startswith("This key cannot do that (managing needs the manage scope): ")
        assert page.locator("main form, main input, main select").count() == 0

    # The server refuses what the page does not offer: auditors' and admins' sessions manage
    # nothing, and a reading key neither.
    for credential in (
        server.session(seeded.tenant, "ines", role="auditor"),
        server.session(seeded.tenant, "alan", role="admin"),
        reader,
    ):
        with server.client(credential) as client:
            expect_problem(client.patch(f"/v1/apps/{app}", json={"retention_days": 1}), 403,
                           "forbidden")  # fmt: skip
            expect_problem(client.get(f"/v1/apps/{app}/keys"), 403, "forbidden")
            expect_problem(client.post(f"/v1/apps/{app}/holds", json={
                "subject": {"all": True}, "reason": "x"}), 403, "forbidden")  # fmt: skip


def test_an_owner_rotates_and_retires_the_session_secret(browser: Browser, server: Server) -> None:
    # An app of its own: retiring its secret ends every session signed with the old one.
    fresh = Seeded(server.new_app("console secret"))
    app = fresh.app_id
    with console_page(browser) as page:
        page.goto(link(server, fresh, "ada", "owner", "Ada"))
        wait_loaded(page)
        page.goto(f"{server.url}/console?view=settings&area=session")
        page.wait_for_selector(".settings-area[data-area='session']:not([aria-busy])")
        said = act(page, "button:text-is('Rotate')")
        rotated = one(server, fresh, "session_secret.rotate", said)
        secret = page.inner_text('[data-testid="secret"]')
        assert secret not in str(rotated)
        newer = mint_session(app, secret, "bob", role="owner")
        with server.client(newer) as client:
            expect_status(client.get(f"/v1/apps/{app}"))
        said = act(page, "button:text-is('Rotate')")
        assert said.startswith("The server refused: a new session secret is already out"), said
        page.click("button:text-is('Retire the old secret')")
        page.click("dialog[open] button:text-is('Retire')")
        # The page's own session was signed with the old secret: the server signs it out.
        page.wait_for_selector("#signin-key")
        assert page.inner_text("#signin-error").startswith("Signed out by the server")
    retired = logged(server, fresh, "session_secret.retire")[0]
    assert retired["actor"]["id"] == "ada"
    with server.client(newer) as client:
        expect_status(client.get(f"/v1/apps/{app}"))
    with server.client(server.session(fresh.tenant, "ada", role="owner")) as client:
        expect_problem(client.get(f"/v1/apps/{app}"), 401, "unauthenticated")


@pytest.mark.parametrize(("width", "scheme"), [(1280, "light"), (390, "dark")])
def test_every_settings_area_has_no_serious_accessibility_violations(
    browser: Browser, server: Server, seeded: Seeded, width: int, scheme: str, tmp_path: Path
) -> None:
    shots = SHOTS if os.environ.get("TRAILKEEP_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[dict[str, Any]]] = {}
    with console_page(browser, width=width, dark=scheme == "dark") as page:
        page.goto(link(server, seeded, "ada", "owner", "Ada"))
        wait_loaded(page)
        page.goto(f"{server.url}/console?view=settings")
        page.wait_for_selector(".settings-area[data-area='retention']:not([aria-busy])")
        for name in AREAS:
            area(page, name)
            if name == "keys":
                page.check("input[value='events:write']")
                act(page, "button:text-is('Create key')")
                page.wait_for_selector('[data-testid="shown-once"]')
                # The confirmation dialog too (cancelled).
                page.click("[data-testid='keys'] button:text-is('Revoke')")
                page.wait_for_selector("dialog[open]")
                found["dialog"] = serious(page)
                page.keyboard.press("Escape")
                page.wait_for_selector("dialog", state="detached")
            found[name] = serious(page)
            if (name, width) in {("keys", 1280), ("erasures", 390)}:
                page.screenshot(path=str(shots / f"settings-{name}-{width}-{scheme}.png"),
                                full_page=True)  # fmt: skip
            overflow = page.evaluate("document.documentElement.scrollWidth")
            assert overflow <= width, (name, overflow)
    assert found == {name: [] for name in [*AREAS, "dialog"]}
