"""The write path over real HTTP (issue 2): entries, errors, reads by id, idempotency, integrity.

Every test talks to a real `trailkeep serve` on SQLite (the session-scoped ``server``).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.http_api import (
    batch_url,
    check_entry,
    checkpoint_verifier,
    events_url,
    expect_created,
    expect_problem,
    list_all,
    next_seq,
    post_bytes,
    wait_for_checkpoint,
    write_one,
)
from tests.servers import Server, Tenant
from tests.trees import root_of
from trailkeep.log.record import ACTION_PATTERN, Actor, EntryError, Origin, prepare, validate_write
from trailkeep.server.ids import new_entry_id

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def app(server: Server) -> Tenant:
    """One app shared by this module's tests that do not need an empty log."""
    return server.new_app("writes")


@pytest.fixture(scope="module")
def other(server: Server) -> Tenant:
    """A second app, for tenancy checks."""
    return server.new_app("other")


@pytest.fixture(scope="module")
def client(server: Server, app: Tenant) -> Iterator[httpx.Client]:
    """A client with the app's all-scopes key."""
    with server.client(app.key) as c:
        yield c


@pytest.fixture(scope="module")
def reader(server: Server, app: Tenant) -> Iterator[httpx.Client]:
    """A client with a key that has only `events:read`."""
    key = server.new_key(app.app_id, "events:read").key
    with server.client(key) as c:
        yield c


@pytest.fixture(scope="module")
def writer(server: Server, app: Tenant) -> Iterator[tuple[str, httpx.Client]]:
    """(key id, client) for a key that has only `events:write`."""
    made = server.new_key(app.app_id, "events:write")
    with server.client(made.key) as c:
        yield made.key_id, c


# --- one write ---------------------------------------------------------------------------


def test_write_returns_the_stored_entry(app: Tenant, client: httpx.Client) -> None:
    body = {
        "action": "order.refund", "target_type": "order", "target_id": "ord_9",
        "metadata": {"amount": 49.99, "reason": "damaged", "nested": {"a": [1, 2, {"b": None}]},
                     "ünï": "€ \U0001f600", "\U0001f600": True},
        "project": "checkout", "server": "web-3", "request_id": "req-1",
    }  # fmt: skip
    before = datetime.now(UTC) - timedelta(seconds=2)
    response = client.post(events_url(app.app_id), json=body, headers={"User-Agent": "Mozilla/5"})
    after = datetime.now(UTC) + timedelta(seconds=2)
    entry = expect_created(response)
    assert entry["app_id"] == app.app_id
    assert entry["action"] == "order.refund"
    assert entry["target"] == {"type": "order", "id": "ord_9"}
    assert entry["metadata"] == body["metadata"]
    assert entry["context"] == {
        "ip": "127.0.0.1", "user_agent": "Mozilla/5", "project": "checkout", "server": "web-3",
        "request_id": "req-1",
    }  # fmt: skip
    # The app's first key has every scope, `manage` included: a management key is an admin.
    assert entry["actor"] == {"type": "api_key", "id": app.key_id}
    assert entry["kind"] == "admin"
    moment = datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
    assert before <= moment <= after


def test_a_plain_write_key_records_user_entries(
    app: Tenant, writer: tuple[str, httpx.Client]
) -> None:
    key_id, client = writer
    entry = expect_created(client.post(events_url(app.app_id), json={"action": "doc.view"}))
    assert entry["actor"] == {"type": "api_key", "id": key_id}
    assert entry["kind"] == "user"
    assert entry["target"] is None
    assert entry["metadata"] == {}
    assert entry["context"] == {
        "ip": "127.0.0.1",
        "user_agent": f"python-httpx/{httpx.__version__}",
    }


def test_seqs_are_gapless_and_times_never_go_back(app: Tenant, client: httpx.Client) -> None:
    entries = [write_one(client, app.app_id, {"action": f"step.n{i}"}) for i in range(6)]
    first = entries[0]["seq"]
    assert [e["seq"] for e in entries] == list(range(first, first + 6))
    assert [e["time"] for e in entries] == sorted(e["time"] for e in entries)
    assert len({e["id"] for e in entries}) == 6
    assert len({e["leaf_hash"] for e in entries}) == 6


