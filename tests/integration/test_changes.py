"""What changed, over HTTP on both backends (DESIGN §8; issue 22): `changes` and `before`/`after`
on writes, the `changed_path` filter of list, stats and export, and erasure of the paths."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import orjson
import pytest

from tests.integration.http_api import (
    batch_url,
    check_entry,
    events_url,
    expect_problem,
    expect_status,
    export_lines,
    list_all,
)
from tests.servers import Server, Tenant

pytestmark = pytest.mark.timeout(240)


def post(client: httpx.Client, app_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Write one entry; return it as stored."""
    entry: dict[str, Any] = expect_status(client.post(events_url(app_id), json=body), 201).json()
    check_entry(entry)  # the leaf hash covers `changes`
    return entry


def test_changes_are_stored_as_given_or_computed_and_returned(
    server: Server, tenant: Tenant
) -> None:
    changes = [{"path": "/role", "old": "member", "new": "admin"}, {"path": "/nick", "new": None},
               {"path": "/a~1b", "old": 1}]  # fmt: skip
    with server.client(tenant.key) as client:
        given = post(client, tenant.app_id, {"action": "user.update", "changes": changes})
        assert given["changes"] == changes
        computed = post(client, tenant.app_id, {
            "action": "user.update", "target_type": "user", "target_id": "u1",
            "before": {"role": "member", "address": {"city": "Oslo", "zip": "0150"}, "tags": [1]},
            "after": {"role": "admin", "address": {"city": "Bergen", "zip": "0150"}, "tags": [1],
                      "x/y": True},
        })  # fmt: skip
        assert computed["changes"] == [
            {"path": "/address/city", "old": "Oslo", "new": "Bergen"},
            {"path": "/role", "old": "member", "new": "admin"},
            {"path": "/x~1y", "new": True},
        ]
        assert "before" not in computed
        assert "after" not in computed
        # Nothing changed, or no changes given: no `changes` key (entries hash as before).
        same = post(client, tenant.app_id, {"action": "user.update", "before": {"a": 1},
                                            "after": {"a": 1}})  # fmt: skip
        plain = post(client, tenant.app_id, {"action": "user.update", "changes": []})
        assert "changes" not in same
        assert "changes" not in plain
        read = expect_status(client.get(events_url(tenant.app_id, f"events/{given['id']}")))
        assert read.json() == given
        batch = expect_status(client.post(batch_url(tenant.app_id), json={"events": [
            {"action": "b.one", "changes": [{"path": "/k", "old": 1, "new": 2}]},
            {"action": "b.two"},
        ]}), 201).json()["events"]  # fmt: skip
        assert batch[0]["changes"] == [{"path": "/k", "old": 1, "new": 2}]
        assert "changes" not in batch[1]


@pytest.mark.parametrize(
    ("body", "status", "code", "detail"),
    [
        ({"changes": [{"path": "role", "old": 1}]}, 400, "invalid_request", "changes[0].path"),
        ({"changes": [{"path": "/r~3", "old": 1}]}, 400, "invalid_request", "changes[0].path"),
        ({"changes": [{"path": "/r"}]}, 400, "invalid_request", "changes[0]: give"),
        ({"changes": [{"path": "/r", "new": 1, "at": 2}]}, 400, "invalid_request",
         "changes[0].at: unknown field"),
        ({"changes": [{"path": f"/k{i}", "new": i} for i in range(101)]}, 400,
         "invalid_request", "changes: List should have at most 100 items"),
        ({"before": {}, "after": {f"k{i}": i for i in range(101)}}, 400, "invalid_request",
         "after: 101 fields differ"),
        ({"changes": [], "before": {}, "after": {}}, 400, "invalid_request",
         "changes: give `changes` or `before` and `after`, not both"),
        ({"before": {"a": 1}}, 400, "invalid_request", "after: give `before` and `after`"),
        ({"metadata": {"m": "x" * 6_000}, "changes": [{"path": "/m", "new": "y" * 6_000}]}, 413,
         "payload_too_large", "(and changes"),
        ({"action": "erasure.done", "changes": [{"path": "/a", "new": 1}]}, 400,
         "invalid_request", "reserved"),
    ],
)  # fmt: skip
def test_bad_changes_are_400_naming_the_field(
    server: Server, tenant: Tenant, body: dict[str, Any], status: int, code: str, detail: str
) -> None:
    with server.client(tenant.key) as client:
        answer = client.post(events_url(tenant.app_id), json={"action": "user.update", **body})
        problem = expect_problem(answer, status, code)
        assert detail in problem["detail"]
        batch = client.post(
            batch_url(tenant.app_id), json={"events": [{"action": "ok"}, {"action": "u", **body}]}
        )
        assert detail in expect_problem(batch, status, code)["detail"]
        assert "events[1]." in batch.json()["detail"]


