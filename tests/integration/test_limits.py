"""Limits over real HTTP (issue 2): the per-IP write rate limit, body sizes, the metadata size.

The rate-limit tests start servers of their own (the shared one has a limit high enough never
to bite); the size tests use the shared server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import rfc8785

from tests.integration.http_api import (
    batch_url,
    events_url,
    expect_created,
    expect_problem,
    log_size,
    next_seq,
    post_bytes,
)
from tests.servers import Server, Tenant

pytestmark = pytest.mark.timeout(120)

MIB = 1 << 20


def rate_headers(response: httpx.Response) -> tuple[int, int]:
    """(limit, remaining) from the RateLimit-* headers that every write carries."""
    headers = response.headers
    assert 0 <= int(headers["ratelimit-reset"]) <= 60, headers["ratelimit-reset"]
    return int(headers["ratelimit-limit"]), int(headers["ratelimit-remaining"])


def assert_limited(response: httpx.Response, limit: int) -> None:
    """A 429 `rate_limited` with Retry-After and the RateLimit-* headers of a spent limit."""
    expect_problem(response, 429, "rate_limited")
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert rate_headers(response) == (limit, 0)


def start(srv: Server, rate: str, proxies: str | None = None) -> Tenant:
    """Configure and start a fresh server; return an app on it."""
    srv.env["TRAILKEEP_RATE_LIMIT"] = rate
    if proxies is not None:
        srv.env["TRAILKEEP_TRUSTED_PROXIES"] = proxies
    srv.start()
    return srv.new_app("limited")


def write_from(client: httpx.Client, app_id: str, client_ip: str) -> httpx.Response:
    """One write that claims, through X-Forwarded-For, to come from ``client_ip``."""
    return client.post(
        events_url(app_id), json={"action": "rl.xff"}, headers={"X-Forwarded-For": client_ip}
    )


# --- the per-IP rate limit ---------------------------------------------------------------


def test_the_default_limit_passes_200_writes_and_refuses_the_201st(fresh_server: Server) -> None:
    # No trusted proxies are configured: X-Forwarded-For, different on every request, must not
    # give the client a fresh limit (nor its address).
    tenant = start(fresh_server, "200/minute")
    with fresh_server.client(tenant.key) as client:
        appended = 0
        for i in range(200):
            spoof = {"X-Forwarded-For": f"203.0.113.{i % 250 + 1}"}
            if i % 4 == 3:  # a batch counts as one request, however many entries it holds
                items = [{"action": f"rl.b{i}.n{n}"} for n in range(3)]
                response = client.post(
                    batch_url(tenant.app_id), json={"events": items}, headers=spoof
                )
                assert response.status_code == 201, (i, response.text)
                seqs = [e["seq"] for e in response.json()["events"]]
                assert seqs == [appended, appended + 1, appended + 2]
                appended += 3
            else:
                response = client.post(
                    events_url(tenant.app_id), json={"action": "rl.one"}, headers=spoof
                )
                entry = expect_created(response)
                assert (entry["seq"], entry["context"]["ip"]) == (appended, "127.0.0.1")
                appended += 1
            assert rate_headers(response) == (200, 199 - i)
        assert appended == 300
        assert_limited(write_from(client, tenant.app_id, "198.51.100.1"), 200)
        assert_limited(client.post(events_url(tenant.app_id), json={"action": "rl.over"}), 200)
        over = {"events": [{"action": "rl.over"}]}
        assert_limited(client.post(batch_url(tenant.app_id), json=over), 200)
        # The limit is checked before the body is read or the credential looked at.
        with fresh_server.client() as anonymous:
            assert_limited(anonymous.post(events_url(tenant.app_id), content=b"{"), 200)
        # Reads are not limited, and the refused writes appended nothing.
        for _ in range(5):
            assert log_size(client, tenant.app_id) == 300
        newest = client.get(events_url(tenant.app_id), params={"limit": 1}).json()["data"][0]
        assert client.get(f"{events_url(tenant.app_id)}/{newest['id']}").status_code == 200
        assert client.get(events_url(tenant.app_id, "stats")).status_code == 200
    assert httpx.get(f"{fresh_server.url}/healthz").status_code == 200


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(
    fresh_server: Server,
) -> None:
    tenant = start(fresh_server, "5/minute", proxies="127.0.0.0/8")
    with fresh_server.client(tenant.key) as proxy:
        for i in range(5):
            response = write_from(proxy, tenant.app_id, "203.0.113.5")
            assert expect_created(response)["context"]["ip"] == "203.0.113.5"
            assert rate_headers(response) == (5, 4 - i)
        assert_limited(write_from(proxy, tenant.app_id, "203.0.113.5"), 5)
        # A client cannot dodge its limit by prepending addresses: the server walks the chain
        # from the right, past trusted proxies only, so this is still 203.0.113.5.
        assert_limited(write_from(proxy, tenant.app_id, "198.51.100.9, 203.0.113.5"), 5)
        assert_limited(write_from(proxy, tenant.app_id, "198.51.100.9, 203.0.113.5, 127.0.0.7"), 5)
        # Another client behind the same proxy is not affected.
        other = write_from(proxy, tenant.app_id, "198.51.100.9, 203.0.113.6")
        assert expect_created(other)["context"]["ip"] == "203.0.113.6"
        assert rate_headers(other) == (5, 4)
        # Nor is the proxy's own traffic (no X-Forwarded-For: the peer is the client).
        own = proxy.post(events_url(tenant.app_id), json={"action": "rl.own"})
        assert expect_created(own)["context"]["ip"] == "127.0.0.1"
        assert rate_headers(own) == (5, 4)
        assert log_size(proxy, tenant.app_id) == 7


# --- body sizes: refused before parsing --------------------------------------------------


@pytest.fixture(scope="module")
def app(server: Server) -> Tenant:
    """One app for the size tests."""
    return server.new_app("limits")


@pytest.fixture(scope="module")
def client(server: Server, app: Tenant) -> Iterator[httpx.Client]:
    """A client with the app's all-scopes key."""
    with server.client(app.key) as c:
        yield c


