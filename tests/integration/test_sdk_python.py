"""The Python SDK (issue 6) against a real `trailkeep serve` over HTTP.

Faults are real too: a TCP proxy between the SDK and the server drops a response after the
server committed the write, answers 503, or holds a response; rate limits come from a server
started with a low ``TRAILKEEP_RATE_LIMIT``. The middlewares run under real servers (uvicorn,
wsgiref) on loopback ports, and every example of docs/sdk.md is executed.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

import httpx
import jwt
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.integration.http_api import checkpoint_verifier, export_lines, leaf_hash, list_all
from tests.servers import Server, Tenant, free_port
from tests.signers import new_signer
from trailkeep.log.notes import Checkpoint, NoteSigner
from trailkeep.sdk import (
    AsyncAuditBuffer,
    AsyncClient,
    AuditBuffer,
    Client,
    ConfigurationError,
    ConnectionFailed,
    Entry,
    Event,
    Forbidden,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ProvenEntry,
    RateLimited,
    RetryEvent,
    RetryPolicy,
    ServerError,
    TrailkeepASGIMiddleware,
    TrailkeepWSGIMiddleware,
    Unauthenticated,
    VerificationError,
    bind,
)

pytestmark = pytest.mark.timeout(120)

FAST = RetryPolicy(backoff=0.01, max_backoff=0.05)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"
# What the SDK does is the same whatever database serves it; the tests of its API and of its
# retries run on both backends, those of its pure client-side parts (buffers, middlewares,
# docs) on SQLite only, to keep the suite's time down.
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], scope="session")


@pytest.fixture
def sdk(server: Server, tenant: Tenant) -> Iterator[Client]:
    """A sync client for a fresh app, able to mint sessions."""
    with Client(server.url, tenant.app_id, tenant.key, session_secret=tenant.session_secret) as c:
        yield c


@pytest.fixture
def raw(server: Server, tenant: Tenant) -> Iterator[httpx.Client]:
    """Plain HTTP with the app's key, to read back what the SDK did, independently."""
    with server.client(tenant.key) as c:
        yield c


def stored(raw: httpx.Client, tenant: Tenant) -> list[dict[str, Any]]:
    """Every entry of the app, oldest first, as the HTTP API returns it."""
    return list(reversed(list_all(raw, tenant.app_id, {"limit": 1000})))


def as_json(entry: Entry) -> dict[str, Any]:
    """The JSON object the server sent for an SDK entry."""
    return dict(entry.raw)


def wait_until(check: Callable[[], bool], within: float = 20.0) -> None:
    """Poll until ``check()`` holds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


class Retries(list[RetryEvent]):
    """Collects the retries a client announces through ``on_retry``."""

    def __call__(self, event: RetryEvent) -> None:
        self.append(event)


class CountingTransport(httpx.HTTPTransport):
    """A real HTTP transport that notes every request path it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return super().handle_request(request)


# --- writing -------------------------------------------------------------------------------


def test_log_returns_the_stored_entry(sdk: Client, raw: httpx.Client, tenant: Tenant) -> None:
    entry = sdk.audit.log(
        "order.refund", target_type="order", target_id="ord_9",
        metadata={"amount": 49.99, "reason": "damaged"}, project="checkout", server="web-3",
        request_id="req-1",
    )  # fmt: skip
    [back] = stored(raw, tenant)
    assert as_json(entry) == back
    assert bytes.fromhex(entry.leaf_hash) == leaf_hash(back)
    assert (entry.seq, entry.action, entry.app_id) == (0, "order.refund", tenant.app_id)
    assert entry.time == datetime.fromisoformat(back["time"].replace("Z", "+00:00"))
    assert (entry.actor.type, entry.actor.id) == ("api_key", tenant.key_id)
    assert (entry.target and entry.target.type, entry.target and entry.target.id) == (
        "order",
        "ord_9",
    )
    assert entry.metadata == {"amount": 49.99, "reason": "damaged"}
    assert (entry.context.project, entry.context.server, entry.context.request_id) == (
        "checkout",
        "web-3",
        "req-1",
    )
    assert entry.context.forwarded_by is None


def test_a_forwarded_session_makes_the_end_user_the_actor(
    sdk: Client, tenant: Tenant, server: Server
) -> None:
    token = sdk.sessions.mint("user_42", role="member", name="Ada", ttl=600)
    claims = jwt.decode(token, tenant.session_secret, algorithms=["HS256"], audience=tenant.app_id)
    assert (claims["sub"], claims["role"], claims["name"]) == ("user_42", "member", "Ada")
    assert claims["exp"] - claims["iat"] == 600
    entry = sdk.audit.log(
        "doc.share", session=token, client_ip="203.0.113.7", user_agent="Mozilla/5.0 (X11)"
    )
    assert (entry.actor.type, entry.actor.id, entry.actor.name, entry.actor.role) == (
        "user", "user_42", "Ada", "member",
    )  # fmt: skip
    assert (entry.context.ip, entry.context.user_agent) == ("203.0.113.7", "Mozilla/5.0 (X11)")
    assert entry.context.forwarded_by == tenant.key_id
    assert entry.kind == "user"
    with bind(session=sdk.sessions.mint("owner_1", role="owner"), client_ip="198.51.100.2"):
        bound = sdk.audit.log("settings.change")
        explicit = sdk.audit.log("settings.change", client_ip="198.51.100.3")
    assert (bound.actor.id, bound.kind, bound.context.ip) == ("owner_1", "admin", "198.51.100.2")
    assert (explicit.actor.id, explicit.context.ip) == ("owner_1", "198.51.100.3")
    outside = sdk.audit.log("settings.change")
    assert (outside.actor.id, outside.context.forwarded_by) == (tenant.key_id, None)