def _seed(client: httpx.Client, app_id: str) -> list[int]:
    """Entries that change /role (returned seqs), /plan, or nothing."""
    role: list[int] = []
    for i in range(7):
        if i % 2 == 0:
            body = {"action": f"user.role.{i % 3}", "before": {"role": "member", "plan": i},
                    "after": {"role": "admin", "plan": i + 1}}  # fmt: skip
            role.append(post(client, app_id, body)["seq"])
        else:
            post(client, app_id, {"action": "plan.set", "changes": [{"path": "/plan", "new": i}]})
        post(client, app_id, {"action": "other"})
    return role


def test_changed_path_filters_list_stats_and_export(server: Server, tenant: Tenant) -> None:
    with server.client(tenant.key) as client:
        role = _seed(client, tenant.app_id)
        listed = list_all(client, tenant.app_id, {"changed_path": "/role", "limit": 2})
        assert [e["seq"] for e in listed] == role[::-1]  # newest first, across pages
        narrowed = list_all(client, tenant.app_id, {"changed_path": "/role",
                                                    "action": "user.role.0"})  # fmt: skip
        assert [e["seq"] for e in narrowed] == [role[3], role[0]]
        prefixed = list_all(client, tenant.app_id, {"changed_path": "/role",
                                                    "action_prefix": "user.role."})  # fmt: skip
        assert [e["seq"] for e in prefixed] == role[::-1]
        assert list_all(client, tenant.app_id, {"changed_path": "/nothing"}) == []
        assert list_all(client, tenant.app_id, {"changed_path": "/rol"}) == []  # exact match
        stats = expect_status(
            client.get(
                events_url(tenant.app_id, "stats"),
                params={"changed_path": "/plan", "group_by": "action"},
            )
        )
        groups = {g["key"]: g["count"] for g in stats.json()["groups"]}
        assert groups == {"plan.set": 3, "user.role.0": 2, "user.role.1": 1, "user.role.2": 1}
        lines = export_lines(client, tenant.app_id, {"changed_path": "/role"})
        assert [orjson.loads(line)["seq"] for line in lines] == role  # oldest first
        csv_text = client.get(
            events_url(tenant.app_id, "export"), params={"changed_path": "/role", "format": "csv"}
        ).text
        assert csv_text.count("\r\n") == len(role) + 1
        # The CSV carries what changed too, as JSON in a column of its own.
        table = list(csv.DictReader(io.StringIO(csv_text)))
        assert [orjson.loads(row["changes"]) for row in table] == [
            orjson.loads(line)["changes"] for line in lines
        ]
        for bad in ("role", "/a~9", "/" * 600):
            problem = expect_problem(
                client.get(events_url(tenant.app_id), params={"changed_path": bad}),
                400, "invalid_request",
            )  # fmt: skip
            assert problem["detail"].startswith("changed_path")


def test_an_erased_entry_takes_its_changed_paths_with_it(server: Server, tenant: Tenant) -> None:
    subject = "user_changes_erased_7"
    with server.client(server.session(tenant, subject)) as client:
        erased = post(client, tenant.app_id, {
            "action": "profile.update", "changes": [{"path": f"/users/{subject}", "new": 1}],
        })  # fmt: skip
    with server.client(tenant.key) as client:
        kept = post(client, tenant.app_id, {
            "action": "profile.update", "changes": [{"path": f"/users/{subject}", "old": 1}],
        })  # fmt: skip
    count = "SELECT count(*) FROM event_changes WHERE app_id = :app AND seq = :seq"
    assert server.query(count, app=tenant.app_id, seq=erased["seq"]) == [(1,)]
    owner = server.session(tenant, "ada", role="owner")
    with server.client(owner) as client:
        answer = client.post(
            f"/v1/apps/{tenant.app_id}/erasures",
            json={"subject": {"actor_id": subject}, "reason": "GDPR art. 17"},
        )
        assert expect_status(answer, 202).json()["status"] == "done"
    assert server.query(count, app=tenant.app_id, seq=erased["seq"]) == [(0,)]
    assert server.query(count, app=tenant.app_id, seq=kept["seq"]) == [(1,)]
    with server.client(tenant.key) as client:
        found = list_all(client, tenant.app_id, {"changed_path": f"/users/{subject}"})
        assert [e["seq"] for e in found] == [kept["seq"]]  # the stub matches no content filter
