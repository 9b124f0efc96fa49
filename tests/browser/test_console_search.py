"""The console's search box completes terms (known actions from `GET /actions`, qualifier names)
as an ARIA 1.2 combobox, by keyboard; and the current search is exported (NDJSON, CSV, OCSF) as a
downloaded file holding exactly the search's entries, the export recorded as the person's read."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.console_pages import Seeded, console_page, link, rows, wait_loaded
from tests.browser.test_console_a11y import serious
from tests.integration.http_api import events_url, expect_created, expect_status, list_all
from tests.servers import Server
from trailkeep.log.render import CSV_COLUMNS

pytestmark = pytest.mark.timeout(180)

APP_NAME = "console search"  # the app `seeded` (tests/browser/conftest.py) makes
#: A spreadsheet formula in an end user's name: a CSV export must not let it run.
FORMULA = '=HYPERLINK("http://evil.example","x")'


@pytest.fixture(scope="module")
def app(server: Server, seeded: Seeded) -> Seeded:
    """The seeded app, plus a user's refund whose actor name is a formula."""
    mallory = server.session(seeded.tenant, "user_99", name=FORMULA)
    body = {"action": "order.refund", "target_type": "order", "target_id": "ord_11"}
    with server.client(mallory) as client:
        seeded.entries["formula"] = expect_created(
            client.post(events_url(seeded.app_id), json=body)
        )
    return seeded


def signed_in(page: Page, server: Server, app: Seeded, address: str) -> None:
    """Sign Ada (owner) in by link, then open this console address and wait for the page."""
    page.goto(link(server, app, "ada", "owner", "Ada"))
    wait_loaded(page)
    page.goto(f"{server.url}/console{address}")
    wait_loaded(page)


def options(page: Page) -> list[str]:
    """The suggestions shown, once the list is open."""
    page.wait_for_selector("#search[aria-expanded='true']")
    found: list[str] = page.eval_on_selector_all(
        "[role=listbox] [role=option]", "os => os.map(o => o.textContent)"
    )
    return found


def active(page: Page) -> str | None:
    """The text of the option the box names as active (aria-activedescendant)."""
    text: str | None = page.evaluate(
        """() => {
             const id = document.querySelector('#search').getAttribute('aria-activedescendant');
             const option = id && document.getElementById(id);
             return option && option.getAttribute('aria-selected') === 'true'
               ? option.textContent : null;
           }"""
    )
    return text


def test_known_actions_complete_the_term_at_the_caret_and_the_search_runs(
    browser: Browser, server: Server, app: Seeded
) -> None:
    with console_page(browser) as page:
        signed_in(page, server, app, "?tab=all")
        box = page.locator("#search")
        assert box.get_attribute("role") == "combobox"
        assert box.get_attribute("aria-autocomplete") == "list"
        assert box.get_attribute("aria-expanded") == "false"
        # The caret in the middle term: typing there offers the app's actions for it only.
        box.fill("kind:user action:or actor:user_42")
        page.evaluate("document.querySelector('#search').setSelectionRange(19, 19)")
        page.keyboard.type("d")
        assert options(page) == ["action:order.create", "action:order.refund"]
        listbox = box.get_attribute("aria-controls")
        assert page.get_attribute(f"#{listbox}", "role") == "listbox"
        assert active(page) is None
        page.keyboard.press("ArrowDown")
        assert active(page) == "action:order.create"
        page.keyboard.press("ArrowDown")
        assert active(page) == "action:order.refund"
        page.keyboard.press("ArrowDown")  # round to the first, and back up to the last
        page.keyboard.press("ArrowUp")
        assert active(page) == "action:order.refund"
        page.keyboard.press("Enter")
        # Only that term changed; the search ran and the address holds it.
        expected = "kind:user action:order.refund actor:user_42"
        page.wait_for_function(
            "q => new URLSearchParams(location.search).get('q') === q", arg=expected
        )
        wait_loaded(page)
        assert box.input_value() == expected
        assert box.get_attribute("aria-expanded") == "false"
        found = rows(page)
        assert [(r["action"], r["actor"]) for r in found] == [("order.refund", "Grace (user_42)")]


