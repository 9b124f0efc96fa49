"""The bounded, expiring LRU behind the credential caches."""

from __future__ import annotations

import pytest

from trailkeep.server.lru import ExpiringLru


def test_the_least_recently_used_goes_first_and_the_bound_holds() -> None:
    lru: ExpiringLru[str, int] = ExpiringLru(3)
    for n, key in enumerate("abc"):
        lru.put(key, n, expires=100)
    assert lru.get("a", 0) == (0,)  # "a" is now the most recently used
    lru.put("d", 3, expires=100)
    assert len(lru) == 3
    assert lru.get("b", 0) is None  # the least recently used was dropped
    assert [lru.get(k, 0) for k in "acd"] == [(0,), (2,), (3,)]
    for n in range(1_000):
        lru.put(f"flood{n}", n, expires=100)
    assert len(lru) == 3


def test_expired_entries_are_misses_and_none_is_a_value() -> None:
    lru: ExpiringLru[str, int | None] = ExpiringLru(2)
    lru.put("gone", None, expires=5)
    assert lru.get("gone", 4) == (None,)  # a remembered "no such app"
    assert lru.get("gone", 5) is None
    assert len(lru) == 0
    with pytest.raises(ValueError, match="maxsize"):
        ExpiringLru(0)
