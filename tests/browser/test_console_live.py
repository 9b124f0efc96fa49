"""The console's histogram and live view in Chromium against a real `trailkeep serve`: counts of
the current search by day or hour, and new entries prepended from the SSE stream."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser

from tests.browser.console_pages import (
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
from tests.integration.http_api import events_url
from tests.servers import Server

pytestmark = pytest.mark.timeout(180)


APP_NAME = "console live"  # the app `seeded` (tests/browser/conftest.py) makes


def test_the_histogram_counts_the_search_and_the_live_view_prepends_new_entries(
    browser: Browser, server: Server, seeded: Seeded
) -> None:
    with console_page(browser) as page:
        page.goto(f"{server.url}/console")
        page.wait_for_selector("#signin-key")
        # The pure parts first: buckets fill the gaps between keys; SSE text splits into events.
        parts = page.evaluate("""async () => {
          const x = await import("/console/extras.mjs");
          const days = x.buckets([{key: "2026-11-01", count: 2}, {key: "2026-11-04", count: 1}],
                                 "day");
          const hours = x.buckets([{key: "2026-11-01T23:00:00Z", count: 5},
                                   {key: "2026-11-02T01:00:00Z", count: 1}], "hour");
          const events = [...x.sseEvents(': hi\\n\\nid: 7\\ndata: {"a":\\ndata: 1}\\n\\n' +
                                         'event: dropped\\ndata: {"last_seq": 9}')];
          return {days: days.map(b => b.count), hours: hours.map(b => new Date(b.at).toISOString()),
                  events};
        }""")  # fmt: skip
        # At least two weeks of days, or a day of hours, ending at the last key.
        assert parts["days"] == [0] * 10 + [2, 0, 0, 1]
        assert len(parts["hours"]) == 24
        assert parts["hours"][-3:] == [
            "2026-11-01T23:00:00.000Z", "2026-11-02T00:00:00.000Z", "2026-11-02T01:00:00.000Z"
        ]  # fmt: skip
        assert parts["events"] == [
            {"event": "message", "id": "7", "data": '{"a":\n1}'},
            {"event": "dropped", "id": None, "data": '{"last_seq": 9}'},
        ]

        page.goto(link(server, seeded, "ada", "owner", "Ada"))
        wait_loaded(page)
        page.goto(f"{server.url}/console?tab=user")
        wait_loaded(page)
        caption = page.locator('[data-testid="histogram-caption"]')
        caption.wait_for()
        # All of this app's entries were written in the last minutes: counted by the hour.
        assert caption.inner_text().startswith("4 entries, by hour, ")
        chart = page.locator("svg.histogram-chart")
        assert chart.get_attribute("aria-label") == caption.inner_text()
        assert page.locator("svg.histogram-chart rect.bar").count() == int(
            chart.get_attribute("data-buckets") or 0
        )
        search(page, "actor:user_42")
        page.wait_for_function(
            "() => document.querySelector('[data-testid=histogram-caption]')"
            "?.textContent.startsWith('2 entries')"
        )

        # Live: a new entry that matches appears at the top, one that does not stays away.
        page.click("button:text-is('Live')")
        assert page.get_attribute("button:text-is('Live')", "aria-pressed") == "true"
        page.wait_for_function(
            "() => document.querySelector('[data-testid=live-status]').textContent"
            ".startsWith('Live: new entries')"
        )
        grace = server.session(seeded.tenant, "user_42", name="Grace")
        other = server.session(seeded.tenant, "user_7")
        with server.client(other) as client:
            client.post(events_url(seeded.app_id), json={"action": "cart.remove"})
        with server.client(grace) as client:
            written = client.post(events_url(seeded.app_id), json={"action": "cart.checkout"})
            assert written.status_code == 201, written.text
        page.wait_for_selector("tr.fresh")
        top = rows(page)[0]
        assert (top["action"], top["actor"]) == ("cart.checkout", "Grace (user_42)")
        assert "cart.remove" not in actions(rows(page))
        page.click("button:text-is('Live')")
        assert page.get_attribute("button:text-is('Live')", "aria-pressed") == "false"
        with server.client(grace) as client:
            client.post(events_url(seeded.app_id), json={"action": "cart.later"})
        page.wait_for_timeout(700)
        assert "cart.later" not in actions(rows(page))
    streams = [r for r in reads_by(server, seeded, "ada") if r["metadata"].get("route") == "stream"]
    assert streams, "the live view's stream is a recorded read"
    assert streams[0]["metadata"]["filters"] == {"actor": "user_42", "kind": "user"}
    hours = [r for r in reads_by(server, seeded, "ada") if r["metadata"].get("group_by") == "hour"]
    assert hours, "the histogram's hourly counts are recorded reads"


def test_an_erased_entry_shows_its_stub_and_still_verifies(
    browser: Browser, server: Server, seeded: Seeded
) -> None:
    app = seeded.app_id
    with server.client(server.session(seeded.tenant, "user_7")) as client:
        written = client.post(events_url(app), json={"action": "doc.delete", "target_id": "d_1",
                                                     "target_type": "doc"})  # fmt: skip
        assert written.status_code == 201, written.text
    doomed = written.json()
    with server.client(server.session(seeded.tenant, "ada", role="owner")) as client:
        request = {"subject": {"seqs": [doomed["seq"]]}, "reason": "a test"}
        erased = client.post(events_url(app, "erasures"), json=request)
        assert erased.status_code == 202, erased.text
        assert erased.json()["status"] == "done"
    with console_page(browser) as page:
        page.goto(link(server, seeded, "ada", "owner", "Ada"))
        wait_loaded(page)
        page.goto(f"{server.url}/console?tab=all")
        wait_loaded(page)
        stub_row = page.locator(f'tr[data-seq="{doomed["seq"]}"]')
        assert stub_row.inner_text().endswith(f"erased entry, seq {doomed['seq']}")
        stub_row.locator("a").click()
        page.wait_for_selector("article.entry")
        assert page.inner_text("article.entry h2") == f"Erased entry, seq {doomed['seq']}"
        text = page.inner_text("article.entry")
        assert "doc.delete" not in text
        assert "d_1" not in text
        said = verify(page)
        assert said.startswith("Verified"), said
        assert "an erased entry: its leaf hash is taken as recorded" in said
