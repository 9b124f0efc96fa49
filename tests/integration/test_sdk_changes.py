"""The Python SDK writes and reads what changed (DESIGN §8; issue 22) against a real server."""

from __future__ import annotations

import asyncio

import pytest

from tests.servers import Server, Tenant
from trailkeep.sdk import AsyncClient, Client, Event, InvalidRequest

pytestmark = pytest.mark.timeout(120)


def test_log_with_changes_or_before_and_after(server: Server, tenant: Tenant) -> None:
    with Client(server.url, tenant.app_id, tenant.key) as client:
        given = client.audit.log(
            "user.role.change", target_type="user", target_id="u1",
            changes=[{"path": "/role", "old": "member", "new": "admin"}],
        )  # fmt: skip
        assert given.changes == ({"path": "/role", "old": "member", "new": "admin"},)
        computed = client.audit.log(
            "user.update", before={"email": "a@x", "plan": {"tier": 1}},
            after={"email": "a@x", "plan": {"tier": 2}},
        )  # fmt: skip
        assert computed.changes == ({"path": "/plan/tier", "old": 1, "new": 2},)
        plain = client.audit.log("user.login")
        assert plain.changes == ()
        assert "changes" not in plain.raw
        batch = client.audit.log_many([
            Event("a.one", changes=[{"path": "/k", "new": 1}]),
            {"action": "a.two", "before": {"k": 1}, "after": {}},
        ])  # fmt: skip
        assert [e.changes for e in batch] == [
            ({"path": "/k", "new": 1},),
            ({"path": "/k", "old": 1},),
        ]
        for entry in (given, computed, *batch):
            client.verify_entry(entry)  # its leaf hash covers `changes`
        found = list(client.audit.list(changed_path="/role"))
        assert [e.id for e in found] == [given.id]
        # Refused before sending, by the server's own rules.
        with pytest.raises(InvalidRequest, match="changes: give `changes` or `before`"):
            client.audit.log("x", changes=[], before={}, after={})
        with pytest.raises(InvalidRequest, match=r"changes\[0\]\.path"):
            client.audit.log("x", changes=[{"path": "role", "new": 1}])


def test_the_async_client_logs_changes(server: Server, tenant: Tenant) -> None:
    async def run() -> None:
        async with AsyncClient(server.url, tenant.app_id, tenant.key) as client:
            entry = await client.audit.log("doc.edit", before={"t": "a"}, after={"t": "b"})
            assert entry.changes == ({"path": "/t", "old": "a", "new": "b"},)
            page = await client.audit.page(changed_path="/t")
            assert [e.id for e in page.data] == [entry.id]

    asyncio.run(run())
