"""PostgreSQL restarted under load: two nodes reconnect by themselves and lose nothing.

Two `trailkeep serve` nodes share one database (as the restricted service role) on a cluster of
this module's own, so restarting it disturbs no other test. While writers keep both nodes busy,
the cluster is restarted (`pg_ctl restart -m fast`, which disconnects every client), or stopped
for a while and started again. Every write meanwhile is either acknowledged or refused with a
503 and ``Retry-After`` (never a 500), the nodes and their writer processes are the same
processes all along, writes succeed again once the database is back, and afterwards every
acknowledged entry is stored and the log verifies.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.load import STRESS, Writers, check_survivors, scaled, wait_until
from tests.pg import PostgresCluster, RedisServer, running_cluster
from tests.servers import Server
from trailkeep.server.ingest.checkpointer import load_signer

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(900 if STRESS else 240)]

NODES = 2
THREADS = 6
ROUNDS = scaled(2, 10)
ACKS_PER_ROUND = scaled(150, 600)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    """A cluster of this module's own: the tests restart it."""
    with running_cluster() as made:
        yield made


@pytest.fixture
def nodes(
    cluster: PostgresCluster, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Server]]:
    """Two nodes on one database, with one signing key and one secret key."""
    root = tmp_path_factory.mktemp("pg-restart")
    database = cluster.database()
    key_file = root / "signing.key"
    load_signer(key_file, "trailkeep.local")
    env = {
        "TRAILKEEP_DATABASE_URL": database.service_url,
        "TRAILKEEP_REDIS_URL": redis_server.url(),
        "TRAILKEEP_SIGNING_KEY_FILE": str(key_file),
        "TRAILKEEP_SECRET_KEY_FILE": str(root / "secret.key"),
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
        cluster.drop(database.name)


def test_nodes_ride_out_postgres_restarts_without_losing_an_acknowledged_entry(
    cluster: PostgresCluster, nodes: list[Server]
) -> None:
    tenant = nodes[0].new_app("postgres restarts")
    pids = [srv.proc.pid for srv in nodes if srv.proc is not None]
    with Writers(nodes, tenant, THREADS) as writers:
        for round_ in range(ROUNDS):
            writers.wait_for_acks(ACKS_PER_ROUND)
            if round_ % 2 == 0:
                cluster.restart("fast")
            else:
                # Down long enough to be seen: writes meanwhile are refused, with Retry-After.
                cluster.stop_server("fast")
                seen = writers.unavailable_count()
                wait_until(
                    lambda seen=seen: (
                        writers.unavailable_count() >= seen + 10 or bool(writers.refused)
                    ),
                    60,
                    "writes refused with 503 while PostgreSQL is down",
                )
                cluster.start_server()
            assert writers.refused == [], writers.refused[:3]
            # The same nodes reconnect by themselves and take writes again.
            writers.wait_for_acks(ACKS_PER_ROUND, within=90)
    assert writers.refused == [], writers.refused[:3]
    assert writers.unavailable, "no write met the outage"
    for response in writers.unavailable:
        assert response.json()["code"] == "storage_unavailable", response.text
        assert int(response.headers["Retry-After"]) >= 1
    assert [srv.proc.pid for srv in nodes if srv.proc and srv.proc.poll() is None] == pids
    check_survivors(nodes[0], tenant, dict(writers.acked), THREADS)
