"""Administering an app over HTTP and from the CLI: settings, keys, roles, and the admin entries
that record every change in the app's own log (DESIGN §5; issue 21).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from tests.integration.http_api import (
    check_entry,
    expect_problem,
    expect_status,
    export_lines,
    write_numbered,
)
from tests.servers import Server, Tenant

pytestmark = pytest.mark.timeout(240)


def app_url(app_id: str, tail: str = "") -> str:
    """The app's own route (settings), or one under it."""
    return f"/v1/apps/{app_id}{tail}"


def owner(server: Server, tenant: Tenant, sub: str = "ada") -> httpx.Client:
    """A client with an owner's session of the tenant."""
    return server.client(server.session(tenant, sub, role="owner", name="Ada"))


def admin_entries(server: Server, tenant: Tenant) -> list[dict[str, Any]]:
    """The app's `kind: admin` entries other than the reads' own, oldest first."""
    with server.client(tenant.key) as reader:
        lines = export_lines(reader, tenant.app_id, {"kind": "admin"})
    entries = [orjson.loads(line) for line in lines]
    return [e for e in entries if not e["action"].startswith("audit.")]


def test_an_owner_changes_settings_and_the_log_records_old_and_new(
    server: Server, tenant: Tenant
) -> None:
    with owner(server, tenant) as client:
        before = expect_status(client.get(app_url(tenant.app_id))).json()
        assert before == {
            "app_id": tenant.app_id, "retention_days": None, "allowed_origins": [],
            "erasure_approvals": 1, "pending_retention": None, "session_issuer": None,
        }  # fmt: skip
        answer = expect_status(
            client.patch(
                app_url(tenant.app_id),
                json={"erasure_approvals": 2, "allowed_origins": ["https://App.Example:443"]},
            )
        ).json()
        assert answer["erasure_approvals"] == 2
        assert answer["allowed_origins"] == ["https://app.example"]
        entry = answer["entry"]
        check_entry(entry)  # its leaf hash covers the changes
        assert entry["action"] == "app.settings.change"
        assert entry["kind"] == "admin"
        assert entry["actor"] == {"type": "user", "id": "ada", "name": "Ada", "role": "owner"}
        assert entry["target"] == {"type": "app", "id": tenant.app_id}
        assert entry["changes"] == [
            {"path": "/allowed_origins", "old": [], "new": ["https://app.example"]},
            {"path": "/erasure_approvals", "old": 1, "new": 2},
        ]
        again = expect_status(client.get(app_url(tenant.app_id))).json()
        assert again["erasure_approvals"] == 2
        # The same values again change nothing, and log nothing.
        same = expect_status(client.patch(app_url(tenant.app_id), json={"erasure_approvals": 2}))
        assert same.json()["entry"] is None
    logged = admin_entries(server, tenant)
    assert [e["action"] for e in logged] == ["app.settings.change"]
    assert logged[0] == entry


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"retention_days": -1}, "retention_days"),
        ({"retention_days": 0}, "retention_days"),
        ({"retention_days": 10**9}, "retention_days"),
        ({"retention_days": "30"}, "retention_days"),
        ({"erasure_approvals": 3}, "erasure_approvals"),
        ({"erasure_approvals": None}, "erasure_approvals"),
        ({"allowed_origins": ["javascript:alert(1)"]}, "allowed_origins"),
        ({"allowed_origins": "https://a.example"}, "allowed_origins"),
        ({"session_secret": "mine"}, "session_secret"),
        ({"name": "x"}, "name"),
        ([1, 2], "body"),
    ],
)
def test_a_bad_setting_is_a_400_naming_the_field_and_changes_nothing(
    server: Server, tenant: Tenant, body: Any, field: str
) -> None:
    with owner(server, tenant) as client:
        problem = expect_problem(
            client.patch(app_url(tenant.app_id), json=body), 400, "invalid_request"
        )
        assert problem["detail"].startswith(field), problem
        assert expect_status(client.get(app_url(tenant.app_id))).json()["erasure_approvals"] == 1
    assert admin_entries(server, tenant) == []


