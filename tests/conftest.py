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