def test_log_many_appends_one_batch(sdk: Client, raw: httpx.Client, tenant: Tenant) -> None:
    first = sdk.audit.log("probe.first")
    entries = sdk.audit.log_many([
        Event("user.login", metadata={"n": 1}),
        {"action": "order.create", "target_type": "order", "target_id": "o2"},
        Event("user.logout", project="web"),
    ])  # fmt: skip
    assert [e.seq for e in entries] == [first.seq + 1, first.seq + 2, first.seq + 3]
    assert [e.action for e in entries] == ["user.login", "order.create", "user.logout"]
    assert [as_json(e) for e in entries] == stored(raw, tenant)[1:]
    with pytest.raises(InvalidRequest) as refused:
        sdk.audit.log_many([Event("ok.one"), Event("not valid!")])
    assert refused.value.local
    assert refused.value.detail.startswith("events[1].action")
    assert len(stored(raw, tenant)) == 4


# --- reading -------------------------------------------------------------------------------


def test_list_follows_cursors_and_filters(sdk: Client, server: Server, tenant: Tenant) -> None:
    events = [
        Event(["user.login", "order.refund", "order.create"][i % 3], metadata={"i": i})
        for i in range(23)
    ]
    # Two batches: the entries of one batch share their time, the second batch's time is later.
    written = sdk.audit.log_many(events[:10]) + sdk.audit.log_many(events[10:])
    sent_paths = CountingTransport()
    with Client(server.url, tenant.app_id, tenant.key, transport=sent_paths) as counted:
        listed = list(counted.audit.list(page_size=5))
    assert [e.id for e in listed] == [e.id for e in reversed(written)]
    assert sent_paths.paths.count(f"/v1/apps/{tenant.app_id}/events") == 5
    orders = list(sdk.audit.list(action_prefix="order.", page_size=4))
    assert [e.seq for e in orders] == [e.seq for e in reversed(written) if e.action != "user.login"]
    both = list(sdk.audit.list(action=["user.login", "order.create"], since=written[10].time))
    assert [e.seq for e in both] == [
        e.seq for e in reversed(written[10:]) if e.action in ("user.login", "order.create")
    ]
    page = sdk.audit.page(limit=20)
    assert len(page.data) == 20
    assert page.next_cursor is not None
    rest = sdk.audit.page(limit=20, cursor=page.next_cursor)
    assert [e.seq for e in rest.data] == [2, 1, 0]
    assert rest.next_cursor is None
    stats = sdk.audit.stats("action")
    assert stats.as_dict() == {"user.login": 8, "order.refund": 8, "order.create": 7}
    with pytest.raises(InvalidRequest):
        sdk.audit.list(actor_id="x")  # type: ignore[call-arg]
    with pytest.raises(InvalidRequest):
        sdk.audit.list(since=datetime(2026, 1, 1))  # naive: which timezone?


def test_get_with_proof_and_verify_entry(sdk: Client, server: Server) -> None:
    entries = sdk.audit.log_many([Event(f"t.e{i}") for i in range(7)])
    entry = sdk.audit.get(entries[3].id)
    assert entry == entries[3]
    proven = sdk.audit.get(entries[3].id, proof=True)
    assert isinstance(proven, ProvenEntry)
    assert proven.entry == entries[3]
    assert proven.proof.seq == 3
    assert proven.proof.tree_size == proven.checkpoint.size >= 4
    assert proven.checkpoint.app_id == sdk.app
    key = checkpoint_verifier(server)
    for target in (entries[3], proven, entries[6]):
        verified = sdk.verify_entry(target)
        assert verified.key_name == key.name
        assert verified.checkpoint.size > verified.entry.seq
    assert sdk.checkpoint_key() == key.verifier_key()
    with pytest.raises(NotFound) as missing:
        sdk.audit.get("evt_" + "0" * 32)
    assert (missing.value.status, missing.value.code) == (404, "not_found")


def test_tampered_entries_fail_verification(sdk: Client, server: Server, tenant: Tenant) -> None:
    entry = sdk.audit.log("order.refund", metadata={"amount": 10})
    sdk.audit.log("order.refund", metadata={"amount": 20})
    altered = dataclasses.replace(entry, metadata={"amount": 1000})
    with pytest.raises(VerificationError) as caught:
        sdk.verify_entry(altered)
    assert caught.value.reason == "leaf_hash"
    # An attacker who also rewrites the leaf hash: the entry is then not in the signed tree.
    forged_raw = {**entry.raw, "metadata": {"amount": 1000}}
    forged_raw["leaf_hash"] = leaf_hash(forged_raw).hex()
    forged = Entry.from_json(forged_raw)
    with pytest.raises(VerificationError) as caught:
        sdk.verify_entry(forged)
    assert caught.value.reason == "inclusion"
    wait_until(lambda: sdk.checkpoint().size >= 2)  # so that the audit path is not empty
    proven = sdk.audit.get(entry.id, proof=True)
    assert len(proven.proof.path) >= 1
    other_sibling = dataclasses.replace(proven.proof, path=("00" * 32, *proven.proof.path[1:]))
    with pytest.raises(VerificationError) as caught:
        sdk.verify_entry(dataclasses.replace(proven, proof=other_sibling))
    assert caught.value.reason == "inclusion"
    # A checkpoint signed by another key (a pinned key that is not the server's).
    impostor = new_signer(checkpoint_verifier(server).name)
    with Client(server.url, tenant.app_id, tenant.key,
                verifier_key=impostor.verifier_key()) as pinned_wrong:  # fmt: skip
        with pytest.raises(VerificationError) as caught:
            pinned_wrong.verify_entry(entry)
        assert caught.value.reason == "signature"
        with pytest.raises(VerificationError):
            pinned_wrong.checkpoint()


