"""Per-client-IP limits on writes, with the `limits` package (memory, or Redis across nodes)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one hit, with the headers that tell the client where it stands."""

    allowed: bool
    headers: dict[str, str]


class WriteLimiter:
    """A moving-window limit, so that exactly N requests pass in any window of the period."""

    def __init__(self, rate: str, redis_url: str | None = None) -> None:
        self.item = parse(rate)
        if redis_url:
            # Every node counts in the same Redis keys (an atomic Lua script per hit), so a
            # client's limit is the sum over nodes. redis-py's asyncio client, not coredis.
            self._storage = storage_from_string(
                f"async+{redis_url}", implementation="redispy", key_prefix="trailkeep"
            )
        else:
            self._storage = storage_from_string("async+memory://")
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._shared = bool(redis_url)
        self._last_warning = 0.0

    async def hit(self, client: str) -> Verdict:
        """Count one write from ``client``; say whether it may go on."""
        try:
            allowed = await self._limiter.hit(self.item, "writes", client)
            stats = await self._limiter.get_window_stats(self.item, "writes", client)
        except Exception as exc:
            if not self._shared:
                raise
            # Fail open: an audit entry refused because the limiter's store is down is lost
            # for good, while the flood a limit guards against is brief and visible.
            self._warn(exc)
            period = str(self.item.get_expiry())
            return Verdict(True, {
                "RateLimit-Limit": str(self.item.amount),
                "RateLimit-Remaining": str(self.item.amount), "RateLimit-Reset": period,
            })  # fmt: skip
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        headers = {
            "RateLimit-Limit": str(self.item.amount),
            "RateLimit-Remaining": str(max(0, stats.remaining)),
            "RateLimit-Reset": str(reset),
        }
        if not allowed:
            headers["Retry-After"] = str(max(1, reset))
        return Verdict(allowed, headers)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning > 10:
            self._last_warning = now
            log.warning("rate limiter's Redis is unavailable, letting writes through: %s", exc)
