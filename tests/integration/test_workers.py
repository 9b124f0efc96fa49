"""`trailkeep serve --workers N`: N nodes from one command, on PostgreSQL and Redis (issue 7).

Each worker process is a node of its own, as several `serve` processes on one PostgreSQL are
(issue 5): the log they write together must come out as one gapless, verifiable sequence. On
SQLite, or without a shared rate-limit counter, the command refuses to start.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.http_api import (
    checkpoint_verifier,
    events_url,
    expect_status,
    wait_for_checkpoint,
)
from tests.pg import PostgresCluster, RedisServer
from tests.processes import children
from tests.servers import Server, run_cli

WORKERS = 2
CLIENTS = 8
REQUESTS = 30  # per client: singles and batches of 10, alternating


@pytest.fixture(scope="module")
def served(
    pg_cluster: PostgresCluster, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One `serve --workers 2` on a database of its own (as the restricted service role)."""
    database = pg_cluster.database()
    env = {
        "TRAILKEEP_DATABASE_URL": database.service_url,
        "TRAILKEEP_REDIS_URL": redis_server.url(),
    }
    server = Server(tmp_path_factory.mktemp("workers"), env, args=("--workers", str(WORKERS)))
    server.owner_url = database.owner_url
    try:
        yield server.start()
    finally:
        server.stop()
        pg_cluster.drop(database.name)


def writers_by_worker(server: Server) -> dict[int, list[str]]:
    """Each worker process of the server, with the command lines of the writers it started."""
    assert server.proc is not None
    workers = [pid for pid, c in children(server.proc.pid) if "spawn_main" in c]
    return {
        worker: [c for _, c in children(worker) if "trailkeep.server.ingest.process" in c]
        for worker in workers
    }


@pytest.mark.postgres
def test_the_workers_are_processes_of_their_own(served: Server) -> None:
    # The server answers once one worker is up; the other may still be starting its writer.
    deadline = time.monotonic() + 60
    found = writers_by_worker(served)
    while len(found) != WORKERS or any(len(w) != 1 for w in found.values()):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
        found = writers_by_worker(served)
    assert len(found) == WORKERS, found
    for writers in found.values():  # each a node: its own writer process
        assert len(writers) == 1, found


@pytest.mark.postgres
def test_clients_on_all_workers_make_one_gapless_verifiable_log(served: Server) -> None:
    tenant = served.new_app("workers")

    def write(client: int) -> list[list[int]]:
        got = []
        # A new connection per request: the kernel spreads them over the workers' accepts.
        for i in range(REQUESTS):
            with served.client(tenant.key) as http:
                action = {"action": f"w.c{client}", "metadata": {"i": i}}
                if i % 2:
                    body = {"events": [action] * 10}
                    response = expect_status(
                        http.post(events_url(tenant.app_id, "events/batch"), json=body), 201
                    )
                    got.append([e["seq"] for e in response.json()["events"]])
                else:
                    got.append(
                        [
                            expect_status(
                                http.post(events_url(tenant.app_id), json=action), 201
                            ).json()["seq"]
                        ]
                    )
        return got

    with ThreadPoolExecutor(CLIENTS) as pool:
        requests = [r for per_client in pool.map(write, range(CLIENTS)) for r in per_client]
    total = CLIENTS * (REQUESTS // 2) * 11
    assert sorted(s for r in requests for s in r) == list(range(total))
    for r in requests:  # a batch is one run of consecutive seqs
        assert r == list(range(r[0], r[0] + len(r)))
    with served.client(tenant.key) as reader:  # whichever worker signs it, once it is signed
        wait_for_checkpoint(reader, tenant.app_id, total, checkpoint_verifier(served), within=30)
    verified = served.cli("verify", "--app", tenant.app_id)
    assert f"OK: {total} entries" in verified.stdout, verified.stdout


def test_workers_are_refused_on_sqlite(tmp_path: Path) -> None:
    done = run_cli(
        "serve", "--workers", "2", "--data-dir", str(tmp_path), check=False,
        env={"TRAILKEEP_DATABASE_URL": "", "TRAILKEEP_REDIS_URL": ""},
    )  # fmt: skip
    assert done.returncode != 0
    assert "--workers needs PostgreSQL" in done.stderr + done.stdout
    assert not (tmp_path / "trailkeep.db").exists()  # refused before anything was opened


def test_workers_are_refused_without_a_shared_rate_limit_counter(tmp_path: Path) -> None:
    env = {"TRAILKEEP_REDIS_URL": ""}  # set but empty is no counter either
    done = run_cli(
        "serve", "--workers", "2", "--data-dir", str(tmp_path),
        "--database-url", "postgresql://nobody@127.0.0.1:1/none", check=False, env=env,
    )  # fmt: skip
    assert done.returncode != 0
    assert "--workers needs --redis-url" in done.stderr + done.stdout