def test_a_pinned_key_is_never_fetched(server: Server, tenant: Tenant) -> None:
    sent = CountingTransport()
    pinned = checkpoint_verifier(server).verifier_key()
    with Client(server.url, tenant.app_id, tenant.key, verifier_key=pinned, transport=sent) as c:
        c.verify_entry(c.audit.log("t.pinned"))
        c.checkpoint()
    assert "/v1/checkpoint-key" not in sent.paths
    fetched = CountingTransport()
    with Client(server.url, tenant.app_id, tenant.key, transport=fetched) as c:
        c.verify_entry(c.audit.log("t.fetched"))
        c.verify_entry(c.audit.log("t.fetched"))
    assert fetched.paths.count("/v1/checkpoint-key") == 1


class ForkingTransport(httpx.HTTPTransport):
    """A man in the middle holding the signing key: it can replace the served checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.forged: str | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.forged is not None and request.url.path.endswith("/checkpoint"):
            return httpx.Response(200, text=self.forged)
        return super().handle_request(request)


def test_checkpoints_must_extend_each_other(server: Server, tenant: Tenant) -> None:
    mitm = ForkingTransport()
    with Client(server.url, tenant.app_id, tenant.key, transport=mitm) as c:
        c.audit.log_many([Event(f"t.c{i}") for i in range(3)])
        first = c.checkpoint()
        c.audit.log_many([Event(f"t.d{i}") for i in range(5)])
        wait_until(lambda: c.checkpoint().size >= first.size + 5)
        # Even holding the server's key, a rewritten log (same size, another root) is caught.
        signer = NoteSigner.from_signer_key((server.data_dir / "signing.key").read_text().strip())
        latest = c.checkpoint()
        mitm.forged = signer.sign(Checkpoint(latest.origin, latest.size, b"\x07" * 32).to_text())
        with pytest.raises(VerificationError) as caught:
            c.checkpoint()
        assert caught.value.reason == "consistency"
        mitm.forged = signer.sign(
            Checkpoint(latest.origin, latest.size + 1, b"\x07" * 32).to_text()
        )
        with pytest.raises(VerificationError) as caught:
            c.checkpoint()
        assert caught.value.reason in ("consistency", "malformed")


def test_export_streams_lines_and_csv_records(
    sdk: Client, raw: httpx.Client, tenant: Tenant
) -> None:
    sdk.audit.log("order.create", target_type="order", target_id='line\r\nbreak, "quoted"')
    odd = sdk.sessions.mint("user_9", name="Ada\nLovelace")
    sdk.audit.log("user.login", session=odd, metadata={"note": "two\nlines"})
    sdk.audit.log_many([Event("order.refund", metadata={"i": i}) for i in range(4)])
    lines = list(sdk.audit.export())
    assert [line.encode() for line in lines] == export_lines(raw, tenant.app_id, {})
    assert [json.loads(line)["seq"] for line in lines] == list(range(6))
    records = list(sdk.audit.export(format="csv", action_prefix="order."))
    params = {"format": "csv", "action_prefix": "order."}
    answer = raw.get(f"/v1/apps/{tenant.app_id}/export", params=params)
    expected = list(csv.reader(io.StringIO(answer.text, newline="")))
    assert list(csv.reader(records)) == expected
    assert len(records) == len(expected) == 1 + 5
    # Controls never reach a CSV raw: they are shown as escapes (docs/security.md).
    assert expected[1][10] == 'line\\x0d\\x0abreak, "quoted"'
    everyone = list(csv.reader(sdk.audit.export(format="csv")))
    assert everyone[2][7] == "Ada\\x0aLovelace"
    assert [e.seq for e in sdk.audit.export_entries(action="order.refund")] == [2, 3, 4, 5]


# --- errors --------------------------------------------------------------------------------


def test_errors_are_typed(server: Server, tenant: Tenant, sdk: Client) -> None:
    with (
        Client(server.url, tenant.app_id, "tk_nope_nope", retry=FAST) as bad,
        pytest.raises(Unauthenticated) as caught,
    ):
        bad.audit.log("t.x")
    assert (caught.value.code, caught.value.status, caught.value.local) == (
        "unauthenticated", 401, False,
    )  # fmt: skip
    assert caught.value.detail == "the API key is not valid"
    write_only = server.new_key(tenant.app_id, "events:write").key
    with Client(server.url, tenant.app_id, write_only) as writer, pytest.raises(Forbidden) as no:
        list(writer.audit.list())
    assert (no.value.code, no.value.status) == ("forbidden", 403)
    with Client(server.url, "app_doesnotexist", tenant.key) as elsewhere, pytest.raises(NotFound):
        elsewhere.audit.log("t.x")
    sdk.audit.log("t.once", idempotency_key="fixed-key-1")
    with pytest.raises(IdempotencyConflict) as conflict:
        sdk.audit.log("t.other", idempotency_key="fixed-key-1")
    assert conflict.value.status == 409
    big = {"blob": "x" * 20_000}
    with pytest.raises(PayloadTooLarge) as too_big:
        sdk.audit.log("t.big", metadata=big)
    assert (too_big.value.status, too_big.value.local) == (413, False)
    sent = CountingTransport()
    with Client(server.url, tenant.app_id, tenant.key, metadata_max_bytes=10_240,
                transport=sent) as strict:  # fmt: skip
        with pytest.raises(PayloadTooLarge) as local:
            strict.audit.log("t.big", metadata=big)
        assert local.value.local
        for action, extra in (("bad action!", {}), ("t.x", {"target_type": "order"}),
                              ("t.x", {"metadata": {"n": float("nan")}})):  # fmt: skip
            with pytest.raises(InvalidRequest) as refused:
                strict.audit.log(action, **extra)
            assert (refused.value.status, refused.value.local) == (400, True)
        with pytest.raises(InvalidRequest):
            strict.audit.log_many([{"action": "t.x", "actor": "someone else"}])
    assert sent.paths == []
    no_secret = Client(server.url, tenant.app_id, tenant.key)
    with pytest.raises(ConfigurationError):
        no_secret.sessions.mint("user_1")
    no_secret.close()
    with pytest.raises(ConfigurationError):
        Client("ftp://example", tenant.app_id, tenant.key)


def test_an_unreachable_server_raises_after_the_retries() -> None:
    retries = Retries()
    dead = f"http://127.0.0.1:{free_port()}"
    with (
        Client(dead, "app_x", "tk_a_b", retry=FAST, on_retry=retries) as c,
        pytest.raises(ConnectionFailed) as caught,
    ):
        c.audit.log("t.x")
    assert caught.value.status is None
    assert "after 6 attempts" in caught.value.detail
    assert [r.attempt for r in retries] == [1, 2, 3, 4, 5]
    assert {r.status for r in retries} == {None}
    assert len({r.idempotency_key for r in retries}) == 1


# --- retries through a faulty network ------------------------------------------------------


class FaultyProxy:
    """A TCP proxy to the server; each new connection takes the next scripted fault.

    ``drop``: forward the request, wait for the server's answer (so the write is committed),
    then close the client's connection without answering. ``503``: answer 503 without
    forwarding. ``hold``: forward, then hold the answer until :attr:`release` is set.
    """

    def __init__(self, upstream_url: str) -> None:
        self.upstream = ("127.0.0.1", int(urlsplit(upstream_url).port or 80))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.faults: deque[str] = deque()
        self.heads: list[bytes] = []
        self.release = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def idempotency_keys(self) -> list[str]:
        """The Idempotency-Key of the first request on each connection, in order."""
        found = (re.search(rb"(?im)^idempotency-key: *(\S+)", head) for head in self.heads)
        return [m.group(1).decode() for m in found if m]

    def close(self) -> None:
        self.release.set()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            fault = self.faults.popleft() if self.faults else "pass"
            threading.Thread(target=self._serve, args=(conn, fault), daemon=True).start()

    def _serve(self, client: socket.socket, fault: str) -> None:
        with client:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = client.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            while length and len(body) < int(length.group(1)):
                body += client.recv(65536)
            self.heads.append(head)
            if fault == "503":
                problem = b'{"code":"unavailable","status":503,"detail":"try again"}'
                client.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nConnection: close\r\n"
                    b"Content-Type: application/problem+json\r\n"
                    b"Content-Length: " + str(len(problem)).encode() + b"\r\n\r\n" + problem
                )
                return
            # One request per connection, so each retry comes on a new one and meets the next fault.
            lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
            head = b"\r\n".join([*lines, b"Connection: close"])
            with socket.create_connection(self.upstream) as upstream:
                upstream.sendall(head + b"\r\n\r\n" + body)
                answer = upstream.recv(65536)
                if fault == "drop":
                    return
                if fault == "hold":
                    self.release.wait(60)
                while answer:
                    client.sendall(answer)
                    answer = upstream.recv(65536)


@pytest.fixture
def proxy(server: Server) -> Iterator[FaultyProxy]:
    """A faulty proxy in front of the shared server."""
    p = FaultyProxy(server.url)
    yield p
    p.close()


def test_a_dropped_response_is_retried_without_a_duplicate(
    proxy: FaultyProxy, tenant: Tenant, raw: httpx.Client
) -> None:
    retries = Retries()
    with Client(proxy.url, tenant.app_id, tenant.key, retry=FAST, on_retry=retries) as c:
        proxy.faults.extend(["drop"])
        entry = c.audit.log("order.refund", target_type="order", target_id="o1")
        proxy.faults.extend(["drop"])
        batch = c.audit.log_many([Event("t.b1"), Event("t.b2")])
    assert [(r.status, r.attempt) for r in retries] == [(None, 1), (None, 1)]
    keys = proxy.idempotency_keys()
    assert len(keys) == 4
    assert keys[0] == keys[1] == retries[0].idempotency_key
    assert keys[2] == keys[3] != keys[0]
    assert [e["id"] for e in stored(raw, tenant)] == [entry.id, batch[0].id, batch[1].id]
    assert [as_json(e) for e in (entry, *batch)] == stored(raw, tenant)


def test_a_5xx_is_retried(proxy: FaultyProxy, tenant: Tenant, raw: httpx.Client) -> None:
    retries = Retries()
    with Client(proxy.url, tenant.app_id, tenant.key, retry=FAST, on_retry=retries) as c:
        proxy.faults.extend(["503", "503"])
        entry = c.audit.log("t.after503")
        proxy.faults.extend(["503"] * 6)
        with pytest.raises(ServerError) as caught:
            c.audit.log("t.never")
    assert [r.status for r in retries] == [503, 503] + [503] * 5
    assert (caught.value.status, caught.value.code) == (503, "unavailable")
    assert [e["id"] for e in stored(raw, tenant)] == [entry.id]


def test_429_is_retried_after_retry_after(fresh_server: Server) -> None:
    fresh_server.env["TRAILKEEP_RATE_LIMIT"] = "2/2 seconds"
    fresh_server.start()
    tenant = fresh_server.new_app()
    retries = Retries()
    timings: list[float] = []
    with Client(fresh_server.url, tenant.app_id, tenant.key, on_retry=retries) as c:
        written = []
        for i in range(20):
            started = time.monotonic()
            written.append(c.audit.log(f"t.r{i}"))
            timings.append(time.monotonic() - started)
            if retries:
                break
        limited = retries[0]
        assert (limited.status, limited.method) == (429, "POST")
        assert limited.delay >= 1.0  # the server's Retry-After is at least one second
        assert timings[-1] >= limited.delay
        assert [e.seq for e in written] == list(range(len(written)))
    impatient = Client(
        fresh_server.url, tenant.app_id, tenant.key, retry=RetryPolicy(max_retries=0)
    )
    refusals = []
    for i in range(3):  # two may pass in any two seconds; three quick ones cannot
        try:
            impatient.audit.log(f"t.impatient{i}")
        except RateLimited as exc:
            refusals.append(exc)
    impatient.close()
    assert refusals
    assert refusals[0].status == 429
    assert refusals[0].retry_after is not None
    assert refusals[0].retry_after >= 1


# --- the async twin ------------------------------------------------------------------------


def test_the_async_client_matches_the_sync_one(
    sdk: Client, proxy: FaultyProxy, tenant: Tenant, raw: httpx.Client
) -> None:
    token = sdk.sessions.mint("user_5", role="admin")
    retries = Retries()

    async def main() -> dict[str, Any]:
        async with AsyncClient(proxy.url, tenant.app_id, tenant.key, retry=FAST,
                               on_retry=retries) as client:  # fmt: skip
            proxy.faults.append("drop")
            one = await client.audit.log("t.one", target_type="t", target_id="1", session=token)
            proxy.faults.append("drop")
            many = await client.audit.log_many([Event("t.two"), {"action": "t.three"}])
            proven = await client.audit.get(one.id, proof=True)
            verified = await client.verify_entry(one)
            with pytest.raises(VerificationError):
                await client.verify_entry(dataclasses.replace(one, action="t.other"))
            with pytest.raises(NotFound):
                await client.audit.get("evt_missing")
            return {
                "written": [one, *many],
                "listed": [e async for e in client.audit.list(page_size=2)],
                "page": await client.audit.page(limit=1),
                "proven": proven,
                "verified": verified,
                "ndjson": [line async for line in client.audit.export()],
                "csv": [r async for r in client.audit.export(format="csv", action="t.one")],
                "entries": [e async for e in client.audit.export_entries(action="t.two")],
                "stats": await client.audit.stats("actor"),
                "checkpoint": await client.checkpoint(),
            }

    got = asyncio.run(main())
    written: list[Entry] = got["written"]
    assert [as_json(e) for e in written] == stored(raw, tenant)  # the drops made no duplicate
    assert [r.status for r in retries] == [None, None]
    assert (written[0].actor.id, written[0].context.forwarded_by) == ("user_5", tenant.key_id)
    assert got["listed"] == list(reversed(written))
    assert got["page"].data == (written[-1],)
    assert got["page"].next_cursor is not None
    assert got["proven"].entry == written[0]
    assert got["verified"].entry == written[0]
    assert got["ndjson"] == list(sdk.audit.export())
    assert list(csv.reader(got["csv"]))[1][6] == "user_5"
    assert [e.seq for e in got["entries"]] == [1]
    assert got["stats"].as_dict() == {"user_5": 1, tenant.key_id: 2}
    assert got["checkpoint"].app_id == tenant.app_id


# --- AuditBuffer ---------------------------------------------------------------------------


@SQLITE_ONLY
def test_the_buffer_sends_full_batches_then_flushes_the_rest(
    sdk: Client, raw: httpx.Client, tenant: Tenant
) -> None:
    with AuditBuffer(sdk, max_batch=10, flush_interval=60) as buffer:
        for i in range(25):
            assert buffer.log("t.buffered", metadata={"i": i})
        wait_until(lambda: buffer.stats().sent == 20)
        assert (buffer.stats().batches, buffer.stats().pending) == (2, 5)
        assert buffer.flush(timeout=30)
        assert buffer.stats() == dataclasses.replace(buffer.stats(), pending=0, sent=25, batches=3)
    entries = stored(raw, tenant)
    assert [e["metadata"]["i"] for e in entries] == list(range(25))
    assert {e["action"] for e in entries} == {"t.buffered"}


EXIT_SCRIPT = """
import os, sys
from trailkeep.sdk import AuditBuffer, Client