def test_each_app_has_its_own_log(server: Server, tenant: Tenant, app: Tenant) -> None:
    with server.client(tenant.key) as fresh:
        assert [write_one(fresh, tenant.app_id)["seq"] for _ in range(3)] == [0, 1, 2]
        entry = write_one(fresh, tenant.app_id)
    assert entry["app_id"] == tenant.app_id
    assert entry["seq"] == 3


def test_the_user_agent_is_cut_to_a_sane_length(app: Tenant, client: httpx.Client) -> None:
    agent = "A" * 5000
    response = client.post(events_url(app.app_id), json={"action": "ua.long"},
                           headers={"User-Agent": agent})  # fmt: skip
    entry = expect_created(response)
    assert agent.startswith(entry["context"]["user_agent"])
    assert 0 < len(entry["context"]["user_agent"]) <= 1024


def test_forwarding_headers_from_an_untrusted_peer_are_ignored(
    app: Tenant, client: httpx.Client
) -> None:
    entry = expect_created(client.post(
        events_url(app.app_id), json={"action": "xff.ignored"},
        headers={"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9",
                 "Forwarded": "for=203.0.113.9"},
    ))  # fmt: skip
    assert entry["context"]["ip"] == "127.0.0.1"


# --- refused bodies ----------------------------------------------------------------------

DEEP = b'{"action":"a","metadata":' + b'{"k":' * 600 + b"1" + b"}" * 601
TOO_DEEP_FOR_JSON = b'{"action":"a","metadata":' + b"[" * 3000 + b"]" * 3000 + b"}"
BAD_BODIES: list[tuple[str, bytes, str, str]] = [
    # (name, body, code, a word the detail must contain)
    ("actor-object", b'{"action":"a","actor":{"type":"user","id":"boss"}}', "actor_not_allowed",
     "actor"),
    ("actor-string", b'{"action":"a","actor":"boss"}', "actor_not_allowed", "actor"),
    ("actor-null", b'{"action":"a","actor":null}', "actor_not_allowed", "actor"),
    ("unknown-field", b'{"action":"a","colour":"red"}', "invalid_request", "colour"),
    ("target-object", b'{"action":"a","target":{"type":"t","id":"i"}}', "invalid_request",
     "target"),
    *[(f"owned-{f}", b'{"action":"a","' + f.encode() + b'":"x"}', "invalid_request", f)
      for f in ("time", "kind", "seq", "id", "leaf_hash", "context", "app_id", "ip",
                "user_agent", "forwarded_by")],
    ("owned-seq-int", b'{"action":"a","seq":5}', "invalid_request", "seq"),
    ("owned-time", b'{"action":"a","time":"2020-01-01T00:00:00Z"}', "invalid_request", "time"),
    ("malformed", b'{"action":', "invalid_request", "JSON"),
    ("single-quotes", b"{'action':'a'}", "invalid_request", "JSON"),
    ("trailing-garbage", b'{"action":"a"} x', "invalid_request", "JSON"),
    ("two-documents", b'{"action":"a"}{"action":"b"}', "invalid_request", "JSON"),
    ("nan", b'{"action":"a","metadata":{"x":NaN}}', "invalid_request", "JSON"),
    ("infinity", b'{"action":"a","metadata":{"x":Infinity}}', "invalid_request", "JSON"),
    ("overflow", b'{"action":"a","metadata":{"x":1e400}}', "invalid_request", "JSON"),
    ("lone-surrogate", b'{"action":"a","metadata":{"x":"\\ud800"}}', "invalid_request", "JSON"),
    ("not-utf8", b'{"action":"a\xff"}', "invalid_request", "JSON"),
    ("unsafe-int", b'{"action":"a","metadata":{"x":9007199254740993}}', "invalid_request",
     "metadata"),
    ("unsafe-float-int", b'{"action":"a","metadata":{"x":1e20}}', "invalid_request",
     "metadata"),
    ("action-number", b'{"action":5}', "invalid_request", "action"),
    ("action-null", b'{"action":null}', "invalid_request", "action"),
    ("action-bool", b'{"action":true}', "invalid_request", "action"),
    ("action-list", b'{"action":["a"]}', "invalid_request", "action"),
    ("action-missing", b"{}", "invalid_request", "action"),
    ("action-empty", b'{"action":""}', "invalid_request", "action"),
    ("action-space", b'{"action":"user login"}', "invalid_request", "action"),
    ("action-dots", b'{"action":"user..login"}', "invalid_request", "action"),
    ("action-newline", b'{"action":"user.login\\n"}', "invalid_request", "action"),
    ("action-129", b'{"action":"' + b"a" * 129 + b'"}', "invalid_request", "action"),
    ("metadata-list", b'{"action":"a","metadata":[1]}', "invalid_request", "metadata"),
    ("metadata-string", b'{"action":"a","metadata":"x"}', "invalid_request", "metadata"),
    ("target-half", b'{"action":"a","target_type":"order"}', "invalid_request", "target_id"),
    ("target-type-int", b'{"action":"a","target_type":1,"target_id":"x"}', "invalid_request",
     "target_type"),
    ("target-type-65", b'{"action":"a","target_type":"' + b"t" * 65 + b'","target_id":"x"}',
     "invalid_request", "target_type"),
    ("target-id-257", b'{"action":"a","target_type":"t","target_id":"' + b"i" * 257 + b'"}',
     "invalid_request", "target_id"),
    ("project-129", b'{"action":"a","project":"' + b"p" * 129 + b'"}', "invalid_request",
     "project"),
    ("server-int", b'{"action":"a","server":1}', "invalid_request", "server"),
    ("request-id-129", b'{"action":"a","request_id":"' + b"r" * 129 + b'"}', "invalid_request",
     "request_id"),
    ("array", b'[{"action":"a"}]', "invalid_request", "object"),
    ("string", b'"a"', "invalid_request", "object"),
    ("number", b"5", "invalid_request", "object"),
    ("null", b"null", "invalid_request", "object"),
    ("empty", b"", "invalid_request", "empty"),
    ("deep-600", DEEP, "invalid_request", "nest"),
    ("deep-3000", TOO_DEEP_FOR_JSON, "invalid_request", ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "code", "word"), [case[1:] for case in BAD_BODIES], ids=[c[0] for c in BAD_BODIES]
)
def test_bad_bodies_are_refused_with_a_problem(
    app: Tenant, client: httpx.Client, body: bytes, code: str, word: str
) -> None:
    problem = expect_problem(post_bytes(client, events_url(app.app_id), body), 400, code)
    assert word in problem["detail"]
    assert problem["instance"] == events_url(app.app_id)
    assert problem["type"].endswith(code) or problem["type"].startswith("http")


