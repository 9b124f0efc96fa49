"""Secrets that rotate without downtime: session secrets with an overlap, keys that expire, and
the node's secret key itself (issue 22). Every rotation is logged in the app's log, never the
secret.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.http_api import expect_problem, expect_status, export_lines
from tests.servers import Server, Tenant
from trailkeep.sdk import mint_session
from trailkeep.server.secrets import SecretBox

pytestmark = pytest.mark.timeout(240)


def url(tenant: Tenant, tail: str) -> str:
    """A route of the tenant's app."""
    return f"/v1/apps/{tenant.app_id}{tail}"


def owner_with(tenant: Tenant, secret: str, sub: str = "ada") -> str:
    """An owner's session signed with ``secret``."""
    return mint_session(tenant.app_id, secret, sub, role="owner")


def exported(server: Server, tenant: Tenant) -> bytes:
    """The app's whole log, as NDJSON."""
    with server.client(tenant.key) as reader:
        return b"\n".join(export_lines(reader, tenant.app_id, {}))


def can_write(server: Server, token: str, tenant: Tenant) -> int:
    """The status of one write with ``token``."""
    with server.client(token) as client:
        return client.post(url(tenant, "/events"), json={"action": "doc.view"}).status_code


def test_a_session_secret_rotates_with_an_overlap_then_retires(
    server: Server, tenant: Tenant
) -> None:
    old = tenant.session_secret
    with server.client(owner_with(tenant, old)) as client:
        expect_problem(client.post(url(tenant, "/session-secret/retire")), 409, "nothing_to_retire")
        rotated = expect_status(client.post(url(tenant, "/session-secret/rotate"))).json()
        new = rotated["session_secret"]
        assert new != old
        assert len(new) >= 32
        assert rotated["entry"]["action"] == "session_secret.rotate"
        expect_problem(client.post(url(tenant, "/session-secret/rotate")), 409, "rotation_pending")
    # The overlap: sessions signed with either secret are accepted.
    assert can_write(server, owner_with(tenant, old, "u1"), tenant) == 201
    assert can_write(server, owner_with(tenant, new, "u2"), tenant) == 201
    with server.client(owner_with(tenant, new)) as client:
        retired = expect_status(client.post(url(tenant, "/session-secret/retire"))).json()
        assert retired["entry"]["action"] == "session_secret.retire"
    assert can_write(server, owner_with(tenant, new, "u3"), tenant) == 201
    with server.client(owner_with(tenant, old, "u4")) as client:
        expect_problem(client.post(url(tenant, "/events"), json={"action": "x"}), 401,
                       "unauthenticated")  # fmt: skip
    log = exported(server, tenant)
    assert old.encode() not in log
    assert new.encode() not in log
    with server.client(mint_session(tenant.app_id, new, "bob", role="admin")) as admin:
        expect_problem(admin.post(url(tenant, "/session-secret/rotate")), 403, "forbidden")
    writer = server.new_key(tenant.app_id, "events:write").key
    with server.client(writer) as key:
        expect_problem(key.post(url(tenant, "/session-secret/rotate")), 403, "forbidden")


def test_the_cli_rotates_and_retires_a_session_secret(server: Server, tenant: Tenant) -> None:
    made = server.cli("secrets", "rotate-session", "--app", tenant.app_id, "--json")
    new = json.loads(made.stdout)["session_secret"]
    assert can_write(server, owner_with(tenant, tenant.session_secret, "u1"), tenant) == 201
    twice = server.cli("secrets", "rotate-session", "--app", tenant.app_id, check=False)
    assert twice.returncode != 0
    assert f"trailkeep secrets retire-session --app {tenant.app_id}" in twice.stderr
    server.cli("secrets", "retire-session", "--app", tenant.app_id)
    assert can_write(server, owner_with(tenant, new, "u2"), tenant) == 201
    again = server.cli("secrets", "retire-session", "--app", tenant.app_id, check=False)
    assert again.returncode != 0
    assert "rotate first" in again.stderr
    actions = [json.loads(line)["action"] for line in exported(server, tenant).splitlines()]
    assert actions.count("session_secret.rotate") == 1
    assert actions.count("session_secret.retire") == 1