def padded(body: bytes, size: int) -> bytes:
    """``body`` followed by JSON whitespace, ``size`` bytes in all."""
    assert len(body) <= size
    return body + b" " * (size - len(body))


@pytest.mark.parametrize(
    ("batch", "limit"), [(False, MIB), (True, 16 * MIB)], ids=["single-1MiB", "batch-16MiB"]
)
def test_bodies_over_the_limit_are_413_before_parsing(
    app: Tenant, client: httpx.Client, batch: bool, limit: int
) -> None:
    url = batch_url(app.app_id) if batch else events_url(app.app_id)
    valid = b'{"events":[{"action":"size.ok"}]}' if batch else b'{"action":"size.ok"}'
    before = next_seq(client, app.app_id)
    # Invalid JSON at the limit is parsed (400); one byte more is never parsed (413, not 400).
    expect_problem(post_bytes(client, url, b"x" * limit), 400, "invalid_request")
    problem = expect_problem(post_bytes(client, url, b"x" * (limit + 1)), 413, "payload_too_large")
    assert f"{limit:,}" in problem["detail"]
    # The same without a Content-Length (chunked): counted while it streams in.
    chunks = (b"x" * 65_536 for _ in range(limit // 65_536 + 1))
    streamed = client.post(url, content=chunks, headers={"content-type": "application/json"})
    assert "content-length" not in streamed.request.headers
    expect_problem(streamed, 413, "payload_too_large")
    # A valid body padded with whitespace to exactly the limit is accepted; one byte more is not.
    accepted = post_bytes(client, url, padded(valid, limit))
    assert accepted.status_code == 201, accepted.text
    expect_problem(post_bytes(client, url, padded(valid, limit + 1)), 413, "payload_too_large")
    assert next_seq(client, app.app_id) == before + 2


def test_a_batch_may_be_larger_than_a_single_write(app: Tenant, client: httpx.Client) -> None:
    body = padded(b'{"events":[{"action":"size.big"}]}', 2 * MIB)
    expect_problem(post_bytes(client, events_url(app.app_id), body), 413, "payload_too_large")
    response = post_bytes(client, batch_url(app.app_id), body)
    assert response.status_code == 201, response.text


# --- the metadata limit: 10,240 bytes of canonical (RFC 8785) JSON ------------------------


def canonical_size(metadata: dict[str, Any]) -> int:
    """The size the limit counts, computed here with the reference JCS implementation."""
    return len(rfc8785.dumps(metadata))


BOUNDARY = [
    ("ascii", {"x": "a" * 10_232}, {"x": "a" * 10_233}),
    # "é" is 2 bytes of UTF-8: characters are not what is counted.
    ("two-byte", {"x": "\u00e9" * 5_116}, {"x": "\u00e9" * 5_116 + "a"}),
    ("numbers", {"n": [1] * 5_115 + [10]}, {"n": [1] * 5_115 + [100]}),
]


@pytest.mark.parametrize(("at", "over"), [c[1:] for c in BOUNDARY], ids=[c[0] for c in BOUNDARY])
def test_metadata_of_10240_canonical_bytes_passes_and_10241_fails(
    app: Tenant, client: httpx.Client, at: dict[str, Any], over: dict[str, Any]
) -> None:
    assert canonical_size(at) == 10_240
    assert canonical_size(over) == 10_241
    entry = expect_created(
        client.post(events_url(app.app_id), json={"action": "meta.edge", "metadata": at})
    )
    assert entry["metadata"] == at
    before = next_seq(client, app.app_id)
    problem = expect_problem(
        client.post(events_url(app.app_id), json={"action": "meta.over", "metadata": over}),
        413,
        "payload_too_large",
    )
    assert "metadata" in problem["detail"]
    assert next_seq(client, app.app_id) == before + 1


def test_the_limit_counts_the_canonical_form_not_the_bytes_sent(
    app: Tenant, client: httpx.Client
) -> None:
    metadata = {"b": "\u00e9" * 2_000, "a": "z" * 6_219, "c": 1.0}
    assert canonical_size(metadata) == 10_240
    # Escaped, indented and unordered: far more than 10,240 bytes on the wire, same metadata.
    sent = (
        b'{"action": "meta.loose",\n  "metadata": {\n    "c": 1.000,\n    "b": "'
        + b"\\u00e9" * 2_000
        + b'",\n    "a": "'
        + b"\\u007a" * 6_219
        + b'"\n  }\n}'
    )
    assert len(sent) > 40_000
    entry = expect_created(post_bytes(client, events_url(app.app_id), sent))
    assert entry["metadata"] == {"a": "z" * 6_219, "b": "\u00e9" * 2_000, "c": 1}
    bigger = sent.replace(b'"c": 1.000', b'"c": 10.00')
    assert canonical_size({**metadata, "c": 10}) == 10_241
    expect_problem(post_bytes(client, events_url(app.app_id), bigger), 413, "payload_too_large")


# --- the per-IP read limit ----------------------------------------------------------------


def test_reads_have_a_limit_of_their_own(fresh_server: Server) -> None:
    # Each read by a person appends an `audit.read` entry: without a limit of their own, reads
    # could flood the log. Every read route counts; writes keep their own limit.
    fresh_server.env["TRAILKEEP_READ_RATE_LIMIT"] = "6/minute"
    tenant = start(fresh_server, "1000/minute", proxies="127.0.0.0/8")
    with fresh_server.client(tenant.key) as client:
        entry = expect_created(client.post(events_url(tenant.app_id), json={"action": "r.one"}))
        reads = [
            (events_url(tenant.app_id), {}),
            (f"{events_url(tenant.app_id)}/{entry['id']}", {}),
            (f"{events_url(tenant.app_id)}/{entry['id']}", {"proof": "true"}),
            (events_url(tenant.app_id, "stats"), {}),
            (events_url(tenant.app_id, "export"), {}),
            (events_url(tenant.app_id, "proofs/inclusion"), {"seq": 0, "tree_size": 1}),
        ]
        for i, (url, params) in enumerate(reads):
            response = client.get(url, params=params)
            assert response.status_code == 200, (url, response.text)
            assert rate_headers(response) == (6, 5 - i)
        for url, params in reads:
            assert_limited(client.get(url, params=params), 6)
        # Writes are counted apart, and another client behind the proxy reads on.
        expect_created(client.post(events_url(tenant.app_id), json={"action": "r.two"}))
        other = client.get(events_url(tenant.app_id), headers={"X-Forwarded-For": "203.0.113.9"})
        assert other.status_code == 200, other.text
        assert rate_headers(other) == (6, 5)
