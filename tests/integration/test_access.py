"""Who may read an app's log, on every read route, and the audit entries reads append (issue 3).

Log sizes are always read with a key, whose reads are not recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, timedelta, timezone
from typing import Any

import httpx
import jwt
import pytest

from tests.integration.corpus import parse_time
from tests.integration.http_api import (
    Entry,
    events_url,
    expect_problem,
    expect_status,
    key_id_of,
    log_size,
    write_batch,
)
from tests.servers import Server, Tenant

pytestmark = pytest.mark.timeout(120)

USER_AGENT = "access-test/1.0"


@dataclass
class Setup:
    """The app under test, a second app, and credentials of every sort (as header dicts)."""

    app: Tenant
    other: Tenant
    entries: list[Entry]
    read_key: str
    credentials: dict[str, dict[str, str]]

    @property
    def app_id(self) -> str:
        """The app's id."""
        return self.app.app_id


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def setup(server: Server) -> Setup:
    """An app with 20 entries, and one credential of each kind the rules tell apart."""
    app, other = server.new_app("access"), server.new_app("access other")
    with server.client(app.key) as client:
        entries = write_batch(client, app.app_id, [
            {"action": f"acc.a{i % 4}", "target_type": "doc", "target_id": f"d{i % 3}"}
            for i in range(20)
        ])  # fmt: skip
    with server.client(other.key) as client:
        write_batch(client, other.app_id, [{"action": "acc.other"}])
    read_key = server.new_key(app.app_id, "events:read").key
    session = server.session
    credentials = {
        "owner": _bearer(session(app, "olga", role="owner", name="Olga")),
        "admin": _bearer(session(app, "adam", role="admin")),
        "read key": _bearer(read_key),
        "all-scopes key": _bearer(app.key),
        "member": _bearer(session(app, "mia", role="member")),
        "no role": _bearer(session(app, "nora")),
        "Owner (case)": _bearer(session(app, "oscar", role="Owner")),
        "write-only key": _bearer(server.new_key(app.app_id, "events:write").key),
        "none": {},
        "garbage": _bearer("garbage"),
        "empty bearer": {"Authorization": "Bearer"},
        "basic": {"Authorization": "Basic b2xnYTpwdw=="},
        "unknown key": _bearer("tk_nosuchkey_" + "a" * 40),
        "bad key secret": _bearer(app.key[:-4] + "zzzz"),
        "expired owner": _bearer(_expired(app)),
        "forged owner": _bearer(_forged(app)),
        "other app key": _bearer(other.key),
        "other app owner": _bearer(session(other, "olga", role="owner")),
    }
    return Setup(app, other, entries, read_key, credentials)


def _expired(app: Tenant) -> str:
    """An owner session for the app, properly signed, that expired two minutes ago."""
    now = int(time.time())
    claims = {"sub": "olga", "aud": app.app_id, "role": "owner", "iat": now - 600, "exp": now - 120}
    return jwt.encode(claims, app.session_secret, algorithm="HS256")


def _forged(app: Tenant) -> str:
    """An owner session for the app, signed with a secret that is not the app's."""
    from trailkeep.sdk import mint_session

    return mint_session(app.app_id, "not-the-secret-" + "x" * 32, "olga", role="owner")


READERS = ["owner", "admin", "read key", "all-scopes key"]
FORBIDDEN = ["member", "no role", "Owner (case)", "write-only key"]
UNAUTHENTICATED = [
    "none", "garbage", "empty bearer", "basic", "unknown key", "bad key secret", "expired owner",
    "forged owner",
]  # fmt: skip
FOREIGN = ["other app key", "other app owner"]