def test_refused_writes_append_nothing(app: Tenant, client: httpx.Client) -> None:
    before = next_seq(client, app.app_id)
    for _, body, _, _ in BAD_BODIES:
        assert post_bytes(client, events_url(app.app_id), body).status_code == 400
    assert next_seq(client, app.app_id) == before + 1


def test_any_content_type_or_none_is_parsed_as_json(app: Tenant, client: httpx.Client) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": content_type} if content_type else {}
        response = client.post(events_url(app.app_id), content=b'{"action":"ct.any"}',
                               headers=headers)  # fmt: skip
        assert response.status_code in {201, 415}, response.text
        if response.status_code == 415:
            expect_problem(response, 415, "unsupported_media_type")
    form = client.post(events_url(app.app_id), data={"action": "form.post"})
    assert form.status_code in {400, 415}


# Fields that reach validation, with values of every JSON type.
FIELDS = ["action", "target_type", "target_id", "metadata", "project", "server", "request_id",
          "actor", "time", "seq", "foo", ""]  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
    ),
    max_leaves=10,
)
actions = st.from_regex(ACTION_PATTERN.strip("^$"), fullmatch=True) | st.text(max_size=10)
bodies = (
    st.fixed_dictionaries(
        {"action": actions}, optional={f: json_values for f in FIELDS if f != "action"}
    )
    | st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4)
    | json_values
)


