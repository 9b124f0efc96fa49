"""The console in Chromium against a real `trailkeep serve`: sign-in by link and by key, the
tabs, search by each qualifier, the URL round trip, paging, an entry, Verify (and a tampered
proof failing), an auditor's and a plain user's limits, sign-out; and every read recorded."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from playwright.sync_api import Browser, Page, Route

from tests.browser.console_pages import (
    MARKUP,
    Seeded,
    actions,
    console_page,
    link,
    reads_by,
    rows,
    search,
    verify,
    wait_loaded,
)
from tests.integration.http_api import events_url, expect_status
from tests.servers import Server

pytestmark = pytest.mark.timeout(180)


APP_NAME = "console"  # the app `seeded` (tests/browser/conftest.py) makes


def test_an_owner_signs_in_by_link_searches_pages_and_signs_out(
    browser: Browser, server: Server, seeded: Seeded
) -> None:
    url = link(server, seeded, "ada", "owner", "Ada")
    token = url.partition("#session=")[2]
    with console_page(browser) as page:
        page.goto(url)
        page.wait_for_selector('[data-testid="who"]')
        wait_loaded(page)
        # The session left the address at once (and the history entry): only storage holds it.
        assert "#" not in page.url
        assert "session=" not in page.evaluate("location.href")
        stored = json.loads(page.evaluate("sessionStorage.getItem('trailkeep.console')"))
        assert stored["credential"] == token
        with server.client() as client:
            assert stored["checkpointKey"] == client.get("/v1/checkpoint-key").text.strip()
        assert page.inner_text('[data-testid="who"]').startswith("Signed in: Ada (ada)")
        assert page.inner_text('[data-testid="role"]') == "owner"

        # The landing: All, but the log's records of its own reads, as the search box says.
        assert page.get_attribute('[data-tab="all"]', "aria-current") == "page"
        assert page.input_value("#search") == "-action:audit.read"
        assert "audit.read" not in actions(rows(page))
        # The tabs: administrator actions, user actions, all.
        page.click('[data-tab="admin"]')
        page.wait_for_url("**tab=admin**")
        wait_loaded(page)
        admin = rows(page)
        assert {r["kind"] for r in admin} == {"admin"}
        assert {"user.role.change", "order.refund"} <= set(actions(admin))
        page.click('[data-tab="user"]')
        page.wait_for_url("**tab=user**")
        wait_loaded(page)
        user = rows(page)
        assert {r["kind"] for r in user} == {"user"}
        assert actions(user) == ["product.update", "order.create", "cart.add", "order.refund"]
        assert user[3]["actor"] == "Grace (user_42)"
        assert user[3]["target"] == "order/ord_9"
        assert user[3]["ip"] == "127.0.0.1"
        # Time in the viewer's zone (Paris, UTC+1 in December), UTC on hover.
        stamp = seeded.entries["refund"]["time"]
        assert user[3]["title"] == stamp.replace("T", " ").replace("Z", " UTC")
        local = datetime.fromisoformat(stamp.replace("Z", "+00:00")) + timedelta(hours=1)
        assert local.strftime("%H:%M:%S") in user[3]["time"]
        page.click('[data-tab="all"]')
        page.wait_for_url("**tab=all**")
        wait_loaded(page)
        assert {r["kind"] for r in rows(page)} == {"admin", "user"}

        # Each qualifier, typed into the box (on the All tab).
        today = datetime.now(UTC).date()
        not_reads = "-action:audit.read"
        assert actions(search(page, f"action:order.refund {not_reads}")) == ["order.refund"] * 2
        assert actions(search(page, "action:order.*")) == [
            "order.create", "order.refund", "order.refund"
        ]  # fmt: skip
        assert actions(search(page, "action:cart.add action:order.create")) == [
            "order.create", "cart.add"
        ]  # fmt: skip
        assert actions(search(page, "actor:user_42")) == ["cart.add", "order.refund"]
        assert actions(search(page, "target:order/ord_9")) == ["order.refund"] * 2
        assert actions(search(page, "target_type:product")) == ["product.update"]
        assert actions(search(page, f"kind:user {not_reads}")) == actions(user)
        assert actions(search(page, "changed:price")) == ["product.update"]
        assert actions(search(page, "changed:/role")) == ["user.role.change"]
        everything = search(page, f"since:{today} {not_reads}")
        assert len(everything) == 6
        assert "audit.read" not in actions(everything)
        assert search(page, f"until:{today - timedelta(days=1)}") == []
        assert page.inner_text('[data-testid="log-status"]') == "No entries match."
        assert len(search(page, f"until:{today} {not_reads}")) == 6  # the whole of today
        # A search that cannot run says why, and asks nothing of the server.
        search(page, "refund")
        assert "use a qualifier" in page.inner_text('[data-testid="log-error"]')
        assert rows(page) == []

        # The search lives in the address: a reload keeps it, back and forward walk it.
        search(page, "actor:user_42")
        search(page, "target_type:product")
        page.reload()
        wait_loaded(page)
        assert page.input_value("#search") == "target_type:product"
        assert actions(rows(page)) == ["product.update"]
        page.go_back()
        page.wait_for_function("() => document.querySelector('#search').value === 'actor:user_42'")
        wait_loaded(page)
        assert actions(rows(page)) == ["cart.add", "order.refund"]
        page.go_forward()
        page.wait_for_function("() => location.search.includes('product')")
        wait_loaded(page)
        assert actions(rows(page)) == ["product.update"]

        # Paging by cursor: two entries a page over the user log (4 entries).
        page.goto(f"{server.url}/console?tab=user&limit=2")
        wait_loaded(page)
        assert actions(rows(page)) == ["product.update", "order.create"]
        assert page.is_disabled("button:text-is('Previous')")
        page.click("button:text-is('Next')")
        page.wait_for_url("**cursor=**")
        wait_loaded(page)
        assert actions(rows(page)) == ["cart.add", "order.refund"]
        assert page.is_disabled("button:text-is('Next')")
        page.click("button:text-is('Previous')")
        page.wait_for_function("() => !location.search.includes('cursor')")
        wait_loaded(page)
        assert actions(rows(page)) == ["product.update", "order.create"]
        page.click("button:text-is('Next')")
        page.wait_for_url("**cursor=**")
        wait_loaded(page)
        page.go_back()  # the back button is the previous page too
        page.wait_for_function("() => !location.search.includes('cursor')")
        wait_loaded(page)
        assert actions(rows(page)) == ["product.update", "order.create"]

        # Untrusted content is text: the markup in an entry's metadata never became an element.
        assert page.evaluate("window.__owned") is None

        # Every read the console made is recorded, by Ada, as a read of the log.
        recorded = reads_by(server, seeded, "ada")
        assert len(recorded) >= 20
        assert all(r["actor"] == {"type": "user", "id": "ada", "name": "Ada", "role": "owner"}
                   for r in recorded)  # fmt: skip
        routes = {r["metadata"].get("route") for r in recorded}
        assert {"list", "stats"} <= routes
        assert {"filters": {"actor": "user_42"}, "route": "list", "count": 2} in [
            r["metadata"] for r in recorded
        ]

        # Sign-out forgets the session and shows the sign-in form.
        page.click("button:text-is('Sign out')")
        page.wait_for_selector("#signin-key")
        assert page.evaluate("sessionStorage.length") == 0
        assert page.inner_text("tk-who") == ""


def open_entry(page: Page, label: str) -> None:
    """From the log, open the entry whose action link reads ``label`` (the first one)."""
    page.click(f"table.entries a:text-is('{label}')")
    page.wait_for_selector("article.entry")


def test_an_entry_shows_every_field_and_verifies_in_the_browser(
    browser: Browser, server: Server, seeded: Seeded
) -> None:
    refund = seeded.entries["refund"]
    with console_page(browser) as page:
        page.goto(link(server, seeded, "ada", "admin", "Ada"))
        wait_loaded(page)
        page.goto(f"{server.url}/console?tab=user&q=actor%3Auser_42")
        wait_loaded(page)
        open_entry(page, "order.refund")
        assert page.url.endswith(f"?entry={refund['id']}")
        text = page.inner_text("article.entry")
        for shown in (refund["id"], str(refund["seq"]), refund["time"], "Grace (user_42)",
                      "order/ord_9", "checkout", "web-3", refund["leaf_hash"], refund["app_id"],
                      MARKUP, "refund\\u202egnp.exe"):  # fmt: skip
            assert shown in text, shown
        assert "\u202e" not in text  # a bidi override is shown, never obeyed
        # Metadata as a tree of details/summary, every level open and collapsible.
        tree = page.locator("article.entry details.tree").first
        assert tree.get_attribute("open") == ""
        assert page.locator("article.entry details.tree").count() == 3  # {}, items, items[0]
        tree.locator("summary").first.click()
        assert tree.get_attribute("open") is None
        # Links that search for the same actor, target and action.
        hrefs = page.eval_on_selector_all(".search-link", "as => as.map(a => a.search)")
        assert hrefs == ["?tab=all&q=action%3Aorder.refund", "?tab=all&q=actor%3Auser_42",
                         "?tab=all&q=target%3Aorder%2Ford_9"]  # fmt: skip

        # Verify: the leaf, the path and the signature, checked here.
        said = verify(page)
        assert said.startswith("Verified"), said
        with server.client(seeded.tenant.key) as client:
            checkpoint = client.get(events_url(seeded.app_id, "checkpoint")).text
            key = client.get("/v1/checkpoint-key").text.strip()
        assert key.split("+")[0] in said
        size = int(said.split("log of ")[1].split(" ")[0])
        assert size >= refund["seq"] + 1
        assert checkpoint.split("\n")[0] in said  # the origin line

        # The same entry with a tampered proof (one byte of a path hash): refused, and why.
        def proofs(url: str) -> bool:
            return "proof=true" in url

        def tamper(route: Route) -> None:
            response = route.fetch()
            body = response.json()
            first = bytearray(bytes.fromhex(body["proof"]["path"][0]))
            first[0] ^= 1
            body["proof"]["path"][0] = first.hex()
            route.fulfill(response=response, json=body)

        page.route(proofs, tamper)
        assert verify(page) == (
            "Not verified (path): the audit path does not lead to the checkpoint's root"
        )
        page.unroute(proofs)

        # An entry whose stored content was changed on its way: the leaf hash says so.
        def rewrite(route: Route) -> None:
            response = route.fetch()
            body = response.json()
            body["entry"]["metadata"]["amount"] = 4.99
            route.fulfill(response=response, json=body)

        page.route(proofs, rewrite)
        assert verify(page) == (
            "Not verified (leaf): the entry's content does not hash to its leaf_hash: it was "
            "changed"
        )
        page.unroute(proofs)

        # `changes` as old → new, an added field's old side absent.
        page.goto(f"{server.url}/console?entry={seeded.entries['price']['id']}")
        page.wait_for_selector("table.changes")
        changes = page.eval_on_selector_all(
            "table.changes tbody tr", "trs => trs.map(tr => [...tr.cells].map(c => c.textContent))"
        )
        assert changes == [["/price", "10", "→", "12"], ["/tag", "absent", "→", '"sale"']]
        # The back link returns to the log (this entry was opened by address: the log's start).
        page.click("text=← Back to the log")
        wait_loaded(page)
        assert page.get_attribute('[data-tab="all"]', "aria-current") == "page"


def test_a_key_signs_in_and_its_limits_are_said(
    browser: Browser, server: Server, seeded: Seeded
) -> None:
    reader = server.new_key(seeded.app_id, "events:read")
    writer = server.new_key(seeded.app_id, "events:write")
    with console_page(browser) as page:
        page.goto(f"{server.url}/console")
        page.fill("#signin-key", reader.key)
        page.click("button:text-is('Sign in')")
        assert "app id" in page.inner_text("#signin-error")  # a key needs its app named
        page.fill("#signin-app", "app_nosuchapp")
        page.click("button:text-is('Sign in')")
        page.wait_for_function("() => document.querySelector('#signin-error').textContent")
        assert page.inner_text("#signin-error").startswith("Sign-in failed:")
        assert page.evaluate("sessionStorage.length") == 0
        page.fill("#signin-app", seeded.app_id)
        page.click("button:text-is('Sign in')")
        wait_loaded(page)
        who = page.inner_text('[data-testid="who"]')
        assert who.startswith(f"Signed in: key {reader.key[:10]}")
        assert page.inner_text('[data-testid="role"]') == "API key"
        assert "order.refund" in actions(search(page, "action:order.refund"))
        assert page.url.split("?")[1] == "tab=all&q=action%3Aorder.refund"
        assert reader.key not in page.url
        # A key used through the console is a person reading: each read is recorded, the key
        # its actor (the console says so with `Trailkeep-Reader: person`).
        recorded = reads_by(server, seeded, reader.key_id)
        assert {"filters": {"action": ["order.refund"]}, "route": "list",
                "count": 2} in [r["metadata"] for r in recorded]  # fmt: skip
        assert {r["actor"]["type"] for r in recorded} == {"api_key"}
        page.click("button:text-is('Sign out')")
        # A key that may only write: signed in, and told it cannot read.
        page.fill("#signin-key", writer.key)
        page.fill("#signin-app", seeded.app_id)
        page.click("button:text-is('Sign in')")
        wait_loaded(page)
        assert page.inner_text('[data-testid="log-error"]').startswith(
            "This key cannot read the log (it needs events:read)"
        )
        page.click("button:text-is('Sign out')")
        # A key revoked while signed in: the server's 401 signs the page out, saying why.
        doomed = server.new_key(seeded.app_id, "events:read")
        page.fill("#signin-key", doomed.key)
        page.fill("#signin-app", seeded.app_id)
        page.click("button:text-is('Sign in')")
        wait_loaded(page)
        with server.client(seeded.tenant.key) as client:
            gone = client.delete(events_url(seeded.app_id, f"keys/{doomed.key_id}"))
            assert gone.status_code in (200, 204), gone.text
        for _ in range(40):  # servers stop accepting a revoked key within seconds
            if page.locator("#signin-key").count():
                break
            page.press("#search", "Enter")
            page.wait_for_timeout(250)
        assert page.inner_text("#signin-error").startswith("Signed out by the server")
        assert page.evaluate("sessionStorage.length") == 0
        # A link's session that has expired is not used: the page asks for a new sign-in.
        short = link(server, seeded, "ada", "owner", ttl="5s")
        page.goto(short)
        wait_loaded(page)
        claims = jwt.decode(short.partition("#session=")[2], options={"verify_signature": False})
        time.sleep(max(0.0, claims["exp"] - time.time()) + 0.3)
        page.reload()
        page.wait_for_selector("#signin-key")
        assert page.inner_text("#signin-error").startswith("The session has expired")


def test_an_auditor_reads_and_verifies_and_a_plain_user_cannot_read(
    browser: Browser, server: Server, seeded: Seeded
) -> None:
    with console_page(browser) as page:
        page.goto(link(server, seeded, "ines", "auditor", "Inès"))
        wait_loaded(page)
        assert page.inner_text('[data-testid="role"]') == "auditor"
        assert len(rows(page)) > 0
        search(page, "-action:audit.read")
        open_entry(page, "user.role.change")
        assert verify(page).startswith("Verified")
        # Nothing on any view manages: the buttons are reading, exporting, paging, verifying,
        # signing out.
        buttons = set(page.eval_on_selector_all("button", "bs => bs.map(b => b.textContent)"))
        assert buttons == {"Sign out", "Verify"}
        page.go_back()
        wait_loaded(page)
        buttons = set(page.eval_on_selector_all("button", "bs => bs.map(b => b.textContent)"))
        # (Exporting is reading: an auditor may take the search away as NDJSON, CSV or OCSF.)
        assert buttons == {
            "Sign out", "Search", "Live", "NDJSON", "CSV", "OCSF", "Newest", "Previous", "Next",
        }  # fmt: skip
        assert page.locator("form").count() == 1  # the search
        assert [r["actor"]["role"] for r in reads_by(server, seeded, "ines")][-1] == "auditor"
        page.click("button:text-is('Sign out')")
        # A plain user's session (no reading role), pasted: signed in, told it cannot read.
        plain = server.session(seeded.tenant, "user_42")
        page.fill("#signin-key", plain)
        page.click("button:text-is('Sign in')")
        wait_loaded(page)
        assert page.inner_text('[data-testid="log-error"]').startswith(
            "A user session cannot read the log (owners, admins and auditors can)"
        )
        assert rows(page) == []
    with server.client(seeded.tenant.key) as client:
        params = {"actor": "user_42", "action": "audit.read"}
        denied = expect_status(client.get(events_url(seeded.app_id), params=params))
    assert denied.json()["data"] == []  # a refused read appends nothing


def test_the_console_is_usable_by_keyboard_alone(
    browser: Browser, server: Server, seeded: Seeded
) -> None:
    with console_page(browser) as page:
        page.goto(link(server, seeded, "ada", "owner", "Ada"))
        wait_loaded(page)

        def focused() -> str:
            return str(page.evaluate(
                "() => `${document.activeElement.tagName} ${document.activeElement.textContent}`"
            ))  # fmt: skip

        def tab_to(wanted: str, limit: int = 60) -> None:
            for _ in range(limit):
                page.keyboard.press("Tab")
                if focused() == wanted:
                    return
            raise AssertionError(f"Tab never reached {wanted!r}")

        page.keyboard.press("Tab")
        assert focused() == "A Skip to content"
        tab_to("A User actions")
        page.keyboard.press("Enter")
        page.wait_for_url("**tab=user**")
        wait_loaded(page)
        page.focus("#search")
        page.keyboard.press("Control+a")  # the landing's search, replaced
        page.keyboard.type("actor:user_7")
        page.keyboard.press("Enter")
        page.wait_for_url("**q=actor%3Auser_7**")
        wait_loaded(page)
        tab_to("A order.create")
        page.keyboard.press("Enter")
        page.wait_for_selector("article.entry")
        # The entry's heading takes the focus, so a screen reader starts there.
        page.wait_for_function("() => document.activeElement.tagName === 'H2'")
        assert focused() == "H2 order.create"
        tab_to("BUTTON Verify")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => document.querySelector('[data-testid=verdict]').matches('.ok, .bad')"
        )
        assert page.inner_text('[data-testid="verdict"]').startswith("Verified")
        # Metadata levels open and close from the keyboard too (details/summary).
        page.goto(f"{server.url}/console?entry={seeded.entries['refund']['id']}")
        page.wait_for_selector("article.entry details.tree")
        tab_to("SUMMARY {5}")
        page.keyboard.press("Enter")
        assert page.get_attribute("article.entry details.tree", "open") is None
