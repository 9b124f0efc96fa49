"""A small least-recently-used map with expiring entries, for the credential caches."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class ExpiringLru(Generic[K, V]):
    """At most ``maxsize`` entries; the least recently used goes first, expired ones are misses.

    A flood of distinct keys (random app ids, key ids, tokens) then costs a bounded amount of
    memory, while the callers that come back keep their entries.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K, now: float) -> tuple[V] | None:
        """``(value,)`` if ``key`` is held and not expired at ``now`` (monotonic), else None."""
        found = self._items.get(key)
        if found is None:
            return None
        if found[0] <= now:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return (found[1],)

    def put(self, key: K, value: V, expires: float) -> None:
        """Hold ``value`` until ``expires`` (monotonic), evicting the least recently used."""
        self._items[key] = (expires, value)
        self._items.move_to_end(key)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)

    def forget(self, match: Callable[[K, V], bool]) -> None:
        """Drop every entry for which ``match(key, value)`` holds (after a change to them)."""
        for key in [key for key, (_, value) in self._items.items() if match(key, value)]:
            del self._items[key]