Route = Callable[[Setup], tuple[str, dict[str, Any]]]
READ_ROUTES: dict[str, Route] = {
    "list": lambda s: (events_url(s.app_id), {"limit": 5}),
    "get": lambda s: (events_url(s.app_id, f"events/{s.entries[3]['id']}"), {}),
    "get with proof": lambda s: (
        events_url(s.app_id, f"events/{s.entries[3]['id']}"),
        {"proof": "true"},
    ),
    "stats": lambda s: (events_url(s.app_id, "stats"), {"group_by": "actor"}),
    "export ndjson": lambda s: (events_url(s.app_id, "export"), {"format": "ndjson"}),
    "export csv": lambda s: (events_url(s.app_id, "export"), {"format": "csv"}),
}
INTEGRITY_ROUTES: dict[str, Route] = {
    "checkpoint": lambda s: (events_url(s.app_id, "checkpoint"), {}),
    "inclusion": lambda s: (events_url(s.app_id, "proofs/inclusion"),
                            {"seq": 0, "tree_size": 1}),
    "consistency": lambda s: (events_url(s.app_id, "proofs/consistency"), {"from": 1, "to": 1}),
}  # fmt: skip


@pytest.fixture(scope="module")
def reader(server: Server, setup: Setup) -> Iterator[httpx.Client]:
    """A read-only key's client, to look at the log without adding to it."""
    with server.client(setup.read_key) as client:
        yield client


def _get(server: Server, setup: Setup, who: str, path: str, params: Any) -> httpx.Response:
    headers = {**setup.credentials[who], "User-Agent": USER_AGENT}
    return httpx.get(server.url + path, params=params, headers=headers, timeout=30)


def _call(server: Server, setup: Setup, route: Route, who: str) -> httpx.Response:
    return _get(server, setup, who, *route(setup))


def _expected_status(who: str) -> tuple[int, str]:
    if who in FORBIDDEN:
        return 403, "forbidden"
    if who in UNAUTHENTICATED:
        return 401, "unauthenticated"
    assert who in FOREIGN
    return 404, "not_found"


@pytest.mark.parametrize("route", list(READ_ROUTES))
def test_readers_may_read(server: Server, setup: Setup, route: str) -> None:
    for who in READERS:
        response = expect_status(_call(server, setup, READ_ROUTES[route], who))
        kind = response.headers["content-type"]
        if route == "export csv":
            assert kind.startswith("text/csv"), who
            assert len(response.text.splitlines()) > len(setup.entries), who
        elif route == "export ndjson":
            assert kind.startswith("application/x-ndjson"), who
            assert len(response.content.splitlines()) >= len(setup.entries), who
        else:
            assert kind.startswith("application/json"), who
            assert response.json(), who


@pytest.mark.parametrize("route", list(READ_ROUTES))
def test_everyone_else_is_refused_and_nothing_is_recorded(
    server: Server, setup: Setup, reader: httpx.Client, route: str
) -> None:
    before = log_size(reader, setup.app_id)
    for who in FORBIDDEN + UNAUTHENTICATED + FOREIGN:
        status, code = _expected_status(who)
        body = expect_problem(_call(server, setup, READ_ROUTES[route], who), status, code)
        assert body["detail"], who
    assert log_size(reader, setup.app_id) == before


@pytest.mark.parametrize("route", list(INTEGRITY_ROUTES))
def test_integrity_routes_take_any_credential_of_the_app(
    server: Server, setup: Setup, route: str
) -> None:
    """Checkpoints and proofs reveal only hashes: any credential of the app reads them."""
    for who in READERS + FORBIDDEN:
        expect_status(_call(server, setup, INTEGRITY_ROUTES[route], who))
    for who in UNAUTHENTICATED + FOREIGN:
        status, code = _expected_status(who)
        expect_problem(_call(server, setup, INTEGRITY_ROUTES[route], who), status, code)


# ----------------------------------------------------------------------------- audit entries


def _utc(text: str) -> str:
    """An RFC 3339 time as the server records it: UTC, microseconds, `Z`."""
    return parse_time(text).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _filters(setup: Setup) -> tuple[dict[str, Any], dict[str, Any]]:
    """Query parameters using every filter, and the `filters` object an audit entry records."""
    since = parse_time(setup.entries[2]["time"]).astimezone(
        timezone(timedelta(hours=5, minutes=30))
    )
    until = "2999-01-01T00:00:00.5-08:00"
    params = {
        "action": ["acc.a2", "acc.a0"], "action_prefix": "acc.", "actor": key_id_of(setup.app.key),
        "target_type": "doc", "target_id": "d1", "kind": "admin", "since": since.isoformat(),
        "until": until,
    }  # fmt: skip
    recorded = {
        **params, "since": _utc(setup.entries[2]["time"]), "until": "2999-01-01T08:00:00.500000Z",
    }  # fmt: skip
    return params, recorded