def expected_status(body: Any) -> int:
    """What the contract says a body should get: 201, or the status of its error code."""
    try:
        event = validate_write(body)
        prepare(
            "app_x",
            new_entry_id(),
            event,
            Actor(type="api_key", id="key_x"),
            Origin(None, None),
            10_240,
        )
    except EntryError as exc:
        return {"invalid_request": 400, "actor_not_allowed": 400, "payload_too_large": 413}[
            exc.code
        ]
    return 201


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies)
def test_generated_bodies_never_get_a_500(app: Tenant, client: httpx.Client, body: Any) -> None:
    try:
        raw = json.dumps(body, allow_nan=True).encode()
    except (ValueError, UnicodeEncodeError):
        return
    response = post_bytes(client, events_url(app.app_id), raw)
    assert response.status_code < 500, response.text
    if response.status_code == 201:
        check_entry(response.json())
    else:
        assert response.headers["content-type"].startswith("application/problem+json")
    try:
        parsed = json.loads(raw, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except ValueError:
        assert response.status_code == 400
        return
    assert response.status_code == expected_status(parsed), (raw[:300], response.text)


@settings(max_examples=80, deadline=None)
@given(raw=st.binary(max_size=300) | st.text(max_size=100).map(str.encode))
def test_garbage_bytes_never_get_a_500(app: Tenant, client: httpx.Client, raw: bytes) -> None:
    response = post_bytes(client, events_url(app.app_id), raw)
    assert response.status_code in {201, 400}, response.text
    if response.status_code == 400:
        expect_problem(response, 400, response.json()["code"])


# --- batches -----------------------------------------------------------------------------


def test_batch_appends_in_order(app: Tenant, client: httpx.Client) -> None:
    items = [{"action": f"batch.item{i}", "metadata": {"i": i}} for i in range(5)]
    items[2] |= {"target_type": "doc", "target_id": "d2", "project": "p"}
    response = client.post(batch_url(app.app_id), json={"events": items})
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"events"}
    entries = body["events"]
    for entry in entries:
        check_entry(entry)
    first = entries[0]["seq"]
    assert [e["seq"] for e in entries] == list(range(first, first + 5))
    assert [e["action"] for e in entries] == [f"batch.item{i}" for i in range(5)]
    assert [e["metadata"] for e in entries] == [{"i": i} for i in range(5)]
    assert entries[2]["target"] == {"type": "doc", "id": "d2"}
    assert entries[2]["context"]["project"] == "p"
    assert len({e["time"] for e in entries}) == 1  # one transaction, one receive time
    assert next_seq(client, app.app_id) == first + 5


# Unusual text an app may send as a target: non-BMP, quotes and backslashes, control
# characters, a literal "\\u0000", and U+0000 itself.
AWKWARD_TEXT = ["𝔘𝔫𝔦😀", 'q"uo\\te', "tab\there\nline", "\\u0000", "é\u2028", "x" * 250]


@pytest.mark.parametrize("nul", [False, True], ids=["plain", "with-nul"])
def test_a_full_batch_stores_every_value_exactly(server: Server, tenant: Tenant, nul: bool) -> None:
    # 1,000 entries: on SQLite a commit this large goes in as blocks of bound rows
    # (store/packed.py), a padded one among them; U+0000 must survive the same path.
    items = [
        {"action": "packed.item", "target_type": f"t{i % 7}",
         "target_id": f"{AWKWARD_TEXT[i % len(AWKWARD_TEXT)]}{i}", "metadata": {"i": i}}
        for i in range(1000)
    ]  # fmt: skip
    if nul:
        items[500]["target_id"] = "nul\x00inside"
    with server.client(tenant.key) as client:
        _check_full_batch(server, client, tenant.app_id, items)


def _check_full_batch(
    server: Server, client: httpx.Client, app_id: str, items: list[dict[str, Any]]
) -> None:
    response = client.post(batch_url(app_id), json={"events": items})
    assert response.status_code == 201, response.text
    written = response.json()["events"]
    first = written[0]["seq"]
    assert [e["seq"] for e in written] == list(range(first, first + 1000))
    for entry, item in zip(written, items, strict=True):
        check_entry(entry)
        assert entry["target"] == {"type": item["target_type"], "id": item["target_id"]}
    # Read back through the indexed columns: each target's filter finds exactly its entry.
    for n in (0, 1, 2, 3, 4, 5, 500, 999):
        found = client.get(
            events_url(app_id),
            params={"target_type": items[n]["target_type"], "target_id": items[n]["target_id"]},
        )
        assert found.status_code == 200, found.text
        assert found.json()["data"] == [written[n]], n
    # And the tree took every leaf: the signed root is the root of the entries' leaf hashes.
    # (Reads may append their own audit entries meanwhile; the checkpoint names its size.)
    checkpoint, _ = wait_for_checkpoint(client, app_id, first + 1000, checkpoint_verifier(server))
    leaves = [bytes.fromhex(e["leaf_hash"]) for e in reversed(list_all(client, app_id, {}))]
    assert checkpoint.root == root_of(leaves[: checkpoint.size])


