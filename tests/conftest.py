"""Shared fixtures: real servers on free loopback ports, stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Server, Tenant


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A shared `trailkeep serve` on SQLite, with a rate limit high enough not to interfere."""
    srv = Server(tmp_path_factory.mktemp("server")).start()
    yield srv
    srv.stop()


@pytest.fixture
def tenant(server: Server) -> Tenant:
    """A fresh app on the shared server."""
    return server.tenant()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, not yet started, for tests that kill or configure it."""
    srv = Server(tmp_path / "data")
    yield srv
    srv.stop()
