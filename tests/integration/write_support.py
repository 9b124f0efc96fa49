"""Helpers shared by the write-path tests (issue 2): URLs, problem checks, leaf hashes."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Final

import httpx
import rfc8785

from tests.support import Server, Tenant

TIME_RE: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
ID_RE: Final = re.compile(r"evt_[A-Za-z0-9_-]{16,}")
PROBLEM_FIELDS: Final = {"type", "title", "status", "code", "detail", "instance"}


def events_url(app_id: str) -> str:
    """The write path of an app."""
    return f"/v1/apps/{app_id}/events"


def batch_url(app_id: str) -> str:
    """The batch write path of an app."""
    return f"/v1/apps/{app_id}/events/batch"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert an RFC 9457 problem with Trailkeep's stable code; return its document."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert set(problem) >= PROBLEM_FIELDS, problem
    assert problem["status"] == status
    assert problem["code"] == code, problem
    assert isinstance(problem["detail"], str)
    assert problem["detail"]
    assert isinstance(problem["title"], str)
    return problem


def expected_leaf_hash(entry: dict[str, Any]) -> str:
    """SHA-256(0x00 || JCS(entry without leaf_hash)), hex: what §4 says the leaf hash is."""
    rest = {k: v for k, v in entry.items() if k != "leaf_hash"}
    return hashlib.sha256(b"\x00" + rfc8785.dumps(rest)).hexdigest()


def created(response: httpx.Response) -> dict[str, Any]:
    """Assert a 201 carrying one well-formed entry whose leaf hash checks out; return it."""
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    entry: dict[str, Any] = response.json()
    check_entry(entry)
    return entry


def check_entry(entry: dict[str, Any]) -> None:
    """The shape every stored entry has (§1), and its leaf hash."""
    assert set(entry) == {
        "id", "app_id", "seq", "time", "action", "kind", "actor", "target", "metadata",
        "context", "leaf_hash",
    }  # fmt: skip
    assert ID_RE.fullmatch(entry["id"]), entry["id"]
    assert TIME_RE.fullmatch(entry["time"]), entry["time"]
    assert isinstance(entry["seq"], int)
    assert entry["seq"] >= 0
    assert entry["kind"] in {"admin", "user"}
    assert entry["leaf_hash"] == expected_leaf_hash(entry)


def write(client: httpx.Client, app_id: str, body: Any = None, **headers: str) -> dict[str, Any]:
    """Append one entry and return it (asserting 201)."""
    return created(client.post(events_url(app_id), json=body or {"action": "t.write"},
                               headers=headers))  # fmt: skip


def next_seq(client: httpx.Client, app_id: str) -> int:
    """Append a probe entry and return its seq: the log's size before the probe."""
    return int(write(client, app_id, {"action": "probe.next_seq"})["seq"])


def raw_post(client: httpx.Client, url: str, body: bytes, **headers: str) -> httpx.Response:
    """POST exact bytes."""
    return client.post(url, content=body, headers={"content-type": "application/json", **headers})


def new_key(server: Server, tenant: Tenant, *scopes: str) -> tuple[str, str]:
    """A key with the given scopes, through the CLI: (key id, key)."""
    args = [arg for scope in scopes for arg in ("--scope", scope)]
    made = json.loads(server.cli("keys", "create", "--app", tenant.app_id, *args, "--json").stdout)
    return str(made["key_id"]), str(made["key"])
