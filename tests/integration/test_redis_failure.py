"""Redis stopped under load (issue 20): the rate limit does what it is configured to do.

``TRAILKEEP_RATE_LIMIT_ON_REDIS_FAILURE=open`` (the default) lets writes and reads through,
``closed`` refuses them with 503 and Retry-After; either way the failures are counted in
/metrics, /healthz says the limiter is degraded, and all is as before once Redis is back.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration.http_api import events_url, expect_created, expect_problem
from tests.pg import RedisServer
from tests.servers import Server, Tenant

pytestmark = pytest.mark.timeout(180)

LOAD = 24  # concurrent requests while Redis is down


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, which the test stops and starts again."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


def failures(srv: Server, limit: str, policy: str) -> float:
    """``trailkeep_rate_limit_redis_failures_total`` for one limit and policy."""
    text = httpx.get(f"{srv.url}/metrics").text
    pattern = (
        r"^trailkeep_rate_limit_redis_failures_total\{"
        rf'limit="{limit}",policy="{policy}"\}} (\S+)$'
    )
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def limiter_health(srv: Server) -> str:
    """What /healthz says of the rate limiter."""
    health = httpx.get(f"{srv.url}/healthz").json()
    assert health["status"] == "ok"
    state: str = health["rate_limiter"]
    return state


def under_load(srv: Server, tenant: Tenant) -> list[httpx.Response]:
    """``LOAD`` writes and ``LOAD`` reads at once."""

    def one(i: int) -> httpx.Response:
        with srv.client(tenant.key) as client:
            if i % 2:
                return client.get(events_url(tenant.app_id), params={"limit": 1})
            return client.post(events_url(tenant.app_id), json={"action": f"redis.down.{i}"})

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(2 * LOAD)))


def recovered(srv: Server, tenant: Tenant, within: float = 30.0) -> httpx.Response:
    """The first write answered 201 once Redis is back (its clients reconnect by themselves)."""
    deadline = time.monotonic() + within
    with srv.client(tenant.key) as client:
        while True:
            response = client.post(events_url(tenant.app_id), json={"action": "redis.back"})
            if response.status_code == 201 or time.monotonic() > deadline:
                return response
            time.sleep(0.1)


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_redis_stopped_under_load(tmp_path: Path, redis: RedisServer, policy: str) -> None:
    srv = Server(
        tmp_path / "data",
        {
            "TRAILKEEP_REDIS_URL": redis.url(),
            "TRAILKEEP_RATE_LIMIT_ON_REDIS_FAILURE": policy,
            "TRAILKEEP_RATE_LIMIT": "100000/minute",
            "TRAILKEEP_READ_RATE_LIMIT": "100000/minute",
        },
    )
    try:
        srv.start()
        tenant = srv.new_app("redis")
        with srv.client(tenant.key) as client:
            expect_created(client.post(events_url(tenant.app_id), json={"action": "redis.up"}))
        assert limiter_health(srv) == "ok"

        redis.pause()
        answers = under_load(srv, tenant)
        if policy == "open":
            # An audit log keeps recording: every write is stored, every read answered.
            assert all(r.status_code in (200, 201) for r in answers), [
                (r.status_code, r.text) for r in answers if r.status_code not in (200, 201)
            ]
        else:
            for response in answers:
                expect_problem(response, 503, "unavailable")
                assert response.headers["retry-after"] == "1"
        assert limiter_health(srv) == f"degraded ({policy})"
        assert failures(srv, "writes", policy) >= LOAD
        assert failures(srv, "reads", policy) >= LOAD

        redis.start()
        response = recovered(srv, tenant)
        assert response.status_code == 201, response.text
        assert int(response.headers["ratelimit-remaining"]) < 100_000
        with srv.client(tenant.key) as client:
            assert client.get(events_url(tenant.app_id)).status_code == 200
        assert limiter_health(srv) == "ok"
        stored = srv.query("SELECT count(*) FROM events WHERE app_id = :a", a=tenant.app_id)
        written = 2 + (LOAD if policy == "open" else 0)
        assert stored[0][0] >= written
    finally:
        srv.stop()