@pytest.mark.parametrize(
    ("item", "code"),
    [({"action": "bad action"}, "invalid_request"), ({"action": "a", "actor": "x"},
     "actor_not_allowed"), ({"action": "a", "seq": 0}, "invalid_request"), ([], "invalid_request"),
     ({"action": "a", "metadata": {"x": "a" * 10_233}}, "payload_too_large")],
)  # fmt: skip
def test_a_batch_with_one_bad_item_appends_nothing(
    app: Tenant, client: httpx.Client, item: Any, code: str
) -> None:
    before = next_seq(client, app.app_id)
    items: list[Any] = [{"action": f"ok.n{i}"} for i in range(10)]
    items[7] = item
    status = 413 if code == "payload_too_large" else 400
    problem = expect_problem(client.post(batch_url(app.app_id), json={"events": items}), status,
                             code)  # fmt: skip
    assert "events[7]" in problem["detail"]
    assert next_seq(client, app.app_id) == before + 1


@pytest.mark.parametrize(
    "body",
    [b'{"events":[]}', b'{"events":{}}', b'{"events":null}', b"{}", b"[]", b'[{"action":"a"}]',
     b'{"events":[{"action":"a"}],"extra":1}', b'{"action":"a"}', b"", b"{"],
)  # fmt: skip
def test_bad_batch_bodies(app: Tenant, client: httpx.Client, body: bytes) -> None:
    expect_problem(post_bytes(client, batch_url(app.app_id), body), 400, "invalid_request")


# --- reading one entry back ------------------------------------------------------------


@pytest.fixture(scope="module")
def written(app: Tenant, client: httpx.Client) -> tuple[str, bytes]:
    """(id, exact response bytes) of an entry written for the read tests."""
    response = client.post(events_url(app.app_id), json={"action": "read.me", "metadata": {
        "x": 1.5, "y": "é"}})  # fmt: skip
    entry = expect_created(response)
    return str(entry["id"]), response.content