def test_qualifier_names_then_values_and_escape_closes(
    browser: Browser, server: Server, app: Seeded
) -> None:
    with console_page(browser) as page:
        signed_in(page, server, app, "?tab=all")
        box = page.locator("#search")
        box.focus()
        page.keyboard.type("ac")
        assert options(page) == ["action:", "actor:"]
        page.keyboard.press("ArrowDown")
        page.keyboard.press("Tab")
        # A qualifier's name: the box keeps focus and now offers the values.
        assert box.input_value() == "action:"
        assert page.evaluate("document.activeElement.id") == "search"
        offered = options(page)
        assert {"action:cart.add", "action:order.create", "action:user.role.change"} <= set(offered)
        assert offered == sorted(offered)
        page.keyboard.type("ca")
        assert options(page) == ["action:cart.add"]
        page.keyboard.press("Escape")
        assert box.get_attribute("aria-expanded") == "false"
        assert box.input_value() == "action:ca"  # Escape closed the list, left the text
        # A bare word offers names and actions; a minus only what can be left out.
        box.fill("action:ca pro")
        assert options(page) == ["action:product.update"]
        box.fill("k")
        assert options(page) == ["kind:"]
        page.keyboard.press("ArrowDown")
        page.keyboard.press("Enter")
        assert options(page) == ["kind:admin", "kind:user"]
        box.fill("-ac")
        assert options(page) == ["-action:"]
        # An empty box: the names on ArrowDown; a click accepts an option as Enter does.
        box.fill("")
        page.keyboard.press("ArrowDown")
        assert options(page)[:2] == ["action:", "actor:"]
        box.fill("-action:audit")
        page.click("[role=option]:text-is('-action:audit.read')")
        page.wait_for_function(
            "q => new URLSearchParams(location.search).get('q') === q",
            arg="-action:audit.read",
        )
        wait_loaded(page)
        assert "audit.read" not in [r["action"] for r in rows(page)]
        # The combobox and its open list pass axe.
        box.fill("action:")
        options(page)
        assert serious(page) == []


def download(page: Page, app: Seeded, format: str, ext: str) -> bytes:
    """Press an export button; the saved file's bytes, named `<app>-<yyyymmdd-hhmm>.<ext>`."""
    with page.expect_download() as info:
        page.click(f"button[data-format={format}]")
    saved = info.value
    assert saved.failure() is None
    named = rf"{app.app_id}-\d{{8}}-\d{{4}}\.{re.escape(ext)}"
    assert re.fullmatch(named, saved.suggested_filename), saved.suggested_filename
    page.wait_for_function(
        "() => document.querySelector('[data-testid=export-status]').textContent"
        ".startsWith('Saved')"
    )
    return saved.path().read_bytes()


def test_each_format_exports_exactly_the_search_and_is_recorded(
    browser: Browser, server: Server, app: Seeded
) -> None:
    with server.client(app.tenant.key) as client:
        wanted = list_all(client, app.app_id, {"action": "order.refund", "kind": "user"})
    wanted.reverse()  # an export is oldest first
    assert [e["id"] for e in wanted] == [app.entries["refund"]["id"], app.entries["formula"]["id"]]
    with console_page(browser) as page:
        # The user tab and a search: the export holds what both select, not only this page.
        signed_in(page, server, app, "?tab=user&q=action%3Aorder.refund&limit=1")
        assert len(rows(page)) == 1

        body = download(page, app, "ndjson", "ndjson")
        lines = [json.loads(line) for line in body.decode().splitlines()]
        assert lines == wanted

        body = download(page, app, "csv", "csv")
        table = list(csv.reader(io.StringIO(body.decode(), newline="")))
        assert table[0] == list(CSV_COLUMNS)
        assert [r[CSV_COLUMNS.index("id")] for r in table[1:]] == [e["id"] for e in wanted]
        names = [r[CSV_COLUMNS.index("actor_name")] for r in table[1:]]
        assert names == ["Grace", "'" + FORMULA]  # defused: a spreadsheet shows it as text

        body = download(page, app, "ocsf", "ocsf.ndjson")
        events = [json.loads(line) for line in body.decode().splitlines()]
        assert len(events) == len(wanted)
        assert all(isinstance(e["class_uid"], int) for e in events)
        assert [e["metadata"]["uid"] for e in events] == [e["id"] for e in wanted]

        # A search with an error exports nothing: the buttons are off until it is fixed.
        page.fill("#search", "colour:red")
        page.press("#search", "Enter")
        page.wait_for_selector("[data-testid=log-error]:not([hidden])")
        assert page.is_disabled("button[data-format=csv]")

    with server.client(app.tenant.key) as client:
        recorded = list_all(client, app.app_id, {"action": "audit.export", "actor": "ada"})
    exports: list[dict[str, Any]] = [e["metadata"] for e in reversed(recorded)]
    assert exports == [
        {"format": f, "filters": {"action": ["order.refund"], "kind": "user"}}
        for f in ("ndjson", "csv", "ocsf")
    ]


