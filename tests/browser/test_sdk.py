"""The browser SDK in a real headless Chromium, against a real `trailkeep serve` (issue 6).

Pages come from another loopback origin (the page server's port), so every call is a real
cross-origin request with a CORS preflight.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
import rfc8785
from playwright.sync_api import Browser, Route

from tests.browser.sdk_pages import (
    PageServer,
    recorded_fetches,
    sdk_call,
    sdk_page,
    sdk_page_html,
)
from tests.idp import ISSUER, claims, new_key
from tests.integration.http_api import check_entry, events_url, list_all, log_size
from tests.servers import Server, Tenant

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def app(server: Server, pages: PageServer) -> Tenant:
    """An app that allows the page server's origin; each test acts as a user of its own."""
    return server.new_app("browser", origins=(pages.origin,))


def stored(server: Server, tenant: Tenant, actor: str) -> list[dict[str, Any]]:
    """The app's entries by ``actor``, newest first, read with its key."""
    with server.client(tenant.key) as client:
        return list_all(client, tenant.app_id, {"actor": actor})


def test_entry_actor_ip_and_user_agent_come_from_the_session_and_the_browser(
    browser: Browser, pages: PageServer, server: Server, app: Tenant
) -> None:
    token = server.session(app, "user_42", name="Ada")
    with sdk_page(browser, pages, server, app, token) as page:
        outcome = sdk_call(page, "log", {
            "action": "order.refund", "targetType": "order", "targetId": "ord_9",
            "metadata": {"amount": 49.99, "actor": "mallory", "user_agent": "fake"},
            "project": "checkout", "server": "web-3", "requestId": "req-1",
        })  # fmt: skip
        agent = page.evaluate("navigator.userAgent")
        sent = recorded_fetches(page)
    assert outcome["ok"], outcome
    entry = outcome["value"]
    check_entry(entry)
    assert entry["actor"] == {"type": "user", "id": "user_42", "name": "Ada"}
    assert entry["kind"] == "user"
    assert entry["app_id"] == app.app_id
    assert entry["target"] == {"type": "order", "id": "ord_9"}
    assert entry["metadata"] == {"amount": 49.99, "actor": "mallory", "user_agent": "fake"}
    assert entry["context"] == {
        "ip": "127.0.0.1", "user_agent": agent, "project": "checkout", "server": "web-3",
        "request_id": "req-1",
    }  # fmt: skip
    assert "HeadlessChrome" in agent
    assert stored(server, app, "user_42") == [entry]
    assert len(sent) == 1
    assert sent[0]["keepalive"] is True
    assert sent[0]["status"] == 201


def test_an_actor_field_is_refused_by_the_sdk_and_by_the_server(
    browser: Browser, pages: PageServer, server: Server, app: Tenant
) -> None:
    token = server.session(app, "user_7")
    with sdk_page(browser, pages, server, app, token) as page:
        refused = sdk_call(page, "log", {"action": "user.login", "actor": {"id": "admin"}})
        sent = recorded_fetches(page)
        # The same body sent by hand, bypassing the SDK: the server refuses it too.
        direct = page.evaluate(
            """async ([url, token]) => {
                 const r = await fetch(url, {method: "POST", body: JSON.stringify(
                   {action: "user.login", actor: {type: "user", id: "admin"}}),
                   headers: {"Authorization": "Bearer " + token,
                             "Content-Type": "application/json"}});
                 return {status: r.status, body: await r.json()};
               }""",
            [server.url + events_url(app.app_id), token],
        )
    assert refused["isTrailkeepError"] is True
    assert (refused["code"], refused["status"]) == ("actor_not_allowed", 400)
    assert refused["detail"].startswith("actor:")
    assert sent == []
    assert direct["status"] == 400
    assert direct["body"]["code"] == "actor_not_allowed"
    assert stored(server, app, "user_7") == []