def test_malformed_json_and_huge_bodies_are_refused(server: Server, tenant: Tenant) -> None:
    with owner(server, tenant) as client:
        url = app_url(tenant.app_id)
        headers = {"Content-Type": "application/json"}
        expect_problem(client.patch(url, content=b"{nope", headers=headers), 400, "invalid_request")
        huge = b'{"allowed_origins": ["' + b"a" * 100_000 + b'"]}'
        expect_problem(client.patch(url, content=huge, headers=headers), 413, "payload_too_large")


def test_shortening_retention_over_the_api_waits_for_approvals_and_its_notice(
    server: Server, tenant: Tenant
) -> None:
    url = app_url(tenant.app_id)
    server.cli("apps", "update", tenant.app_id, "--erasure-approvals", "2")
    with owner(server, tenant, "ada") as ada:
        # From "forever" to any number of days shortens retention: it becomes a request.
        asked = expect_status(ada.patch(url, json={"retention_days": 30})).json()
        assert asked["retention_days"] is None
        pending = asked["pending_retention"]
        assert pending["retention_days"] == 30
        assert pending["approvals"] == 1
        assert pending["approvals_required"] == 2
        notice = datetime.fromisoformat(pending["effective_at"]) - datetime.now(UTC)
        assert timedelta(hours=23) < notice <= timedelta(hours=24)
        request = asked["entry"]
        assert request["action"] == "retention.change.request"
        assert request["changes"] == [{"path": "/retention_days", "old": None, "new": 30}]
        assert expect_status(ada.get(url)).json()["pending_retention"] == pending
        expect_problem(ada.patch(url, json={"retention_days": 7}), 409, "already_pending")
        expect_problem(ada.patch(url, json={"retention_days": 90}), 409, "already_pending")
        approve = f"{url}/retention-change/approve"
        expect_problem(ada.post(approve), 409, "already_approved")
    with server.client(server.new_key(tenant.app_id, "manage").key) as key:
        expect_problem(key.post(approve), 403, "forbidden")
    with owner(server, tenant, "grace") as grace:
        approved = expect_status(grace.post(approve)).json()["pending_retention"]
        assert approved["approvals"] == 2
        # Approved, it still waits for its notice period; it can be cancelled until then.
        assert expect_status(grace.get(url)).json()["retention_days"] is None
        cancelled = expect_status(grace.delete(f"{url}/retention-change")).json()
        assert cancelled["pending_retention"] is None
        expect_problem(grace.delete(f"{url}/retention-change"), 404, "not_found")
        longer = expect_status(grace.patch(url, json={"retention_days": None})).json()
        assert longer["entry"] is None  # forever already: nothing changed
    logged = [e["action"] for e in admin_entries(server, tenant)]
    assert logged == ["app.settings.change", "retention.change.request",
                      "retention.change.approve", "retention.change.cancel"]  # fmt: skip


def test_the_operator_shortens_retention_at_once(server: Server, tenant: Tenant) -> None:
    url = app_url(tenant.app_id)
    with owner(server, tenant) as client:
        expect_status(client.patch(url, json={"retention_days": 30}))
    # The operator on the host may shorten it at once; the request that waited is cancelled.
    server.cli("apps", "update", tenant.app_id, "--retention-days", "10")
    with owner(server, tenant) as client:
        now = expect_status(client.get(url)).json()
        assert now["retention_days"] == 10
        assert now["pending_retention"] is None
        longer = expect_status(client.patch(url, json={"retention_days": 90})).json()
        assert longer["retention_days"] == 90
    logged = admin_entries(server, tenant)
    assert [e["action"] for e in logged] == [
        "retention.change.request", "retention.change.cancel", "app.settings.change",
        "app.settings.change",
    ]  # fmt: skip
    assert [e["actor"]["type"] for e in logged] == ["user", "operator", "operator", "user"]