def test_a_key_that_expires_is_refused_once_its_time_is_up(server: Server, tenant: Tenant) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    with server.client(owner_with(tenant, tenant.session_secret)) as client:
        for bad in ("2020-01-01T00:00:00Z", "tomorrow", "2030-01-01"):
            expect_problem(
                client.post(url(tenant, "/keys"), json={"scopes": ["events:write"],
                                                        "expires_at": bad}), 400,
                "invalid_request",
            )  # fmt: skip
        made = expect_status(
            client.post(url(tenant, "/keys"), json={"scopes": ["events:write"],
                                                    "expires_at": soon}), 201,
        ).json()  # fmt: skip
        assert made["expires_at"] is not None
        assert made["entry"]["metadata"]["expires_at"].startswith(soon[:19])
        listed = expect_status(client.get(url(tenant, "/keys"))).json()["keys"]
        assert [k["expires_at"] for k in listed if k["key_id"] == made["key_id"]] != [None]
    assert can_write(server, made["key"], tenant) == 201
    time.sleep(3.5)
    with server.client(made["key"]) as client:
        problem = expect_problem(
            client.post(url(tenant, "/events"), json={"action": "x"}), 401, "unauthenticated"
        )
        assert "expired" in problem["detail"]
    listed = server.cli("keys", "list", "--app", tenant.app_id, "--json").stdout
    assert any(k["expires_at"] for k in json.loads(listed))
    made_cli = server.cli("keys", "create", "--app", tenant.app_id, "--scope", "events:read",
                          "--expires", "2099-01-01T00:00:00Z", "--json")  # fmt: skip
    assert json.loads(made_cli.stdout)["expires_at"].startswith("2099-01-01")


def test_the_secret_key_rotates_and_every_sealed_secret_follows(sqlite_server: Server) -> None:
    server = sqlite_server
    tenant = server.new_app("sealed")
    server.cli("apps", "update", tenant.app_id, "--erasure-approvals", "2")
    server.start()
    with server.client(owner_with(tenant, tenant.session_secret)) as client:
        new = expect_status(client.post(url(tenant, "/session-secret/rotate"))).json()
        pending = expect_status(
            client.post(url(tenant, "/erasures"),
                        json={"subject": {"actor_id": "user_9"}, "reason": "asked"}), 202,
        ).json()  # fmt: skip
    server.stop()
    old_key = server.secret_key_file
    new_key = server.data_dir / "secret-2.key"
    SecretBox.load(new_key)  # made, 0600
    server.env["TRAILKEEP_SECRET_KEY_FILE"] = str(new_key)
    server.env["TRAILKEEP_PREVIOUS_SECRET_KEY_FILE"] = str(old_key)
    done = json.loads(server.cli("secrets", "rotate-key", "--json").stdout)
    assert [(d["app_id"], d["resealed"]) for d in done] == [(tenant.app_id, 3)]
    # Nothing is sealed under the old key any more: the node starts without it.
    del server.env["TRAILKEEP_PREVIOUS_SECRET_KEY_FILE"]
    new_id = SecretBox.load(new_key).key_id
    sealed = server.query("SELECT session_secret, next_session_secret FROM apps")[0]
    subject = server.query("SELECT subject FROM erasures")[0][0]
    assert all(value.split(":")[1] == new_id for value in (*sealed, subject))
    server.start()
    for secret in (tenant.session_secret, new["session_secret"]):
        assert can_write(server, owner_with(tenant, secret, "w"), tenant) == 201
    with server.client(owner_with(tenant, new["session_secret"], "grace")) as client:
        done_erasure = expect_status(
            client.post(url(tenant, f"/erasures/{pending['id']}/approve"))
        ).json()
        assert done_erasure["status"] == "done"
    rotated = [json.loads(line) for line in exported(server, tenant).splitlines()]
    record = next(e for e in rotated if e["action"] == "secret_key.rotate")
    assert record["metadata"] == {"resealed": 3, "from_keys": [SecretBox.load(old_key).key_id],
                                  "to_key": new_id}  # fmt: skip
    assert record["actor"]["type"] == "operator"
    # Run again, it has nothing left to do and logs nothing.
    again = json.loads(server.cli("secrets", "rotate-key", "--json").stdout)
    assert [d["resealed"] for d in again] == [0]


def test_a_node_without_the_previous_key_names_it(sqlite_server: Server, tmp_path: Path) -> None:
    server = sqlite_server
    server.new_app("sealed")
    fresh = tmp_path / "other.key"
    SecretBox.load(fresh)
    server.env["TRAILKEEP_SECRET_KEY_FILE"] = str(fresh)
    failed = server.cli("secrets", "rotate-key", check=False)
    assert failed.returncode != 0
    assert "TRAILKEEP_SECRET_KEY_FILE" in failed.stderr or "sealed under" in failed.stderr