env = os.environ
client = Client(env["TRAILKEEP_URL"], env["TRAILKEEP_APP"], env["TRAILKEEP_KEY"])
buffer = AuditBuffer(client, flush_interval=3600)
for i in range(3):
    buffer.log("t.at_exit", metadata={"i": i})
print(buffer.stats().sent)
sys.exit(0)  # no flush, no close: the exit hook sends the queue
"""


@SQLITE_ONLY
def test_the_buffer_flushes_at_exit(
    server: Server, tenant: Tenant, raw: httpx.Client, tmp_path: Path
) -> None:
    script = tmp_path / "exit.py"
    script.write_text(EXIT_SCRIPT)
    env = {**os.environ, "TRAILKEEP_URL": server.url, "TRAILKEEP_APP": tenant.app_id,
           "TRAILKEEP_KEY": tenant.key}  # fmt: skip
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"  # nothing was sent before exit
    assert [e["metadata"]["i"] for e in stored(raw, tenant)] == [0, 1, 2]


@SQLITE_ONLY
def test_the_buffer_sends_by_time(sdk: Client, raw: httpx.Client, tenant: Tenant) -> None:
    buffer = AuditBuffer(sdk, max_batch=100, flush_interval=0.2)
    try:
        for i in range(3):
            buffer.log("t.timed", target_type="job", target_id=f"j{i}")
        wait_until(lambda: buffer.stats().sent == 3)  # no flush: the interval sent them
        assert buffer.stats().batches == 1
        assert [e["target"]["id"] for e in stored(raw, tenant)] == ["j0", "j1", "j2"]
    finally:
        assert buffer.close(timeout=30)


@SQLITE_ONLY
def test_the_buffer_keeps_each_end_user(sdk: Client, raw: httpx.Client, tenant: Tenant) -> None:
    ada, bob = sdk.sessions.mint("ada"), sdk.sessions.mint("bob")
    with AuditBuffer(sdk, flush_interval=60) as buffer:
        for who, token, ip in (("ada", ada, "203.0.113.1"), ("bob", bob, "203.0.113.2")) * 2:
            with bind(session=token, client_ip=ip, user_agent=f"{who}-browser"):
                buffer.log("doc.view", target_type="doc", target_id=who)
        buffer.log("job.run")  # no end user: the key acts
        assert buffer.flush(timeout=30)
        assert buffer.stats().batches == 3  # one request per end user
    seen = [(e["actor"]["id"], e["context"]["ip"], e["context"]["user_agent"], e["target"])
            for e in stored(raw, tenant)]  # fmt: skip
    assert sorted(seen[:4], key=lambda s: s[0]) == [
        ("ada", "203.0.113.1", "ada-browser", {"type": "doc", "id": "ada"}),
        ("ada", "203.0.113.1", "ada-browser", {"type": "doc", "id": "ada"}),
        ("bob", "203.0.113.2", "bob-browser", {"type": "doc", "id": "bob"}),
        ("bob", "203.0.113.2", "bob-browser", {"type": "doc", "id": "bob"}),
    ]
    assert seen[4][0] == tenant.key_id
    assert seen[4][2] is not None
    assert seen[4][2].startswith("trailkeep-python/")


@SQLITE_ONLY
def test_a_full_buffer_reports_every_drop(
    proxy: FaultyProxy, tenant: Tenant, raw: httpx.Client
) -> None:
    drops: list[tuple[str, int]] = []
    proxy.faults.append("hold")
    with Client(proxy.url, tenant.app_id, tenant.key) as c:
        buffer = AuditBuffer(
            c, max_batch=50, max_queue=5, flush_interval=0.01,
            on_drop=lambda event, total: drops.append((event.action, total)),
        )  # fmt: skip
        try:
            buffer.log("t.first")
            wait_until(lambda: len(proxy.heads) == 1)  # the worker is stuck sending t.first
            accepted = [buffer.log(f"t.q{i}") for i in range(8)]
            assert accepted == [True] * 5 + [False] * 3
            assert drops == [("t.q5", 1), ("t.q6", 2), ("t.q7", 3)]
            assert buffer.dropped == 3
            proxy.release.set()
            assert buffer.flush(timeout=30)
        finally:
            assert buffer.close(timeout=30)
        assert buffer.stats() == dataclasses.replace(
            buffer.stats(), pending=0, sent=6, failed=0, dropped=3
        )
    assert [e["action"] for e in stored(raw, tenant)] == ["t.first"] + [f"t.q{i}" for i in range(5)]


@SQLITE_ONLY
def test_drops_without_a_callback_are_logged(sdk: Client, caplog: pytest.LogCaptureFixture) -> None:
    buffer = AuditBuffer(sdk)
    assert buffer.close(timeout=30)
    with caplog.at_level(logging.WARNING, logger="trailkeep.sdk"):
        assert buffer.log("t.late") is False
    assert buffer.dropped == 1
    assert any("'t.late' dropped (buffer closed)" in r.getMessage() for r in caplog.records)
    with pytest.raises(InvalidRequest):
        buffer.log("not an action")  # refused at once, not lost later in a batch


@SQLITE_ONLY
def test_a_refused_batch_loses_only_the_bad_entry(
    sdk: Client, raw: httpx.Client, tenant: Tenant
) -> None:
    failures: list[tuple[str, list[str]]] = []

    def on_error(exc: BaseException, events: Sequence[Event]) -> None:
        failures.append((getattr(exc, "code", ""), [e.action for e in events]))

    with AuditBuffer(sdk, flush_interval=60, on_error=on_error) as buffer:
        buffer.log("t.ok1")
        buffer.log("t.huge", metadata={"blob": "x" * 20_000})  # over the server's limit
        buffer.log("t.ok2")
        assert buffer.flush(timeout=30)
        assert (buffer.stats().sent, buffer.stats().failed) == (2, 1)
    assert failures == [("payload_too_large", ["t.huge"])]
    assert [e["action"] for e in stored(raw, tenant)] == ["t.ok1", "t.ok2"]


@SQLITE_ONLY
def test_the_async_buffer(server: Server, tenant: Tenant, raw: httpx.Client) -> None:
    async def main() -> tuple[int, int]:
        async with AsyncClient(server.url, tenant.app_id, tenant.key) as client:
            async with AsyncAuditBuffer(client, max_batch=4, flush_interval=60) as buffer:
                for i in range(10):
                    buffer.log("t.async", metadata={"i": i})
                await buffer.flush()
                first = buffer.stats().sent
                buffer.log("t.async", metadata={"i": 10})
            return first, buffer.stats().sent

    assert asyncio.run(main()) == (10, 11)
    assert [e["metadata"]["i"] for e in stored(raw, tenant)] == list(range(11))


# --- middlewares ---------------------------------------------------------------------------


def audit_app(client: AsyncClient, **options: Any) -> TrailkeepASGIMiddleware:
    """A Starlette app whose handler records a refund with one line, wrapped for the SDK."""
    audit = client.audit

    async def refund(request: Request) -> JSONResponse:
        order_id = request.path_params["order_id"]
        entry = await audit.log("order.refund", target_type="order", target_id=order_id)
        return JSONResponse(dict(entry.raw))

    app = Starlette(routes=[Route("/orders/{order_id}/refund", refund, methods=["POST"])])
    return TrailkeepASGIMiddleware(app, **options)


@contextmanager
def uvicorn_serving(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port, in a thread."""
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning",
                            lifespan="off")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started)
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(15)


