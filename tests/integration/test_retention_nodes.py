"""Scheduled retention on several nodes sharing one PostgreSQL (issue 21).

Every node runs the scheduler; one purges an app at a time (a session advisory lock per app),
the others pass it by, and a node that dies mid-purge leaves its lock with its session: the next
node resumes at the purge horizon, and the log comes out whole, every stub accounted for.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from tests.integration.http_api import checkpoint_verifier, wait_for_checkpoint
from tests.integration.test_retention import entries_of, seed_old
from tests.pg import PostgresCluster
from tests.servers import Server, Tenant
from trailkeep.server.ingest.checkpointer import load_signer

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(240)]


@pytest.fixture
def pair(pg_cluster: PostgresCluster, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Two (not yet started) nodes on one fresh database, purging every half second."""
    database = pg_cluster.database()
    key_file = tmp_path / "signing.key"
    load_signer(key_file, "trailkeep.local")
    env = {
        "TRAILKEEP_DATABASE_URL": database.service_url,
        "TRAILKEEP_SIGNING_KEY_FILE": str(key_file),
        "TRAILKEEP_SECRET_KEY_FILE": str(tmp_path / "secret.key"),
        "TRAILKEEP_PURGE_INTERVAL": "0.5",
    }
    nodes = (Server(tmp_path / "a", env), Server(tmp_path / "b", env))
    for node in nodes:
        node.owner_url = database.owner_url
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        pg_cluster.drop(database.name)


def _retained(node: Server, count: int) -> Tenant:
    """An app with ``count`` entries three days old and a retention of one day."""
    tenant = node.new_app("retained")
    seed_old(node, tenant.app_id, count, days_ago=3)
    node.cli("apps", "update", tenant.app_id, "--retention-days", "1")
    return tenant


def _erased(node: Server, tenant: Tenant) -> int:
    rows = node.query("SELECT count(*) FROM erased_entries WHERE app_id = :app", app=tenant.app_id)
    return int(rows[0][0])


def _wait_erased(node: Server, tenant: Tenant, at_least: int, within: float) -> int:
    deadline = time.monotonic() + within
    while (done := _erased(node, tenant)) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return done


def _check_purges(entries: list[dict[str, Any]], total: int) -> None:
    """The retention.purge records cover the seqs once each, in order, and account for all."""
    purges = [e["metadata"] for e in entries if e.get("action") == "retention.purge"]
    covered = [(p["from_seq"], p["to_seq"]) for p in purges]
    assert covered == sorted(covered)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(covered))  # no overlap
    assert sum(p["erased"] for p in purges) == total
    assert sum(1 for e in entries if e.get("erased")) == total


def _verify(node: Server, tenant: Tenant, entries: list[dict[str, Any]]) -> None:
    """`verify --app` once the background signer has signed the whole log."""
    with node.client(tenant.key) as client:
        wait_for_checkpoint(client, tenant.app_id, len(entries), checkpoint_verifier(node), 10)
    node.cli("verify", "--app", tenant.app_id)


def _owner_connection(node: Server) -> psycopg.Connection[Any]:
    assert node.owner_url is not None
    return psycopg.connect(node.owner_url.replace("postgresql+psycopg://", "postgresql://"))


def test_one_node_purges_an_app_while_the_others_pass_it_by(pair: tuple[Server, Server]) -> None:
    first, second = pair
    tenant = _retained(first, 2_500)
    lease = f"trailkeep.purge:{tenant.app_id}"
    with _owner_connection(first) as holder:
        # Whoever holds the app's lease purges it: while this session holds it, neither node
        # does, though both run their scheduler every half second.
        holder.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (lease,))
        first.start()
        second.start()
        time.sleep(3)
        assert _erased(first, tenant) == 0
        holder.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (lease,))
    assert _wait_erased(first, tenant, 2_500, within=60) == 2_500
    entries = entries_of(first, tenant)
    _check_purges(entries, 2_500)
    _verify(first, tenant, entries)


def test_a_node_killed_mid_purge_leaves_the_rest_to_another(pair: tuple[Server, Server]) -> None:
    doomed, survivor = pair
    total = 40_000
    tenant = _retained(doomed, total)
    doomed.start()
    assert _wait_erased(doomed, tenant, 1, within=60)
    doomed.kill()  # mid-purge: 40 chunks take longer than the first one
    part = _erased(doomed, tenant)
    assert 0 < part < total
    # Whole chunks: each committed with the record that accounts for it, or not at all.
    recorded = doomed.query(
        "SELECT entry FROM events WHERE app_id = :app AND action = 'retention.purge'",
        app=tenant.app_id,
    )
    assert sum(orjson.loads(row[0])["metadata"]["erased"] for row in recorded) == part
    # The dead node's session, and its lease with it, ended with its process.
    survivor.start()
    assert _wait_erased(survivor, tenant, total, within=120) == total
    entries = entries_of(survivor, tenant)
    _check_purges(entries, total)
    _verify(survivor, tenant, entries)
