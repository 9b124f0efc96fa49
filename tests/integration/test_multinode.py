"""Three `trailkeep serve` nodes on one PostgreSQL and one Redis (issue 5).

Thirty clients spread over the nodes write 10,000 entries to one app at once; the log must come
out as one gapless sequence with one consistent Merkle tree, and the per-IP rate limit must hold
over the sum of the nodes, not per node. Each client speaks for its own address through a
trusted proxy header, so the limit of 50 writes a minute is not in the way of the load.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.integration.http_api import (
    checkpoint_verifier,
    events_url,
    expect_status,
    export_lines,
    wait_for_checkpoint,
)
from tests.integration.live_client import Subscriber
from tests.pg import PostgresCluster, RedisServer
from tests.servers import Server, Tenant
from trailkeep.server.ingest.checkpointer import load_signer

pytestmark = pytest.mark.postgres

NODES = 3
CLIENTS = 30
TOTAL = 10_000
BATCH = 25
BATCHES_PER_CLIENT = 12
LIMIT = 50


@pytest.fixture(scope="module")
def nodes(
    pg_cluster: PostgresCluster, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Server]]:
    """Three nodes sharing a database (as the service role), a Redis and a signing key."""
    root = tmp_path_factory.mktemp("multinode")
    database = pg_cluster.database()
    key_file = root / "signing.key"
    load_signer(key_file, "trailkeep.local")  # every node must sign with the same key
    env = {
        "TRAILKEEP_DATABASE_URL": database.service_url,
        "TRAILKEEP_REDIS_URL": redis_server.url(),
        "TRAILKEEP_SIGNING_KEY_FILE": str(key_file),
        "TRAILKEEP_SECRET_KEY_FILE": str(root / "secret.key"),  # and the same secret key
        "TRAILKEEP_RATE_LIMIT": f"{LIMIT}/minute",
        "TRAILKEEP_TRUSTED_PROXIES": "127.0.0.1/32",
    }
    servers = [Server(root / f"node{i}", env) for i in range(NODES)]
    servers[0].owner_url = database.owner_url
    try:
        with ThreadPoolExecutor(NODES) as pool:
            list(pool.map(Server.start, servers))
        yield servers
    finally:
        for srv in servers:
            srv.stop()
        pg_cluster.drop(database.name)


def _plan(client: int) -> list[int]:
    """The request sizes of one client: 12 batches of 25 and 33 or 34 singles, interleaved."""
    singles = (TOTAL - CLIENTS * BATCH * BATCHES_PER_CLIENT) // CLIENTS
    singles += 1 if client < (TOTAL - CLIENTS * BATCH * BATCHES_PER_CLIENT) % CLIENTS else 0
    sizes = [1] * singles
    for b in range(BATCHES_PER_CLIENT):
        sizes.insert(b * 4, BATCH)
    return sizes


def _write_all(nodes: list[Server], tenant: Tenant, client: int) -> list[list[int]]:
    """One client's writes, each to the next node in turn; the seqs of each request."""
    headers = {"Authorization": f"Bearer {tenant.key}", "X-Forwarded-For": f"10.0.{client}.1"}
    http = [httpx.Client(base_url=n.url, headers=headers, timeout=60) for n in nodes]
    got: list[list[int]] = []
    try:
        for i, size in enumerate(_plan(client)):
            node = http[(client + i) % len(http)]
            action = {"action": f"mn.c{client}", "metadata": {"i": i}}
            if size == 1:
                body = expect_status(node.post(events_url(tenant.app_id), json=action), 201).json()
                got.append([body["seq"]])
            else:
                batch = {"events": [action] * size}
                response = expect_status(
                    node.post(events_url(tenant.app_id, "events/batch"), json=batch), 201
                )
                got.append([e["seq"] for e in response.json()["events"]])
    finally:
        for c in http:
            c.close()
    return got