def browser(source_ip: str) -> httpx.Client:
    """An HTTP client whose connections come from ``source_ip`` (any 127.x address is ours)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source_ip), timeout=30)


@SQLITE_ONLY
def test_the_asgi_middleware_forwards_the_end_user(
    server: Server, tenant: Tenant, sdk: Client
) -> None:
    token = sdk.sessions.mint("user_7", name="Grace", role="member")
    client = AsyncClient(server.url, tenant.app_id, tenant.key)
    with uvicorn_serving(audit_app(client)) as url, browser("127.0.0.5") as user:
        headers = {"Authorization": f"Bearer {token}", "User-Agent": "Firefox/140"}
        answer = user.post(f"{url}/orders/ord_1/refund", headers=headers)
        anonymous = user.post(f"{url}/orders/ord_2/refund", headers={"User-Agent": "curl/8"})
    assert answer.status_code == 200, answer.text
    entry = answer.json()
    assert entry["actor"] == {"type": "user", "id": "user_7", "name": "Grace", "role": "member"}
    assert entry["context"] == {"ip": "127.0.0.5", "user_agent": "Firefox/140",
                                "forwarded_by": tenant.key_id}  # fmt: skip
    assert entry["target"] == {"type": "order", "id": "ord_1"}
    assert anonymous.json()["actor"] == {"type": "api_key", "id": tenant.key_id}
    assert anonymous.json()["context"]["ip"] == "127.0.0.5"
    assert [e.id for e in sdk.audit.list()] == [anonymous.json()["id"], entry["id"]]


@SQLITE_ONLY
def test_the_asgi_middleware_reads_a_cookie_and_a_proxy_header(
    server: Server, tenant: Tenant, sdk: Client
) -> None:
    token = sdk.sessions.mint("user_8")

    async def main() -> list[dict[str, Any]]:
        async with AsyncClient(server.url, tenant.app_id, tenant.key) as client:
            app = audit_app(client, session_header=None, session_cookie="tk_session",
                            client_ip_header="X-Real-IP")  # fmt: skip
            transport = httpx.ASGITransport(app=app, client=("10.0.0.9", 5555))
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as web:
                answers = [
                    await web.post("/orders/o/refund", headers={
                        "Cookie": f"theme=dark; tk_session={token}", "X-Real-IP": "198.51.100.4",
                        "Authorization": "Bearer not-for-trailkeep"}),
                    await web.post("/orders/o/refund", headers={"X-Real-IP": "not an ip"}),
                ]  # fmt: skip
        return [a.json() for a in answers]

    with_cookie, bad_ip = asyncio.run(main())
    assert with_cookie["actor"]["id"] == "user_8"
    assert with_cookie["context"]["ip"] == "198.51.100.4"
    assert bad_ip["actor"]["id"] == tenant.key_id
    # An invalid address is not forwarded (the server would refuse the write): the entry then
    # holds the address the backend itself connected from, not the proxy's.
    assert bad_ip["context"]["ip"] == "127.0.0.1"


@SQLITE_ONLY
def test_the_host_apps_own_bearer_tokens_never_fail_its_requests(
    server: Server, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    # The host app authenticates its users with bearer tokens of its own: a JWT of its
    # identity provider, an opaque token, one with characters no header may carry further.
    foreign_jwt = jwt.encode({"sub": "u1", "aud": "my-api", "exp": int(time.time()) + 600},
                             "host-secret-" + "x" * 32, "HS256")  # fmt: skip
    tokens = [foreign_jwt, "opaque-token-123", "ghp_\u00e9t\u00e9"]

    async def main() -> list[httpx.Response]:
        async with AsyncClient(server.url, tenant.app_id, tenant.key) as client:
            transport = httpx.ASGITransport(app=audit_app(client), client=("10.0.0.9", 5555))
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as web:
                return [
                    await web.post("/orders/o1/refund", headers=[
                        (b"authorization", b"Bearer " + token.encode())])
                    for token in tokens
                ]  # fmt: skip

    with caplog.at_level(logging.WARNING, logger="trailkeep.sdk"):
        answers = asyncio.run(main())
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.json()["actor"] == {"type": "api_key", "id": tenant.key_id}
        assert answer.json()["context"]["ip"] == "10.0.0.9"
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "refused the session found in the request" in warned  # the foreign JWT
    assert "not a Trailkeep session" in warned  # the opaque tokens, never sent on
    # An explicitly given session is the caller's choice: a bad one still fails loudly.
    with Client(server.url, tenant.app_id, tenant.key) as sdk, pytest.raises(NotFound):
        sdk.audit.log("order.refund", session=foreign_jwt)


def wsgi_app(client: Client) -> TrailkeepWSGIMiddleware:
    """A plain WSGI app logging in its handler and while streaming its body."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        entry = client.audit.log("report.view", target_type="report",
                                 target_id=environ["PATH_INFO"].strip("/"))  # fmt: skip
        start_response("200 OK", [("Content-Type", "application/json")])

        def body() -> Iterator[bytes]:
            yield json.dumps(dict(entry.raw)).encode()
            later = client.audit.log("report.streamed")  # runs after `app` returned
            yield b"\n" + json.dumps(dict(later.raw)).encode()

        return body()

    return TrailkeepWSGIMiddleware(app)


