"""`Trailkeep-Reader: person`: a key through which a person reads (the console) has each read
recorded like a session's; without the header a key's reads stay unrecorded, as before."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.http_api import events_url, expect_problem, expect_status, list_all
from tests.servers import Server, Tenant

PERSON = {"Trailkeep-Reader": "person"}


@pytest.fixture(scope="module")
def app(server: Server) -> Tenant:
    """An app with two entries."""
    tenant = server.new_app("person reads")
    with server.client(tenant.key) as client:
        for action in ("order.refund", "cart.add"):
            expect_status(client.post(events_url(tenant.app_id), json={"action": action}), 201)
    return tenant


def reads(server: Server, app: Tenant, key_id: str) -> list[dict[str, Any]]:
    """The read records whose actor is this key, oldest first."""
    with server.client(app.key) as client:
        found = list_all(client, app.app_id, {"actor": key_id, "action_prefix": "audit."})
    return list(reversed(found))


def test_a_person_reading_through_a_key_is_recorded_on_every_read_route(
    server: Server, app: Tenant
) -> None:
    reader = server.new_key(app.app_id, "events:read")
    with server.client(reader.key) as client:
        # Without the header: unrecorded, as a warehouse job's reads are.
        expect_status(client.get(events_url(app.app_id)))
        assert reads(server, app, reader.key_id) == []
        first = expect_status(
            client.get(events_url(app.app_id), params={"action": "cart.add"}, headers=PERSON)
        ).json()["data"][0]
        expect_status(client.get(events_url(app.app_id, f"events/{first['id']}"), headers=PERSON))
        expect_status(
            client.get(events_url(app.app_id, "stats"), params={"group_by": "hour"}, headers=PERSON)
        )
        expect_status(
            client.get(events_url(app.app_id, "export"), params={"format": "csv"}, headers=PERSON)
        )
        with client.stream(
            "GET", events_url(app.app_id, "events/stream"), params={"kind": "user"},
            headers=PERSON,
        ) as stream:  # fmt: skip
            assert stream.status_code == 200
        # Another value is not silently taken as "not a person".
        problem = expect_problem(
            client.get(events_url(app.app_id), headers={"Trailkeep-Reader": "robot"}),
            400, "invalid_request",
        )  # fmt: skip
        assert "Trailkeep-Reader" in problem["detail"]
    recorded = reads(server, app, reader.key_id)
    assert [r["metadata"] for r in recorded] == [
        {"route": "list", "filters": {"action": ["cart.add"]}, "count": 1},
        {"id": first["id"]},
        {"route": "stats", "group_by": "hour", "filters": {}},
        {"format": "csv", "filters": {}},
        {"route": "stream", "filters": {"kind": "user"}},
    ]
    assert [r["action"] for r in recorded] == ["audit.read"] * 3 + ["audit.export", "audit.read"]
    assert {r["kind"] for r in recorded} == {"admin"}
    assert {(r["actor"]["type"], r["actor"]["id"]) for r in recorded} == {
        ("api_key", reader.key_id)
    }


def test_the_header_is_documented_on_the_read_routes(server: Server) -> None:
    with server.client() as client:
        doc = expect_status(client.get("/openapi.json")).json()
    app = "/v1/apps/{app_id}"
    for path in (f"{app}/events", f"{app}/events/{{entry_id}}", f"{app}/stats",
                 f"{app}/export", f"{app}/events/stream"):  # fmt: skip
        headers = {
            p["name"]: p for p in doc["paths"][path]["get"]["parameters"] if p["in"] == "header"
        }
        assert "Trailkeep-Reader" in headers, path
        assert "person" in headers["Trailkeep-Reader"]["description"], path