def test_a_dropped_response_is_retried_without_a_duplicate(
    browser: Browser, pages: PageServer, server: Server, app: Tenant
) -> None:
    token = server.session(app, "user_3")
    first: list[dict[str, Any]] = []

    def drop_first_response(route: Route) -> None:
        if route.request.method == "POST" and not first:
            # The request reaches the server and is appended; the browser never sees the answer.
            answered = route.fetch()
            first.append({"status": answered.status, "entry": answered.json()})
            route.abort("connectionreset")
        else:
            route.continue_()

    with sdk_page(browser, pages, server, app, token, backoffMs=20) as page:
        page.route(server.url + events_url(app.app_id), drop_first_response)
        outcome = sdk_call(
            page, "log", {"action": "doc.share", "targetType": "doc", "targetId": "d1"}
        )
        sent = recorded_fetches(page)
    assert outcome["ok"], outcome
    assert first[0]["status"] == 201
    assert outcome["value"] == first[0]["entry"]
    assert len(sent) == 2
    assert "error" in sent[0]
    assert (sent[1]["status"], sent[1]["replayed"]) == (201, "true")
    assert sent[0]["key"] == sent[1]["key"]
    assert stored(server, app, "user_3") == [first[0]["entry"]]


def test_server_errors_are_retried_and_client_errors_are_not(
    browser: Browser, pages: PageServer, server: Server, app: Tenant
) -> None:
    token = server.session(app, "user_5")
    failures = [502, 503]

    def fail_twice(route: Route) -> None:
        if route.request.method == "POST" and failures:
            route.fulfill(
                status=failures.pop(0),
                headers={"Access-Control-Allow-Origin": pages.origin},
                content_type="text/html",
                body="<h1>bad gateway</h1>",
            )
        else:
            route.continue_()

    with sdk_page(browser, pages, server, app, token, backoffMs=20) as page:
        page.route(server.url + events_url(app.app_id), fail_twice)
        outcome = sdk_call(page, "log", {"action": "flaky.proxy"})
        # A 400 from the server is final: one attempt, the server's problem as the error.
        too_big = {"action": "big.metadata", "metadata": {"blob": "x" * 10_300}}
        page.evaluate(
            "(o) => trailkeep.init(o)",
            {"endpoint": server.url, "app": app.app_id, "session": token,
             "metadataMaxBytes": 20_000},
        )  # fmt: skip
        refused = sdk_call(page, "log", too_big)
        sent = recorded_fetches(page)
    assert outcome["ok"], outcome
    assert [a.get("status") for a in sent[:3]] == [502, 503, 201]
    assert len({a["key"] for a in sent[:3]}) == 1
    assert (refused["code"], refused["status"]) == ("payload_too_large", 413)
    canonical_size = len(rfc8785.dumps(too_big["metadata"]))
    assert canonical_size > 10_240
    assert refused["detail"] == (
        f"metadata: canonical encoding is {canonical_size} bytes; the limit is 10240"
    )
    assert len(sent) == 4
    assert [e["action"] for e in stored(server, app, "user_5")] == ["flaky.proxy"]


def test_rate_limited_writes_wait_for_retry_after(
    browser: Browser, pages: PageServer, fresh_server: Server
) -> None:
    fresh_server.env["TRAILKEEP_RATE_LIMIT"] = "1/2 seconds"
    tenant = fresh_server.new_app("rate limited", origins=(pages.origin,))
    srv = fresh_server.start()
    token = srv.session(tenant, "user_9")
    with sdk_page(browser, pages, srv, tenant, token) as page:
        outcome = page.evaluate(
            """() => Promise.all([trailkeep.audit.log({action: "limit.one"}),
                                  trailkeep.audit.log({action: "limit.two"})])"""
        )
        sent = recorded_fetches(page)
    assert sorted(entry["action"] for entry in outcome) == ["limit.one", "limit.two"]
    assert sorted(a["status"] for a in sent) == [201, 201, 429]
    limited = next(a for a in sent if a["status"] == 429)
    retry = next(a for a in sent if a["key"] == limited["key"] and a is not limited)
    wait = int(limited["retryAfter"])
    assert 1 <= wait <= 2
    assert retry["start"] - limited["end"] >= wait * 1000
    with srv.client(tenant.key) as client:
        assert log_size(client, tenant.app_id) == 2


