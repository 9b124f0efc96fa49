"""Shared fixtures: real servers on free loopback ports, stopped afterwards.

Every test that uses ``server``, ``tenant`` or ``fresh_server`` runs twice: on SQLite (the
embedded default) and on PostgreSQL with Redis (``-m postgres`` selects the second half,
``-m 'not postgres'`` the first). The PostgreSQL cluster and the Redis server are made once
per session (once per pytest-xdist worker), only if a PostgreSQL test is selected; each server
gets a database of its own, connects as a member of the restricted ``trailkeep_service`` role,
and counts its rate limits in a Redis database of its own.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.pg import PostgresCluster, RedisServer, postgres_server
from tests.servers import Server, Tenant

# Hypothesis fails an example that takes over 200 ms by default. With two workers sharing two
# cores with the servers they start, that measures the machine's load rather than the code (an
# example of 18 ms took 252 ms once): no deadline; tests that mean to bound a time say so.
settings.register_profile("trailkeep", deadline=None)
settings.load_profile("trailkeep")


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def pytest_configure(config: pytest.Config) -> None:
    """A suite stopped with SIGTERM still tears its fixtures down (servers, clusters)."""
    signal.signal(signal.SIGTERM, _interrupt)


# Modules whose tests share servers of their own (module-scoped fixtures that start `trailkeep
# serve`): under `--dist loadgroup` one pytest-xdist worker runs all of such a module's tests,
# so those servers start once; every other test goes to whichever worker is free.
ONE_WORKER_MODULES = frozenset({
    # The fault suite: each module's rounds of load and faults on one worker, one at a time.
    "tests/faults/test_disk_full.py",
    "tests/faults/test_kill.py",
    "tests/faults/test_postgres_restart.py",  # a cluster of its own, restarted
    "tests/faults/test_schemathesis.py",  # one server for every operation
    "tests/integration/test_multinode.py",  # three nodes on one database
    "tests/integration/test_postgres.py",  # a server keeping five months of partitions ahead
    "tests/integration/test_stream.py",  # a server with small live-stream bounds
    "tests/integration/test_verify_cli.py",  # a stopped server's files and database
    "tests/integration/test_workers.py",  # `serve --workers 2`
})  # fmt: skip


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` with the groups above, read from the tests' node ids.

    pytest-xdist 3.8 hands ``xdist_group`` marks to its scheduler by appending ``@group`` to
    node ids, which pytest 9.2's structured node ids no longer take (pytest-xdist#1386): its
    loadgroup then schedules every test on its own. Groups by module path do not need that.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroups(LoadScopeScheduling):
        """One unit of work per listed module; one per test elsewhere. Larger units go first."""

        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_WORKER_MODULES else nodeid

    return ModuleGroups(config, log)


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the session."""
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A throwaway Redis for the session."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database the servers of this test run on: ``sqlite`` or ``postgres``."""
    name: str = request.param
    return name


@contextlib.contextmanager
def new_server(request: pytest.FixtureRequest, backend: str, data_dir: Path) -> Iterator[Server]:
    """A server (not started) on ``backend``; stopped, and its database dropped, afterwards."""
    if backend == "sqlite":
        srv = Server(data_dir)
        try:
            yield srv
        finally:
            srv.stop()
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    redis: RedisServer = request.getfixturevalue("redis_server")
    with postgres_server(cluster, redis, data_dir) as srv:
        yield srv


@pytest.fixture(scope="session")
def shared_sqlite_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The session's shared server on SQLite, started when a test first needs it."""
    with new_server(request, "sqlite", tmp_path_factory.mktemp("server-sqlite")) as srv:
        yield srv.start()


@pytest.fixture(scope="session")
def shared_postgres_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The session's shared server on PostgreSQL and Redis, started when a test first needs it."""
    with new_server(request, "postgres", tmp_path_factory.mktemp("server-postgres")) as srv:
        yield srv.start()


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest, backend: str) -> Server:
    """The shared `trailkeep serve` of the test's backend, with a rate limit too high to bite.

    Each backend's server lives for the whole session: tests of the two backends may come in
    any order (pytest-xdist hands them out), and switching backends must not restart one.
    """
    shared: Server = request.getfixturevalue(f"shared_{backend}_server")
    return shared


@pytest.fixture
def tenant(server: Server) -> Tenant:
    """A fresh app (an empty log) on the shared server."""
    return server.new_app()


@pytest.fixture
def fresh_server(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, not yet started, for tests that kill or configure it."""
    with new_server(request, backend, tmp_path / "data") as srv:
        yield srv


@pytest.fixture
def sqlite_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own on SQLite only, for what does not depend on the database."""
    with new_server(request, "sqlite", tmp_path / "data") as srv:
        yield srv