def test_thirty_clients_on_three_nodes_make_one_gapless_verifiable_log(nodes: list[Server]) -> None:
    assert sum(map(sum, map(_plan, range(CLIENTS)))) == TOTAL
    assert max(len(_plan(c)) for c in range(CLIENTS)) < LIMIT
    tenant = nodes[0].new_app("multinode")
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda c: _write_all(nodes, tenant, c), range(CLIENTS)))
    requests = [seqs for per_client in results for seqs in per_client]
    seqs = sorted(seq for request in requests for seq in request)
    assert seqs == list(range(TOTAL))  # no gap, no seq given twice
    for request in requests:  # a batch is one run of consecutive seqs
        assert request == list(range(request[0], request[0] + len(request)))
    verifier = checkpoint_verifier(nodes[0])
    for node in nodes[1:]:
        assert checkpoint_verifier(node).verifier_key() == verifier.verifier_key()
    with nodes[2].client(tenant.key) as reader:
        wait_for_checkpoint(reader, tenant.app_id, TOTAL, verifier, within=30)
        lines = export_lines(reader, tenant.app_id, {})
    assert len(lines) == TOTAL
    entries: list[dict[str, Any]] = [json.loads(line) for line in lines]
    assert [e["seq"] for e in entries] == list(range(TOTAL))
    times = [e["time"] for e in entries]
    assert times == sorted(times)  # entry time never goes back along seq, across nodes too
    verified = nodes[1].cli("verify", "--app", tenant.app_id)
    assert f"OK: {TOTAL} entries" in verified.stdout, verified.stdout
    # The same on two worker processes, each with its own PostgreSQL connections.
    spans = nodes[1].cli("verify", "--app", tenant.app_id, "--jobs", "2", "--span-bits", "4")
    assert f"OK: {TOTAL} entries" in spans.stdout, spans.stdout


def test_the_rate_limit_is_the_sum_over_nodes(nodes: list[Server]) -> None:
    """90 writes from one address over three nodes: exactly 50 pass, not 50 on each node."""
    tenant = nodes[0].new_app("limited")
    headers = {"Authorization": f"Bearer {tenant.key}", "X-Forwarded-For": "203.0.113.77"}
    statuses: list[int] = []
    lock = threading.Lock()

    def hit(i: int) -> None:
        with httpx.Client(base_url=nodes[i % NODES].url, headers=headers, timeout=60) as c:
            response = c.post(events_url(tenant.app_id), json={"action": "rl.hit"})
            assert response.status_code in (201, 429), response.text
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
                assert response.json()["code"] == "rate_limited"
            with lock:
                statuses.append(response.status_code)

    with ThreadPoolExecutor(9) as pool:
        list(pool.map(hit, range(90)))
    assert statuses.count(201) == LIMIT
    assert statuses.count(429) == 90 - LIMIT
    with nodes[1].client(tenant.key, **{"X-Forwarded-For": "203.0.113.78"}) as other:
        newest = expect_status(other.get(events_url(tenant.app_id), params={"limit": 1}))
        assert newest.json()["data"][0]["seq"] == LIMIT - 1


def test_one_idempotency_key_sent_to_every_node_at_once_appends_once(nodes: list[Server]) -> None:
    tenant = nodes[0].new_app("idempotent")
    body = {"action": "idem.once", "metadata": {"n": 1}}
    barrier = threading.Barrier(NODES * 2)

    def send(i: int) -> httpx.Response:
        headers = {"Idempotency-Key": "same-everywhere", "X-Forwarded-For": f"198.51.100.{i}"}
        with nodes[i % NODES].client(tenant.key, **headers) as c:
            barrier.wait(30)
            return c.post(events_url(tenant.app_id), json=body)

    with ThreadPoolExecutor(NODES * 2) as pool:
        responses = list(pool.map(send, range(NODES * 2)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sorted(r.headers.get("Idempotent-Replayed", "false") for r in responses) == ["false"] + [
        "true"
    ] * (NODES * 2 - 1)
    with nodes[0].client(tenant.key, **{"X-Forwarded-For": "198.51.100.99"}) as reader:
        listed = expect_status(reader.get(events_url(tenant.app_id), params={"limit": 10}))
        data = listed.json()["data"]
    assert [e["seq"] for e in data] == [0]


def test_an_entry_written_on_one_node_reaches_a_stream_on_another(nodes: list[Server]) -> None:
    tenant = nodes[0].new_app("multinode stream")
    sub = Subscriber(nodes[1], tenant.app_id, tenant.key)
    headers = {"Authorization": f"Bearer {tenant.key}", "X-Forwarded-For": "10.9.9.1"}
    written, delays = [], []
    try:
        with httpx.Client(base_url=nodes[0].url, headers=headers, timeout=60) as writer:
            for i in range(20):
                response = writer.post(events_url(tenant.app_id), json={"action": f"mn.s{i}"})
                written.append(expect_status(response, 201).json())
                answered = time.perf_counter()
                (event,) = sub.take(1, within=10)
                delays.append(time.perf_counter() - answered)
                assert json.loads(event.data) == written[-1]
                assert event.id == str(written[-1]["seq"])
    finally:
        sub.close()
    # Node B finds node A's entries by polling the log's size (every 0.15 s by default).
    assert max(delays) < 2, delays
