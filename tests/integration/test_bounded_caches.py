"""Credential caches stay bounded (issue 20): random app ids, key ids and tokens cost no memory.

Unauthenticated requests with random app ids once grew a cache without bound. The server
exports each cache's size as ``trailkeep_auth_cache_entries``; a server with a small bound is
flooded with distinct ids and the gauges are read back.
"""

from __future__ import annotations

import re
import secrets

import httpx
import jwt
import pytest

from tests.integration.http_api import events_url, expect_created, expect_problem
from tests.servers import Server

pytestmark = pytest.mark.timeout(180)

BOUND = 50


def cache_sizes(srv: Server) -> dict[str, int]:
    """The credential caches' sizes, as /metrics reports them."""
    text = httpx.get(f"{srv.url}/metrics").text
    found = re.findall(r'^trailkeep_auth_cache_entries\{cache="(\w+)"\} ([0-9.e+]+)$', text, re.M)
    return {name: int(float(value)) for name, value in found}


def random_app_id() -> str:
    """An id shaped like `new_app_id`'s that no app has."""
    return "app_" + secrets.token_hex(8)


def test_random_app_ids_keys_and_tokens_do_not_grow_the_caches(sqlite_server: Server) -> None:
    sqlite_server.env["TRAILKEEP_AUTH_CACHE_ENTRIES"] = str(BOUND)
    sqlite_server.start()
    tenant = sqlite_server.new_app("bounded")
    with sqlite_server.client() as anonymous, sqlite_server.client(tenant.key) as owner:
        for i in range(6 * BOUND):
            app_id = random_app_id()
            # A session for the random app: its lookup is what a random app id costs.
            token = jwt.encode({"sub": "u", "aud": app_id, "exp": 2**31}, "x" * 32)
            session = {"Authorization": f"Bearer {token}"}
            expect_problem(
                anonymous.post(events_url(app_id), json={"action": "x"}, headers=session),
                404, "not_found",
            )  # fmt: skip
            fake_key = {"Authorization": f"Bearer tk_{secrets.token_hex(8)}_{'a' * 40}"}
            expect_problem(
                anonymous.get(events_url(app_id), headers=fake_key), 401, "unauthenticated"
            )
            if i % 10 == 0:  # the real caller keeps being answered, from the cache or not
                expect_created(owner.post(events_url(tenant.app_id), json={"action": "ok"}))
        sizes = cache_sizes(sqlite_server)
        assert set(sizes) == {"apps", "keys", "answers", "jwks"}, sizes
        # No app here has an identity provider: no key set is fetched, nor held.
        assert sizes.pop("jwks") == 0, sizes
        assert all(0 < size <= BOUND for size in sizes.values()), sizes
        # An app id longer than any app's is refused before any lookup, read or write alike.
        long_id = "app_" + "a" * 200
        session = {"Authorization": f"Bearer {jwt.encode({'sub': 'u'}, 'x' * 32)}"}
        expect_problem(
            anonymous.post(events_url(long_id), json={"action": "x"}, headers=session),
            400, "invalid_request",
        )  # fmt: skip
        expect_problem(anonymous.get(events_url(long_id), headers=session), 400, "invalid_request")
        expect_created(owner.post(events_url(tenant.app_id), json={"action": "still.ok"}))