class QuietHandler(WSGIRequestHandler):
    """wsgiref's handler without the access log on stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


@SQLITE_ONLY
def test_the_wsgi_middleware_forwards_the_end_user(
    server: Server, tenant: Tenant, sdk: Client
) -> None:
    token = sdk.sessions.mint("user_9", role="admin")
    web: WSGIServer = make_server("127.0.0.1", 0, wsgi_app(sdk), handler_class=QuietHandler)
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    try:
        with browser("127.0.0.6") as user:
            headers = {"Authorization": f"Bearer {token}", "User-Agent": "Edge"}
            answer = user.get(f"http://127.0.0.1:{web.server_port}/r42", headers=headers)
    finally:
        web.shutdown()
        web.server_close()
    first, streamed = (json.loads(line) for line in answer.text.splitlines())
    for entry in (first, streamed):
        assert entry["actor"] == {"type": "user", "id": "user_9", "role": "admin"}
        assert entry["context"]["ip"] == "127.0.0.6"
        assert entry["context"]["user_agent"] == "Edge"
    assert first["target"] == {"type": "report", "id": "r42"}
    outside = sdk.audit.log("t.outside")
    assert outside.actor.id == tenant.key_id  # nothing leaked out of the request


# --- docs/sdk.md ---------------------------------------------------------------------------


def python_examples() -> list[str]:
    """The ```python blocks of the Python section of docs/sdk.md."""
    text = DOCS.read_text()
    section = text.split("## Python SDK", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```$", section, flags=re.S | re.M)


