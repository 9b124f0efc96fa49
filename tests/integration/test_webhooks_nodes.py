"""Webhooks on two nodes sharing one PostgreSQL: each destination delivered by one at a time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.integration.http_api import expect_status, write_numbered
from tests.pg import PostgresCluster, RedisServer
from tests.receiver import Received, Receiver, receiver
from tests.servers import Server
from trailkeep.server.ingest.checkpointer import load_signer

pytestmark = [pytest.mark.timeout(240), pytest.mark.postgres]


@pytest.fixture
def two_nodes(
    pg_cluster: PostgresCluster, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Server]]:
    """Two nodes on one database, with the same signing and secret keys."""
    root = tmp_path_factory.mktemp("hooknodes")
    database = pg_cluster.database()
    key_file = root / "signing.key"
    load_signer(key_file, "trailkeep.local")
    env = {
        "TRAILKEEP_DATABASE_URL": database.service_url,
        "TRAILKEEP_REDIS_URL": redis_server.url(),
        "TRAILKEEP_SIGNING_KEY_FILE": str(key_file),
        "TRAILKEEP_SECRET_KEY_FILE": str(root / "secret.key"),
    }
    servers = [Server(root / f"node{i}", env) for i in range(2)]
    servers[0].owner_url = database.owner_url
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(Server.start, servers))
        yield servers
    finally:
        for srv in servers:
            srv.stop()
        pg_cluster.drop(database.name)


def test_two_nodes_deliver_each_batch_once_in_order(two_nodes: list[Server]) -> None:
    first, second = two_nodes
    tenant = first.new_app()
    with (
        receiver() as rx,
        first.client(tenant.key) as one,
        second.client(tenant.key) as two,
    ):
        hooks = [
            expect_status(one.post(f"/v1/apps/{tenant.app_id}/webhooks",
                                   json={"url": rx.url, "filter": {"action_prefix": "doc."}}),
                          201).json()
            for _ in range(4)
        ]  # fmt: skip
        written = []
        for n in range(20):  # writes to both nodes, both nodes' workers running
            client = one if n % 2 else two
            written += [e["seq"] for e in write_numbered(client, tenant.app_id, n * 10, 10)]
        for hook in hooks:
            rx.wait(lambda r, h=hook: len(_seqs(r, h)) >= len(written))
        for hook in hooks:
            # Each entry once, in order, every body signed with its destination's secret.
            assert _seqs(rx, hook) == written
            mine = _mine(rx, hook)
            assert Counter(r.headers["webhook-id"] for r in mine).most_common(1)[0][1] == 1
            verifier = Webhook(str(hook["secret"]))
            for request in mine:
                verifier.verify(request.body, request.headers)


def _mine(rx: Receiver, hook: dict[str, Any]) -> list[Received]:
    prefix = f"msg_{hook['id']}_"
    return [r for r in rx.ok() if r.headers["webhook-id"].startswith(prefix)]


def _seqs(rx: Receiver, hook: dict[str, Any]) -> list[int]:
    return [e["seq"] for r in _mine(rx, hook) for e in r.json()["data"]["entries"]]