def test_a_disallowed_origin_is_refused_and_nothing_is_appended(
    browser: Browser, pages: PageServer, server: Server, app: Tenant
) -> None:
    token = server.session(app, "user_1")
    # The page server under its other name: an origin the app does not list.
    with sdk_page(browser, pages, server, app, token, pages.other_origin, backoffMs=5) as page:
        outcome = sdk_call(page, "log", {"action": "should.not.land"})
        sent = recorded_fetches(page)
    assert outcome["isTrailkeepError"] is True
    assert (outcome["code"], outcome["status"]) == ("network_error", 0)
    assert pages.other_origin in outcome["detail"]
    assert "6 attempts" in outcome["detail"]
    assert len(sent) == 6  # the first try and five retries, no more
    assert all("error" in a for a in sent)
    assert len({a["key"] for a in sent}) == 1
    assert stored(server, app, "user_1") == []


def tampered(token: str) -> str:
    """The token with its payload changed to another, more powerful user (signature kept)."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(sub="root", role="owner")
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_a_tampered_token_is_refused(
    browser: Browser, pages: PageServer, server: Server, app: Tenant
) -> None:
    token = tampered(server.session(app, "user_2"))
    with sdk_page(browser, pages, server, app, token) as page:
        outcome = sdk_call(page, "log", {"action": "admin.escalate"})
        sent = recorded_fetches(page)
    assert outcome["isTrailkeepError"] is True
    assert (outcome["code"], outcome["status"]) == ("unauthenticated", 401)
    assert "signature" in outcome["detail"].lower()
    assert len(sent) == 1  # a 4xx is never retried
    assert stored(server, app, "root") == []
    assert stored(server, app, "user_2") == []


def test_the_session_function_is_called_for_every_request(
    browser: Browser, pages: PageServer, server: Server, app: Tenant
) -> None:
    pages.session = server.session(app, "user_fn", name="Fun")
    with sdk_page(browser, pages, server, app, "placeholder") as page:
        entries = page.evaluate(
            """async ([endpoint, app]) => {
                 window.calls = 0;
                 trailkeep.init({endpoint, app, session: async () => {
                   window.calls += 1;
                   return (await fetch("/session")).text();
                 }});
                 const one = await trailkeep.audit.log({action: "fn.one"});
                 const many = await trailkeep.audit.logMany([{action: "fn.two"},
                                                             {action: "fn.three"}]);
                 return [one, ...many, window.calls];
               }""",
            [server.url, app.app_id],
        )
    *logged, calls = entries
    assert calls == 2
    assert [e["actor"] for e in logged] == [{"type": "user", "id": "user_fn", "name": "Fun"}] * 3
    assert [e["seq"] for e in logged[1:]] == [logged[0]["seq"] + 1, logged[0]["seq"] + 2]
    assert stored(server, app, "user_fn")[::-1] == logged


def test_the_es_module_exports_the_same_sdk(
    browser: Browser, pages: PageServer, server: Server, app: Tenant
) -> None:
    token = server.session(app, "user_mod")
    html = sdk_page_html(server, module=True).replace(
        "window.trailkeep = trailkeep;",
        f"""import {{ TrailkeepError, init, audit }} from "{server.url}/sdk/trailkeep.mjs";
        window.same = trailkeep.TrailkeepError === TrailkeepError && trailkeep.audit === audit;
        init({{endpoint: "{server.url}", app: "{app.app_id}", session: "{token}"}});
        window.result = await audit.log({{action: "module.import"}});""",
    )
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(pages.add("/module.html", html))
        page.wait_for_function("() => window.result !== undefined", timeout=30_000)
        entry = page.evaluate("window.result")
        assert page.evaluate("window.same") is True
        assert page.evaluate("typeof window.trailkeep") == "undefined"
    finally:
        context.close()
    assert entry["action"] == "module.import"
    assert entry["actor"] == {"type": "user", "id": "user_mod"}
    assert stored(server, app, "user_mod") == [entry]


def test_an_entry_logged_while_the_page_unloads_is_kept(
    browser: Browser, pages: PageServer, server: Server, app: Tenant
) -> None:
    token = server.session(app, "user_bye")
    html = sdk_page_html(server) + (
        f"""<script>
        trailkeep.init({{endpoint: "{server.url}", app: "{app.app_id}", session: "{token}"}});
        document.addEventListener("click", () => {{
          trailkeep.audit.log({{action: "page.leave"}});
          location.href = "/gone.html";
        }});
        </script>"""
    )
    pages.add("/gone.html", "<!doctype html><title>gone</title>")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(pages.add("/leave.html", html))
        with page.expect_navigation(url=pages.origin + "/gone.html"):
            page.mouse.click(5, 5)
        # The page that logged is gone, and everything it still had running. The browser itself
        # stays open meanwhile: closing the context too could cancel the request before a busy
        # machine has sent it, which is no part of what a page leaving does.
        deadline = time.monotonic() + 20
        while not (entries := stored(server, app, "user_bye")) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        context.close()
    assert [(e["action"], e["actor"]["id"]) for e in entries] == [("page.leave", "user_bye")]


def test_changes_and_before_after_pass_through(
    browser: Browser, pages: PageServer, server: Server, app: Tenant
) -> None:
    token = server.session(app, "user_changes")
    with sdk_page(browser, pages, server, app, token) as page:
        given = sdk_call(page, "log", {
            "action": "profile.update", "changes": [{"path": "/name", "old": "A", "new": "B"}],
        })  # fmt: skip
        computed = sdk_call(page, "log", {
            "action": "profile.update", "before": {"theme": "dark"}, "after": {"theme": "light"},
        })  # fmt: skip
        refused = sdk_call(page, "log", {"action": "x", "changes": {"path": "/a"}})
        both = sdk_call(page, "log", {"action": "x", "changes": [], "before": {}, "after": {}})
    assert given["ok"], given
    assert computed["ok"], computed
    check_entry(given["value"])
    assert given["value"]["changes"] == [{"path": "/name", "old": "A", "new": "B"}]
    assert computed["value"]["changes"] == [{"path": "/theme", "old": "dark", "new": "light"}]
    assert not refused["ok"]
    assert "changes: expected an array" in json.dumps(refused)
    assert not both["ok"]  # the server's 400
    assert "not both" in json.dumps(both)
    assert [e["id"] for e in stored(server, app, "user_changes")] == [
        computed["value"]["id"],
        given["value"]["id"],
    ]


def test_a_session_from_the_apps_identity_provider_works_as_its_own(
    browser: Browser, pages: PageServer, server: Server
) -> None:
    """A provider's RS256 token (Keycloak-shaped) in the browser SDK, as an HS256 session is."""
    tenant = server.new_app("browser idp", origins=(pages.origin,))
    key = new_key("RS256")
    issuer = {"issuer": ISSUER, "jwks": {"keys": [key.jwk()]}, "audience": "web-console",
              "role_claim": "realm_access.roles", "role_map": {"auditors": "auditor"}}  # fmt: skip
    with server.client(server.session(tenant, "ada", role="owner")) as owner:
        patched = owner.patch(f"/v1/apps/{tenant.app_id}", json={"session_issuer": issuer})
        assert patched.status_code == 200, patched.text
    token = key.sign(claims(
        ["web-console", "account"], sub="kc_user_7", name="Grace", azp="web-console",
        realm_access={"roles": ["offline_access", "auditors"]},
    ))  # fmt: skip
    with sdk_page(browser, pages, server, tenant, token) as page:
        outcome = sdk_call(page, "log", {"action": "report.view", "targetType": "report",
                                         "targetId": "r1"})  # fmt: skip
    assert outcome["ok"], outcome
    entry = outcome["value"]
    check_entry(entry)
    assert entry["actor"] == {"type": "user", "id": "kc_user_7", "name": "Grace",
                              "role": "auditor"}  # fmt: skip
    assert stored(server, tenant, "kc_user_7") == [entry]