def test_an_app_with_more_actions_than_a_page_is_asked_by_prefix(
    browser: Browser, server: Server
) -> None:
    many = Seeded(server.new_app("many actions"))
    with server.client(many.tenant.key) as client:
        batch = {"events": [{"action": f"a{i:04d}.x"} for i in range(1000)]}
        expect_status(client.post(events_url(many.app_id, "events/batch"), json=batch), 201)
        expect_created(client.post(events_url(many.app_id), json={"action": "zeta.late"}))
    with console_page(browser) as page:
        signed_in(page, server, many, "?tab=all")
        page.focus("#search")
        # The first page (1,000 actions) is at hand at once; the rest is asked for by prefix.
        page.keyboard.type("action:a099")
        assert len(options(page)) == 10
        page.fill("#search", "")
        page.keyboard.type("action:ze")
        page.wait_for_selector("[role=option]:text-is('action:zeta.late')")
    with server.client(many.tenant.key) as client:
        recorded = list_all(client, many.app_id, {"action": "audit.read", "actor": "ada"})
    prefixes = [e["metadata"]["prefix"] for e in recorded if e["metadata"]["route"] == "actions"]
    # The first page once per page load (the sign-in link, then the address), and one read for
    # the prefix typed: not one per keystroke.
    assert sorted(prefixes) == ["", "", "ze"]


SUGGEST = """async (cases) => {
  const c = await import("/console/completion.mjs");
  const known = ["cart.add", "order.create", "order.refund", "Order.Z"];
  const actionsFor = (p) => known.filter((a) => a.toLowerCase().startsWith(p.toLowerCase()));
  return cases.map(([text, caret]) => {
    const found = c.suggestions(text, caret ?? text.length, actionsFor);
    return [found.start, found.end, found.options.map((o) => [o.insert, o.whole])];
  });
}"""


def test_what_is_offered_for_the_term_at_the_caret(browser: Browser, server: Server) -> None:
    cases: dict[tuple[str, int | None], list[Any]] = {
        # The term at the caret (its start and end) and what completes it, in any case.
        ("actor:x action:ord kind:user", 18): [8, 18, [
            ["action:order.create", True], ["action:order.refund", True], ["action:Order.Z", True],
        ]],
        # The caret inside: what is before it is matched; the whole term is what is replaced.
        ("actor:x action:ord kind:user", 15): [8, 18, [
            ["action:cart.add", True], ["action:order.create", True],
            ["action:order.refund", True], ["action:Order.Z", True],
        ]],
        ('action:"Ord', None): [0, 11, [
            ["action:order.create", True], ["action:order.refund", True], ["action:Order.Z", True],
        ]],
        ("-action:c", None): [0, 9, [["-action:cart.add", True]]],
        ("ACTION:cart", None): [0, 11, [["action:cart.add", True]]],
        ("action:cart.add", None): [0, 15, []],  # typed in full: nothing to add
        ("t", None): [0, 1, [["target:", False], ["target_type:", False]]],
        ("c", None): [0, 1, [["changed:", False], ["action:cart.add", True]]],
        ("-k", None): [0, 2, []],  # only action can be left out
        ("-kind:a", None): [0, 7, []],
        ("kind:u", None): [0, 6, [["kind:user", True]]],
        ("actor:ord", None): [0, 9, []],  # no values known for actors
        ("nope:x", None): [0, 6, []],
        ("kind:user ", None): [10, 10, [[f"{q}:", False] for q in (
            "action", "actor", "target", "target_type", "kind", "changed", "since", "until")]],
    }  # fmt: skip
    with console_page(browser) as page:
        page.goto(f"{server.url}/console")
        page.wait_for_selector("#signin-key")
        found = page.evaluate(SUGGEST, [list(case) for case in cases])
        assert dict(zip(cases, found, strict=True)) == cases
        names = page.evaluate(
            """async () => {
                 const e = await import("/console/export.mjs");
                 const at = new Date(Date.UTC(2026, 11, 8, 3, 4, 59));
                 return [e.fileName("app_abc", "csv", at), e.fileName("a/b c", "ocsf.ndjson", at)];
               }"""
        )
        assert names == ["app_abc-20261208-0304.csv", "a_b_c-20261208-0304.ocsf.ndjson"]