def test_a_reader_key_gets_the_same_bytes(
    app: Tenant, reader: httpx.Client, written: tuple[str, bytes]
) -> None:
    entry_id, raw = written
    response = reader.get(f"{events_url(app.app_id)}/{entry_id}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.content == raw


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owner_and_admin_sessions_may_read(
    server: Server, app: Tenant, written: tuple[str, bytes], role: str
) -> None:
    entry_id, raw = written
    with server.client(server.session(app, f"boss-{role}", role=role)) as boss:
        response = boss.get(f"{events_url(app.app_id)}/{entry_id}")
    assert response.status_code == 200, response.text
    assert response.content == raw


@pytest.mark.parametrize("role", ["member", None, "Owner", "superuser"])
def test_other_sessions_may_not_read(
    server: Server, app: Tenant, written: tuple[str, bytes], role: str | None
) -> None:
    with server.client(server.session(app, "someone", role=role)) as user:
        expect_problem(user.get(f"{events_url(app.app_id)}/{written[0]}"), 403, "forbidden")


def test_a_write_only_key_may_not_read(
    app: Tenant, writer: tuple[str, httpx.Client], written: tuple[str, bytes]
) -> None:
    expect_problem(writer[1].get(f"{events_url(app.app_id)}/{written[0]}"), 403, "forbidden")


def test_reads_are_tenant_scoped(
    server: Server, app: Tenant, other: Tenant, written: tuple[str, bytes]
) -> None:
    with server.client(other.key) as stranger:
        # The other app's key on this app's path: the app does not exist for it.
        expect_problem(stranger.get(f"{events_url(app.app_id)}/{written[0]}"), 404, "not_found")
        # This app's entry id on the other app's path: no such entry there.
        expect_problem(stranger.get(f"{events_url(other.app_id)}/{written[0]}"), 404, "not_found")


@pytest.mark.parametrize("entry_id", ["evt_doesnotexist000000000000", "nope", "evt_"])
def test_unknown_ids_are_404(app: Tenant, reader: httpx.Client, entry_id: str) -> None:
    expect_problem(reader.get(f"{events_url(app.app_id)}/{entry_id}"), 404, "not_found")


def test_reading_needs_a_credential(
    server: Server, app: Tenant, written: tuple[str, bytes]
) -> None:
    with server.client() as anonymous:
        expect_problem(anonymous.get(f"{events_url(app.app_id)}/{written[0]}"), 401,
                       "unauthenticated")  # fmt: skip


# --- no update, no delete ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("suffix", ["", "/{id}", "/batch"])
def test_entries_cannot_be_changed_or_deleted(
    app: Tenant, client: httpx.Client, reader: httpx.Client, written: tuple[str, bytes],
    method: str, suffix: str,
) -> None:  # fmt: skip
    entry_id, raw = written
    url = events_url(app.app_id) + suffix.replace("{id}", entry_id)
    response = client.request(method, url, json={"action": "tamper"})
    problem = expect_problem(response, 405, "method_not_allowed")
    assert problem["instance"] == url
    assert "allow" in response.headers
    assert method not in response.headers["allow"]
    assert reader.get(f"{events_url(app.app_id)}/{entry_id}").content == raw


# --- idempotency -------------------------------------------------------------------------


def test_a_retry_with_the_same_key_returns_the_original(app: Tenant, client: httpx.Client) -> None:
    url, body = events_url(app.app_id), {"action": "pay.once", "metadata": {"amount": 5}}
    first = client.post(url, json=body, headers={"Idempotency-Key": "pay-1"})
    original = expect_created(first)
    assert "idempotent-replayed" not in first.headers
    again = client.post(url, json=body, headers={"Idempotency-Key": "pay-1"})
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert next_seq(client, app.app_id) == original["seq"] + 1


def test_the_same_key_with_another_body_is_a_conflict(app: Tenant, client: httpx.Client) -> None:
    url = events_url(app.app_id)
    expect_created(
        client.post(url, json={"action": "pay.once"}, headers={"Idempotency-Key": "pay-2"})
    )
    before = next_seq(client, app.app_id)
    for body in ({"action": "pay.twice"}, {"action": "pay.once", "metadata": {"x": 1}}):
        response = client.post(url, json=body, headers={"Idempotency-Key": "pay-2"})
        expect_problem(response, 409, "idempotency_conflict")
    # The batch route with the same key is another request, not a replay.
    response = client.post(batch_url(app.app_id), json={"events": [{"action": "pay.once"}]},
                           headers={"Idempotency-Key": "pay-2"})  # fmt: skip
    assert response.status_code in {201, 409}
    assert "idempotent-replayed" not in response.headers
    if response.status_code == 201:
        before += 1
    assert next_seq(client, app.app_id) == before + 1


def test_other_keys_and_other_apps_are_independent(
    server: Server, app: Tenant, other: Tenant, client: httpx.Client
) -> None:
    body = {"action": "pay.once"}
    a = expect_created(
        client.post(events_url(app.app_id), json=body, headers={"Idempotency-Key": "k3"})
    )
    b = expect_created(
        client.post(events_url(app.app_id), json=body, headers={"Idempotency-Key": "k4"})
    )
    assert b["id"] != a["id"]
    with server.client(other.key) as stranger:
        c = stranger.post(events_url(other.app_id), json=body, headers={"Idempotency-Key": "k3"})
    assert "idempotent-replayed" not in c.headers
    assert expect_created(c)["app_id"] == other.app_id


def test_batch_idempotency(app: Tenant, client: httpx.Client) -> None:
    url, body = batch_url(app.app_id), {"events": [{"action": "b.one"}, {"action": "b.two"}]}
    first = client.post(url, json=body, headers={"Idempotency-Key": "batch-1"})
    assert first.status_code == 201
    seqs = [e["seq"] for e in first.json()["events"]]
    again = client.post(url, json=body, headers={"Idempotency-Key": "batch-1"})
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    changed = {"events": [{"action": "b.one"}]}
    expect_problem(client.post(url, json=changed, headers={"Idempotency-Key": "batch-1"}), 409,
                   "idempotency_conflict")  # fmt: skip
    assert next_seq(client, app.app_id) == seqs[-1] + 1


def test_concurrent_requests_with_one_key_make_one_entry(
    server: Server, app: Tenant, client: httpx.Client
) -> None:
    barrier = threading.Barrier(12)

    def send(_: int) -> httpx.Response:
        with server.client(app.key) as own:
            barrier.wait()
            return own.post(events_url(app.app_id), json={"action": "race.once"},
                            headers={"Idempotency-Key": "race-1"})  # fmt: skip

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(send, range(12)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    fresh = [r for r in responses if "idempotent-replayed" not in r.headers]
    assert len(fresh) == 1
    assert next_seq(client, app.app_id) == responses[0].json()["seq"] + 1


@pytest.mark.parametrize("key", ["k" * 256, "bad\tkey"])
def test_bad_idempotency_keys_are_refused(app: Tenant, client: httpx.Client, key: str) -> None:
    response = client.post(events_url(app.app_id), json={"action": "a"},
                           headers={"Idempotency-Key": key})  # fmt: skip
    expect_problem(response, 400, "invalid_request")


# --- concurrency -------------------------------------------------------------------------


def test_concurrent_writers_get_gapless_seqs(server: Server, tenant: Tenant) -> None:
    def worker(n: int) -> list[dict[str, Any]]:
        with server.client(tenant.key) as own:
            return [write_one(own, tenant.app_id, {"action": f"w{n}.i{i}"}) for i in range(25)]

    with ThreadPoolExecutor(20) as pool:
        results = [entry for batch in pool.map(worker, range(20)) for entry in batch]
    assert sorted(e["seq"] for e in results) == list(range(500))
    assert len({e["id"] for e in results}) == 500
    by_seq = sorted(results, key=lambda e: e["seq"])
    assert [e["time"] for e in by_seq] == sorted(e["time"] for e in by_seq)
    # Each writer's own entries keep the order it wrote them in.
    for n in range(20):
        mine = [e["seq"] for e in results if e["action"].startswith(f"w{n}.")]
        assert mine == sorted(mine)
    with server.client(tenant.key) as own:
        assert next_seq(own, tenant.app_id) == 500


# --- the database itself refuses changes -------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Tenant]]:
    """A SQLite server and app of its own: the test speaks SQLite's SQL to its file.

    The PostgreSQL triggers are tested the same way, in their dialect, in test_postgres.py.
    """
    srv = Server(tmp_path_factory.mktemp("guarded")).start()
    try:
        yield srv, srv.new_app("guarded")
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET action = 'forged' WHERE app_id = :app",
        "UPDATE events SET entry = x'00' WHERE app_id = :app AND seq = 0",
        "DELETE FROM events WHERE app_id = :app",
        "DELETE FROM events WHERE app_id = :app AND seq = (SELECT max(seq) FROM events "
        "WHERE app_id = :app)",
        "UPDATE tree_tiles SET hashes = zeroblob(length(hashes)) WHERE app_id = :app",
        # The log's only tile is partial, and no wider one extends it (see test_tree_tiles.py).
        "DELETE FROM tree_tiles WHERE app_id = :app",
    ],
)
def test_the_database_refuses_updates_and_deletes(
    sqlite_guarded: tuple[Server, Tenant], statement: str
) -> None:
    server, app = sqlite_guarded
    client = server.client(app.key)
    for _ in range(3):
        write_one(client, app.app_id, {"action": "db.guarded"})
    database = sqlite3.connect(server.data_dir / "trailkeep.db", timeout=30)
    try:
        count = "SELECT count(*) FROM {} WHERE app_id = :app"
        before = [database.execute(count.format(t), {"app": app.app_id}).fetchone()[0]
                  for t in ("events", "tree_tiles")]  # fmt: skip
        assert before[0] > 0
        with pytest.raises(sqlite3.DatabaseError, match="trailkeep"):
            database.execute(statement, {"app": app.app_id})
        database.rollback()
        after = [database.execute(count.format(t), {"app": app.app_id}).fetchone()[0]
                 for t in ("events", "tree_tiles")]  # fmt: skip
        assert after == before
    finally:
        database.rollback()
        database.close()
    write_one(client, app.app_id, {"action": "db.still.writable"})
    client.close()