def test_an_approved_shorter_retention_applies_after_its_notice(sqlite_server: Server) -> None:
    sqlite_server.env["TRAILKEEP_RETENTION_CHANGE_DELAY"] = "0"
    sqlite_server.env["TRAILKEEP_PURGE_INTERVAL"] = "0.5"
    tenant = sqlite_server.new_app("noticed")
    sqlite_server.start()
    with owner(sqlite_server, tenant) as client:
        expect_status(client.patch(app_url(tenant.app_id), json={"retention_days": 3}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        logged = admin_entries(sqlite_server, tenant)
        if any(e["action"] == "app.settings.change" for e in logged):
            break
        time.sleep(0.2)
    applied = logged[-1]
    assert applied["action"] == "app.settings.change"
    assert applied["actor"] == {"type": "system", "id": "retention"}
    assert applied["changes"] == [{"path": "/retention_days", "old": None, "new": 3}]
    with owner(sqlite_server, tenant) as client:
        assert expect_status(client.get(app_url(tenant.app_id))).json()["retention_days"] == 3


def test_only_owners_and_manage_keys_administer(server: Server, tenant: Tenant) -> None:
    other = server.new_app("another app")
    writer = server.new_key(tenant.app_id, "events:write")
    reader = server.new_key(tenant.app_id, "events:read")
    manager = server.new_key(tenant.app_id, "manage")
    url = app_url(tenant.app_id)
    refused = {
        "admin session": server.session(tenant, "bob", role="admin"),
        "auditor session": server.session(tenant, "cy", role="auditor"),
        "user session": server.session(tenant, "dee"),
        "write key": writer.key,
        "read key": reader.key,
    }
    for who, token in refused.items():
        with server.client(token) as client:
            for response in (client.get(url), client.patch(url, json={"erasure_approvals": 2}),
                             client.get(f"{url}/keys"),
                             client.post(f"{url}/keys", json={"scopes": ["events:read"]}),
                             client.delete(f"{url}/keys/{writer.key_id}")):  # fmt: skip
                assert response.status_code == 403, (who, response.request.method, response.text)
                assert response.json()["code"] == "forbidden"
    with server.client() as anonymous:
        expect_problem(anonymous.get(url), 401, "unauthenticated")
    # Another app's credentials find no such app.
    with server.client(other.key) as foreign:
        expect_problem(foreign.patch(url, json={"erasure_approvals": 2}), 404, "not_found")
    with server.client(manager.key) as client:
        changed = expect_status(client.patch(url, json={"erasure_approvals": 2})).json()
    assert changed["entry"]["actor"] == {"type": "api_key", "id": manager.key_id}
    assert changed["entry"]["kind"] == "admin"
    # The writer key was not revoked by any refused request.
    with server.client(writer.key) as client:
        expect_status(client.post(f"/v1/apps/{tenant.app_id}/events", json={"action": "a.b"}), 201)


def test_an_auditor_reads_the_log(server: Server, tenant: Tenant) -> None:
    with server.client(server.session(tenant, "cy", role="auditor")) as client:
        page = expect_status(client.get(f"/v1/apps/{tenant.app_id}/events")).json()
    assert page["data"] == []
    reads = [e for e in admin_entries_all(server, tenant) if e["action"] == "audit.read"]
    assert [r["actor"]["role"] for r in reads] == ["auditor"]


def admin_entries_all(server: Server, tenant: Tenant) -> list[dict[str, Any]]:
    """Every entry of the app, oldest first."""
    with server.client(tenant.key) as reader:
        return [orjson.loads(line) for line in export_lines(reader, tenant.app_id, {})]


def test_keys_over_http_are_shown_once_logged_without_secret_and_revoked_at_once(
    server: Server, tenant: Tenant
) -> None:
    url = app_url(tenant.app_id, "/keys")
    with owner(server, tenant) as client:
        made = expect_status(
            client.post(url, json={"scopes": ["events:read"], "name": "warehouse"}), 201
        ).json()
        assert made["key"].startswith("tk_")
        assert made["scopes"] == ["events:read"]
        listed = expect_status(client.get(url)).json()["keys"]
        assert {k["key_id"] for k in listed} >= {made["key_id"], tenant.key_id}
        assert all("key" not in k and "secret_hash" not in k for k in listed)
    with server.client(made["key"]) as reader:
        expect_status(reader.get(f"/v1/apps/{tenant.app_id}/events"))
    with owner(server, tenant) as client:
        revoked = expect_status(client.delete(f"{url}/{made['key_id']}")).json()
        assert revoked["revoked_at"] is not None
        assert revoked["entry"]["action"] == "key.revoke"
        # Revoking again changes nothing and logs nothing.
        assert expect_status(client.delete(f"{url}/{made['key_id']}")).json()["entry"] is None
        expect_problem(client.delete(f"{url}/key_doesnotexist"), 404, "not_found")
    with server.client(made["key"]) as reader:
        # On the node that revoked it: refused at once, not after the key cache's seconds.
        expect_problem(reader.get(f"/v1/apps/{tenant.app_id}/events"), 401, "unauthenticated")
    logged = admin_entries(server, tenant)
    assert [e["action"] for e in logged] == ["key.create", "key.revoke"]
    assert logged[0]["metadata"] == {"scopes": ["events:read"], "name": "warehouse"}
    assert logged[0]["target"] == {"type": "api_key", "id": made["key_id"]}
    secret = made["key"].encode()
    assert not any(secret in line for line in _export(server, tenant))


def _export(server: Server, tenant: Tenant) -> list[bytes]:
    with server.client(tenant.key) as reader:
        return export_lines(reader, tenant.app_id, {})


def test_a_key_creates_only_keys_whose_scopes_it_holds(server: Server, tenant: Tenant) -> None:
    manager = server.new_key(tenant.app_id, "manage")
    url = app_url(tenant.app_id, "/keys")
    with server.client(manager.key) as client:
        problem = expect_problem(
            client.post(url, json={"scopes": ["manage", "events:read"]}), 403, "forbidden"
        )
        assert "events:read" in problem["detail"]
        made = expect_status(client.post(url, json={"scopes": ["manage"]}), 201).json()
        assert made["scopes"] == ["manage"]
        for body in ({"scopes": []}, {"scopes": ["root"]}, {"scopes": "manage"},
                     {"scopes": ["manage"], "extra": 1}):  # fmt: skip
            expect_problem(client.post(url, json=body), 400, "invalid_request")
    # Another app's key id is not found, and stays active.
    other = server.new_app("other")
    with server.client(manager.key) as client:
        expect_problem(client.delete(f"{url}/{other.key_id}"), 404, "not_found")
    with server.client(other.key) as client:
        expect_status(client.get(f"/v1/apps/{other.app_id}/events"))


def test_the_cli_administers_as_the_operator(server: Server, tenant: Tenant) -> None:
    server.cli("apps", "update", tenant.app_id, "--erasure-approvals", "2")
    made = server.cli("keys", "create", "--app", tenant.app_id, "--scope", "events:read", "--json")
    key_id = json.loads(made.stdout)["key_id"]
    server.cli("keys", "revoke", key_id)
    logged = admin_entries(server, tenant)
    assert [e["action"] for e in logged] == ["app.settings.change", "key.create", "key.revoke"]
    for entry in logged:
        assert entry["actor"]["type"] == "operator"
        assert "@" in entry["actor"]["id"]
        assert entry["kind"] == "admin"
        assert entry["context"]["user_agent"].startswith("trailkeep-cli/")
    bad = server.cli("apps", "update", tenant.app_id, "--retention-days", "0", check=False)
    assert bad.returncode != 0
    forever = server.cli(
        "apps", "update", tenant.app_id, "--retention-days", "5", "--keep-forever", check=False
    )
    assert forever.returncode == 1
    assert "not both" in forever.stderr


def test_appends_from_another_process_keep_the_log_gapless_and_verifiable(
    server: Server, tenant: Tenant
) -> None:
    """The CLI's governance appends interleave with the server's writes on one app."""
    stop = threading.Event()
    written: list[int] = []
    failures: list[str] = []
    key = server.new_key(tenant.app_id, "events:write").key

    def write() -> None:
        with server.client(key) as client:
            while not stop.is_set() and len(written) < 20_000:
                try:
                    written.extend(e["seq"] for e in write_numbered(client, tenant.app_id, 0, 20))
                except Exception as exc:  # reported by the assertion below
                    failures.append(repr(exc))
                    return

    writers = [threading.Thread(target=write) for _ in range(3)]
    for thread in writers:
        thread.start()
    try:
        for approvals in (2, 1, 2, 1):
            server.cli("apps", "update", tenant.app_id, "--erasure-approvals", str(approvals))
    finally:
        stop.set()
        for thread in writers:
            thread.join()
    assert not failures
    lines = _export(server, tenant)
    seqs = [orjson.loads(line)["seq"] for line in lines]
    assert seqs == list(range(len(seqs)))
    assert len(admin_entries(server, tenant)) == 4
    assert set(written) < set(seqs)
    # The whole log: every entry against its leaf hash, the stored tree, and the index columns.
    verified = server.cli("verify", "--app", tenant.app_id)
    assert f"tree size {len(seqs)}, root " in verified.stdout