def _new_entries(reader: httpx.Client, app_id: str, since_seq: int) -> list[Entry]:
    data = expect_status(reader.get(events_url(app_id), params={"limit": 1000})).json()["data"]
    return [e for e in reversed(data) if e["seq"] >= since_seq]


AUDITED = ["list", "list filtered", "get", "get with proof", "stats", "export csv", "export"]


def _audited_read(setup: Setup, which: str) -> tuple[str, dict[str, Any], str, Any]:
    """(path, params, the audit action, the metadata it should record, or a callable of it)."""
    params, recorded = _filters(setup)
    entry_id = setup.entries[5]["id"]
    return {
        "list": (events_url(setup.app_id), {"limit": 3}, "audit.read",
                 lambda body: {"route": "list", "filters": {}, "count": 3}),
        "list filtered": (events_url(setup.app_id), params, "audit.read",
                          lambda body: {"route": "list", "filters": recorded,
                                        "count": len(body["data"])}),
        "get": (events_url(setup.app_id, f"events/{entry_id}"), {}, "audit.read",
                lambda body: {"id": entry_id}),
        "get with proof": (events_url(setup.app_id, f"events/{entry_id}"), {"proof": "true"},
                           "audit.read", lambda body: {"id": entry_id}),
        "stats": (events_url(setup.app_id, "stats"), {**params, "group_by": "target_type"},
                  "audit.read", lambda body: {"route": "stats", "group_by": "target_type",
                                              "filters": recorded}),
        "export csv": (events_url(setup.app_id, "export"), {**params, "format": "csv"},
                       "audit.export", lambda body: {"format": "csv", "filters": recorded}),
        "export": (events_url(setup.app_id, "export"), {}, "audit.export",
                   lambda body: {"format": "ndjson", "filters": {}}),
    }[which]  # fmt: skip


@pytest.mark.parametrize("who", ["owner", "admin"])
@pytest.mark.parametrize("which", AUDITED)
def test_a_session_read_appends_one_audit_entry(
    server: Server, setup: Setup, reader: httpx.Client, which: str, who: str
) -> None:
    path, params, action, metadata = _audited_read(setup, which)
    before = log_size(reader, setup.app_id)
    response = expect_status(_get(server, setup, who, path, params))
    body: Any = response.json() if "export" not in which else None
    if which.startswith("list"):
        assert all(e["seq"] < before for e in body["data"])  # the page is read before its record
    if which == "list filtered":
        assert [e["seq"] for e in body["data"]] == [16, 10, 4]  # d1 (i % 3 == 1), a0 or a2 (even)
    (audit,) = _new_entries(reader, setup.app_id, before)
    assert audit["seq"] == before
    assert audit["action"] == action
    assert audit["kind"] == "admin"
    actor = {"owner": {"type": "user", "id": "olga", "name": "Olga", "role": "owner"},
             "admin": {"type": "user", "id": "adam", "role": "admin"}}[who]  # fmt: skip
    assert audit["actor"] == actor
    assert audit["target"] is None
    assert audit["context"] == {"ip": "127.0.0.1", "user_agent": USER_AGENT}
    assert audit["metadata"] == metadata(body)


def test_session_reads_are_recorded_in_order(
    server: Server, setup: Setup, reader: httpx.Client
) -> None:
    before = log_size(reader, setup.app_id)
    for which in ("stats", "list", "export", "get"):
        path, params, _, _ = _audited_read(setup, which)
        expect_status(_get(server, setup, "admin", path, params))
    added = _new_entries(reader, setup.app_id, before)
    assert [e["action"] for e in added] == ["audit.read", "audit.read", "audit.export",
                                            "audit.read"]  # fmt: skip
    assert [e["metadata"].get("route") for e in added] == ["stats", "list", None, None]