# --- system routes -----------------------------------------------------------------------


def test_healthz(server: Server) -> None:
    response = httpx.get(f"{server.url}/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples matching the labels."""
    total, found = 0.0, False
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        pairs = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        if all(pairs.get(k) == v for k, v in labels.items()):
            total, found = total + float(match.group(4)), True
    assert found, f"no sample of {name} {labels}"
    return total


def test_metrics(server: Server, app: Tenant, client: httpx.Client) -> None:
    before = httpx.get(f"{server.url}/metrics").text
    write_one(client, app.app_id)
    client.post(batch_url(app.app_id), json={"events": [{"action": "m.a"}, {"action": "m.b"}]})
    post_bytes(client, events_url(app.app_id), b"{")
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    appended = "trailkeep_entries_appended_total"
    assert metric(after, appended) >= metric(before, appended) + 3
    assert metric(after, "trailkeep_commit_batch_entries_count") >= 2
    assert metric(after, "trailkeep_commit_batch_entries_bucket", le="+Inf") >= 2
    assert metric(after, "trailkeep_commit_seconds_count") >= 2
    assert metric(after, "trailkeep_commit_seconds_sum") > 0
    route = "/v1/apps/{app_id}/events"
    requests = "trailkeep_http_requests_total"
    assert metric(after, requests, method="POST", route=route, status="201") >= 1
    assert metric(after, requests, method="POST", route=route, status="400") >= 1
    assert metric(after, requests, method="POST", route=route + "/batch", status="201") >= 1


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow a schema's $ref (a JSON pointer from the document's root), as OpenAPI tools do."""
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            assert part in node, f"unresolvable $ref {ref}"
            node = node[part]
        schema = node
    return schema


def nullable(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of an ``anyOf: [X, null]`` schema."""
    schema = resolve(document, schema)
    branches = [b for b in schema.get("anyOf", [schema]) if b.get("type") != "null"]
    assert len(branches) == 1
    return resolve(document, branches[0])


