"""Per-client-IP limits on writes and on reads, with `limits` (memory, or Redis across nodes).

When Redis cannot be reached the limiter does what ``TRAILKEEP_RATE_LIMIT_ON_REDIS_FAILURE``
says: ``open`` (the default) lets requests through, because an audit entry refused for want of
a counter is lost for good while the flood a limit guards against is brief and visible;
``closed`` refuses them with 503. Either way each such request is counted in
``trailkeep_rate_limit_redis_failures_total`` and /healthz says the limiter is degraded until
Redis answers again.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

log = logging.getLogger(__name__)

OnFailure = Literal["open", "closed"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one hit, with the headers that tell the client where it stands."""

    allowed: bool
    headers: dict[str, str]
    unavailable: bool = False  # the counter's store is down and the limit fails closed


class RateLimiter:
    """A moving-window limit, so that exactly N requests pass in any window of the period."""

    def __init__(
        self,
        rate: str,
        redis_url: str | None = None,
        *,
        name: str = "writes",
        on_failure: OnFailure = "open",
        on_redis_failure: Callable[[str, OnFailure], None] | None = None,
    ) -> None:
        self.item = parse(rate)
        self.name = name  # the counters' key in Redis, and the metric's label
        self.on_failure = on_failure
        self._on_redis_failure = on_redis_failure
        self._local: MovingWindow | None = None
        self._limiter: MovingWindowRateLimiter | None = None
        self.degraded = False  # the last hit could not reach Redis
        if redis_url:
            # Every node counts in the same Redis keys (an atomic Lua script per hit), so a
            # client's limit is the sum over nodes. redis-py's asyncio client, not coredis.
            storage = storage_from_string(
                f"async+{redis_url}", implementation="redispy", key_prefix="trailkeep"
            )
            self._limiter = MovingWindowRateLimiter(storage)
        else:
            self._local = MovingWindow(self.item.amount, self.item.get_expiry())
        self._last_warning = 0.0

    async def hit(self, client: str) -> Verdict:
        """Count one request from ``client``; say whether it may go on."""
        if self._local is not None:
            now = time.monotonic()
            allowed, remaining, reset_at = self._local.hit(client, now)
            return self._verdict(allowed, remaining, reset_at - now)
        assert self._limiter is not None
        try:
            allowed = await self._limiter.hit(self.item, self.name, client)
            stats = await self._limiter.get_window_stats(self.item, self.name, client)
        except Exception as exc:
            return self._failed(exc)
        self.degraded = False
        return self._verdict(allowed, stats.remaining, stats.reset_time - time.time())

    def _failed(self, exc: Exception) -> Verdict:
        self.degraded = True
        if self._on_redis_failure is not None:
            self._on_redis_failure(self.name, self.on_failure)
        self._warn(exc)
        if self.on_failure == "closed":
            return Verdict(False, {"Retry-After": "1"}, unavailable=True)
        period = str(self.item.get_expiry())
        return Verdict(True, {
            "RateLimit-Limit": str(self.item.amount),
            "RateLimit-Remaining": str(self.item.amount), "RateLimit-Reset": period,
        })  # fmt: skip

    def _verdict(self, allowed: bool, remaining: int, reset_in: float) -> Verdict:
        reset = max(0, math.ceil(reset_in))
        headers = {
            "RateLimit-Limit": str(self.item.amount),
            "RateLimit-Remaining": str(max(0, remaining)),
            "RateLimit-Reset": str(reset),
        }
        if not allowed:
            headers["Retry-After"] = str(max(1, reset))
        return Verdict(allowed, headers)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning > 10:
            self._last_warning = now
            doing = (
                f"letting {self.name} through"
                if self.on_failure == "open"
                else (f"refusing {self.name} with 503")
            )
            log.warning("rate limiter's Redis is unavailable, %s: %s", doing, exc)


class MovingWindow:
    """One process's moving-window counts: at most ``amount`` hits per key in any ``period``.

    The semantics of `limits`' moving window, kept in memory without its cost: its in-memory
    store starts a task per hit that hops to a worker thread to expire old hits, a cost paid
    on every write. Here each key keeps a deque of hit times, oldest first; expired times fall
    off the front as the key is hit, and idle keys are swept away once a period.
    """

    def __init__(self, amount: int, period: float) -> None:
        self.amount = amount
        self.period = period
        self._hits: dict[str, deque[float]] = {}
        self._next_sweep = 0.0

    def hit(self, key: str, now: float) -> tuple[bool, int, float]:
        """Count a hit at ``now`` (monotonic): (allowed, hits left, when the oldest expires)."""
        if now >= self._next_sweep:
            self._sweep(now)
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        horizon = now - self.period
        while hits and hits[0] <= horizon:
            hits.popleft()
        allowed = len(hits) < self.amount
        if allowed:
            hits.append(now)
        reset_at = (hits[0] if hits else now) + self.period
        return allowed, self.amount - len(hits), reset_at

    def _sweep(self, now: float) -> None:
        horizon = now - self.period
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= horizon]:
            del self._hits[key]
        self._next_sweep = now + self.period