@pytest.mark.parametrize("who", ["read key", "all-scopes key"])
def test_reads_with_a_key_append_nothing(
    server: Server, setup: Setup, reader: httpx.Client, who: str
) -> None:
    before = log_size(reader, setup.app_id)
    for which in AUDITED:
        path, params, _, _ = _audited_read(setup, which)
        expect_status(_get(server, setup, who, path, params))
    assert log_size(reader, setup.app_id) == before


def test_failed_session_reads_append_nothing(
    server: Server, setup: Setup, reader: httpx.Client
) -> None:
    before = log_size(reader, setup.app_id)
    owner = setup.credentials["owner"]
    with httpx.Client(base_url=server.url, headers=owner, timeout=30) as boss:
        expect_problem(
            boss.get(events_url(setup.app_id, "events/evt_nosuchentry")), 404, "not_found"
        )
        expect_problem(
            boss.get(events_url(setup.app_id), params={"limit": 0}), 400, "invalid_request"
        )
        expect_problem(boss.get(events_url(setup.app_id, "stats"), params={"group_by": "x"}), 400,
                "invalid_request")  # fmt: skip
        expect_problem(boss.get(events_url(setup.app_id, "export"), params={"format": "xml"}), 400,
                "invalid_request")  # fmt: skip
        expect_problem(boss.get(events_url(setup.app_id), params={"cursor": "nope"}), 400,
                "invalid_request")  # fmt: skip
    assert log_size(reader, setup.app_id) == before


def test_a_session_forwarded_by_a_read_key_is_recorded_as_the_person(
    server: Server, setup: Setup, reader: httpx.Client
) -> None:
    before = log_size(reader, setup.app_id)
    owner = setup.credentials["owner"]["Authorization"].split(" ", 1)[1]
    headers = {
        "Authorization": f"Bearer {setup.read_key}", "Trailkeep-Session": owner,
        "Trailkeep-Client-IP": "203.0.113.7", "Trailkeep-Client-User-Agent": "Browser/1",
    }  # fmt: skip
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as backend:
        expect_status(backend.get(events_url(setup.app_id, "stats")))
    (audit,) = _new_entries(reader, setup.app_id, before)
    assert audit["action"] == "audit.read"
    assert audit["kind"] == "admin"
    assert audit["actor"] == {"type": "user", "id": "olga", "name": "Olga", "role": "owner"}
    assert audit["context"] == {
        "ip": "203.0.113.7", "user_agent": "Browser/1", "forwarded_by": key_id_of(setup.read_key),
    }  # fmt: skip
    assert audit["metadata"] == {"route": "stats", "group_by": "action", "filters": {}}


def test_a_read_key_cannot_lend_its_scope_to_a_member_session(
    server: Server, setup: Setup, reader: httpx.Client
) -> None:
    """Only owners and admins read, also when a backend's key forwards the session."""
    before = log_size(reader, setup.app_id)
    member = setup.credentials["member"]["Authorization"].split(" ", 1)[1]
    headers = {"Authorization": f"Bearer {setup.read_key}", "Trailkeep-Session": member}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as backend:
        expect_problem(backend.get(events_url(setup.app_id), params={"limit": 1}), 403, "forbidden")
    assert log_size(reader, setup.app_id) == before


@pytest.mark.parametrize("route", ["events", "stats", "export"])
def test_filters_too_large_to_record_are_not_a_500(
    server: Server, setup: Setup, reader: httpx.Client, route: str
) -> None:
    """160 actions of 128 control characters: 64 KB of URL, 120 KB of JSON in the record."""
    params = {"action": [("\x01" * 124) + f"{i:04d}" for i in range(160)]}
    with httpx.Client(
        base_url=server.url, headers=setup.credentials["read key"], timeout=30
    ) as key:
        # The same limit for everyone, so a query never depends on who runs it.
        expect_problem(
            key.get(events_url(setup.app_id, route), params=params), 400, "invalid_request"
        )
    before = log_size(reader, setup.app_id)
    response = _get(server, setup, "owner", events_url(setup.app_id, route), params)
    assert "too large to record" in expect_problem(response, 400, "invalid_request")["detail"]
    assert log_size(reader, setup.app_id) == before