@pytest.fixture(scope="module")
def openapi(server: Server) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def body_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    post = document["paths"][path]["post"]
    assert post["requestBody"]["required"] is True
    return resolve(document, post["requestBody"]["content"]["application/json"]["schema"])


def check_event_schema(document: dict[str, Any], schema: dict[str, Any]) -> None:
    props = schema["properties"]
    assert schema["required"] == ["action"]
    assert schema.get("additionalProperties") is False
    action = resolve(document, props["action"])
    assert action["pattern"] == ACTION_PATTERN
    assert action["maxLength"] == 128
    assert action["minLength"] == 1
    assert nullable(document, props["target_type"])["maxLength"] == 64
    assert nullable(document, props["target_id"])["maxLength"] == 256
    for name in ("project", "server", "request_id"):
        assert nullable(document, props[name])["maxLength"] == 128
    assert nullable(document, props["metadata"])["type"] == "object"
    assert "10,240" in props["metadata"].get("description", "")
    assert not {"actor", "time", "seq", "kind", "id"} & set(props)


def test_openapi_documents_the_write_routes(openapi: dict[str, Any]) -> None:
    single = body_schema(openapi, "/v1/apps/{app_id}/events")
    check_event_schema(openapi, single)
    batch = body_schema(openapi, "/v1/apps/{app_id}/events/batch")
    events = resolve(openapi, batch["properties"]["events"])
    assert events["maxItems"] == 1000
    assert events["minItems"] == 1
    check_event_schema(openapi, resolve(openapi, events["items"]))
    for path in ("/v1/apps/{app_id}/events", "/v1/apps/{app_id}/events/batch"):
        post = openapi["paths"][path]["post"]
        headers = {p["name"].lower(): p for p in post["parameters"] if p["in"] == "header"}
        assert "idempotency-key" in headers
        assert {"201", "400", "401", "404", "409", "413", "429"} <= set(post["responses"])
    assert set(openapi["paths"]["/v1/apps/{app_id}/events/{entry_id}"]) == {"get"}


def test_every_openapi_reference_resolves(openapi: dict[str, Any]) -> None:
    def walk(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    refs = list(walk(openapi))
    assert refs
    for ref in refs:
        resolve(openapi, ref)
