"""`GET /v1/apps/{app}/actions`: the app's distinct actions from the action index (for completing
a search), by prefix and by page, the same on both backends; refused input is a 400, never a 500;
and a person's call is recorded like every read."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.http_api import events_url, expect_problem, expect_status, list_all
from tests.servers import Server, Tenant

PERSON = {"Trailkeep-Reader": "person"}
# Code point order: upper case sorts before lower case, `-` before `.` before digits.
WRITTEN = ["order.refund", "order.refund", "order.create", "Order.Z", "cart.add", "order-x",
           "order.refund", "order9", "cart.add"]  # fmt: skip
DISTINCT = sorted(set(WRITTEN))


@pytest.fixture(scope="module")
def app(server: Server) -> Tenant:
    """An app whose entries hold the actions of WRITTEN."""
    tenant = server.new_app("known actions")
    with server.client(tenant.key) as client:
        batch = {"events": [{"action": a} for a in WRITTEN]}
        expect_status(client.post(events_url(tenant.app_id, "events/batch"), json=batch), 201)
    return tenant


def actions(server: Server, app: Tenant, **params: Any) -> dict[str, Any]:
    """The route's answer for these query parameters (with the app's all-scopes key)."""
    with server.client(app.key) as client:
        body: dict[str, Any] = expect_status(
            client.get(events_url(app.app_id, "actions"), params=params)
        ).json()
    return body


def test_distinct_actions_in_order_by_prefix(server: Server, app: Tenant) -> None:
    assert actions(server, app) == {"data": DISTINCT, "next_after": None}
    assert DISTINCT == ["Order.Z", "cart.add", "order-x", "order.create", "order.refund", "order9"]
    assert actions(server, app, prefix="order.")["data"] == ["order.create", "order.refund"]
    assert actions(server, app, prefix="order")["data"] == [
        "order-x", "order.create", "order.refund", "order9",
    ]  # fmt: skip
    # Case-sensitive, as actions and the `action` filter are.
    assert actions(server, app, prefix="Order")["data"] == ["Order.Z"]
    assert actions(server, app, prefix="nothing")["data"] == []
    assert actions(server, app, prefix="order.refund")["data"] == ["order.refund"]


def test_pages_walk_every_action_once(server: Server, app: Tenant) -> None:
    seen: list[str] = []
    after = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2}
        if after is not None:
            params["after"] = after
        page = actions(server, app, **params)
        seen += page["data"]
        after = page["next_after"]
        if after is None:
            break
        assert after == page["data"][-1]
    assert seen == DISTINCT
    # With a prefix, `after` pages inside it; an `after` below the prefix starts at the prefix.
    first = actions(server, app, prefix="order", limit=1)
    assert first == {"data": ["order-x"], "next_after": "order-x"}
    assert actions(server, app, prefix="order", after="order-x", limit=2) == {
        "data": ["order.create", "order.refund"], "next_after": "order.refund",
    }  # fmt: skip
    assert actions(server, app, prefix="order.", after="a")["data"] == [
        "order.create", "order.refund",
    ]  # fmt: skip
    assert actions(server, app, prefix="order.", after="zzz")["data"] == []


def test_bad_input_is_a_400_and_reading_needs_the_right(server: Server, app: Tenant) -> None:
    url = events_url(app.app_id, "actions")
    with server.client(app.key) as client:
        for params in ({"limit": 0}, {"limit": 1001}, {"limit": "many"},
                       {"prefix": "a" * 129}, {"after": "b" * 129}):  # fmt: skip
            expect_problem(client.get(url, params=params), 400, "invalid_request")
        # Odd but valid text is a plain answer on both backends (PostgreSQL text holds no NUL).
        for params in ({"prefix": "\x00"}, {"after": "\x00"}, {"prefix": "\U0010ffff"},
                       {"prefix": "order\x01", "after": "\ud7ff"}):  # fmt: skip
            assert expect_status(client.get(url, params=params)).json()["next_after"] is None
    writer = server.new_key(app.app_id, "events:write")
    with server.client(writer.key) as client:
        expect_problem(client.get(url), 403, "forbidden")
    with server.client() as client:
        expect_problem(client.get(url), 401, "unauthenticated")
    user = server.session(app, "user_1")
    with server.client(user) as client:
        expect_problem(client.get(url), 403, "forbidden")


def test_a_persons_call_is_recorded_and_a_jobs_is_not(server: Server, app: Tenant) -> None:
    reader = server.new_key(app.app_id, "events:read")
    url = events_url(app.app_id, "actions")
    with server.client(reader.key) as client:
        expect_status(client.get(url, params={"prefix": "cart"}))
        expect_status(client.get(url, params={"prefix": "order."}, headers=PERSON))
    ada = server.session(app, "ada", role="owner")
    with server.client(ada) as client:
        expect_status(client.get(url))
    with server.client(app.key) as client:
        recorded = list_all(client, app.app_id, {"action": "audit.read"})
    by = {(e["actor"]["id"], e["metadata"]["prefix"], e["metadata"]["count"])
          for e in recorded if e["metadata"].get("route") == "actions"}  # fmt: skip
    # Ada's list holds the log's own `audit.read` too: the key's recorded call came first.
    assert by == {(reader.key_id, "order.", 2), ("ada", "", len(DISTINCT) + 1)}


def test_the_route_is_in_the_openapi_document(server: Server) -> None:
    with server.client() as client:
        doc = expect_status(client.get("/openapi.json")).json()
    route = doc["paths"]["/v1/apps/{app_id}/actions"]["get"]
    params = {p["name"]: p for p in route["parameters"]}
    assert {"prefix", "after", "limit"} <= set(params)
    assert params["limit"]["schema"]["maximum"] == 1000
    assert "index" in route["description"]
    schema = route["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ActionsOut"}
