"""Per-client-IP limits on writes, with the `limits` package (memory, or Redis across nodes)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one hit, with the headers that tell the client where it stands."""

    allowed: bool
    headers: dict[str, str]


class WriteLimiter:
    """A moving-window limit, so that exactly N requests pass in any window of the period."""

    def __init__(self, rate: str, redis_url: str | None = None) -> None:
        self.item = parse(rate)
        uri = f"async+{redis_url}" if redis_url else "async+memory://"
        self._storage = storage_from_string(uri)
        self._limiter = MovingWindowRateLimiter(self._storage)

    async def hit(self, client: str) -> Verdict:
        """Count one write from ``client``; say whether it may go on."""
        allowed = await self._limiter.hit(self.item, "writes", client)
        stats = await self._limiter.get_window_stats(self.item, "writes", client)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        headers = {
            "RateLimit-Limit": str(self.item.amount),
            "RateLimit-Remaining": str(max(0, stats.remaining)),
            "RateLimit-Reset": str(reset),
        }
        if not allowed:
            headers["Retry-After"] = str(max(1, reset))
        return Verdict(allowed, headers)