def test_the_docs_have_the_examples() -> None:
    examples = python_examples()
    assert len(examples) >= 9
    text = DOCS.read_text()
    assert "## Browser SDK\n" in text
    assert "(sdk-browser.md)" in text
    for needed in ("audit.log(", "log_many(", "audit.list(", "proof=True", "verify_entry(",
                   "export(", "sessions.mint(", "AuditBuffer(", "TrailkeepASGIMiddleware",
                   "TrailkeepWSGIMiddleware", "verifier_key=", "audit.stream(",
                   "await client.audit.stream("):  # fmt: skip
        assert needed in text, needed


@SQLITE_ONLY
@pytest.mark.parametrize("index", range(len(python_examples())))
def test_a_docs_example_runs(index: int, server: Server, tenant: Tenant, tmp_path: Path) -> None:
    code = python_examples()[index]
    env = {
        **os.environ,
        "TRAILKEEP_URL": server.url,
        "TRAILKEEP_APP": tenant.app_id,
        "TRAILKEEP_KEY": tenant.key,
        "TRAILKEEP_SESSION_SECRET": tenant.session_secret,
        "TRAILKEEP_VERIFIER_KEY": checkpoint_verifier(server).verifier_key(),
    }
    script = tmp_path / f"example_{index}.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, f"example {index} failed:\n{code}\n{done.stderr}{done.stdout}"
    with Client(server.url, tenant.app_id, tenant.key) as check:
        assert next(check.audit.list(), None) is not None  # the example did record entries
