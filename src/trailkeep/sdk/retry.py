"""When to retry a call and how long to wait: shared by the sync and async clients.

Network errors, 429 and 5xx answers are retried, at most ``max_retries`` times, with
exponential backoff and full jitter; a 429's (or 503's) ``Retry-After`` is honoured as a lower
bound. Writes are safe to retry because every write carries one ``Idempotency-Key`` across all
of its attempts: the server answers a repeat with the original entry and appends nothing.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Final

import httpx

from .errors import ConnectionFailed, TrailkeepError, from_response

log = logging.getLogger("trailkeep.sdk")

RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
# Errors that may hide a request the server did (or did not) process; a retry is safe either
# way for reads, and for writes thanks to the Idempotency-Key.
RETRY_ERRORS: Final = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times to retry and how long to wait between attempts (seconds)."""

    max_retries: int = 5
    backoff: float = 0.25
    max_backoff: float = 8.0
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        """Refuse settings that cannot work."""
        if not 0 <= self.max_retries <= 20:
            raise ValueError("max_retries: 0 to 20")
        if self.backoff < 0 or self.max_backoff < self.backoff:
            raise ValueError("backoff: 0 <= backoff <= max_backoff")

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Wait before retry number ``attempt`` (0-based): full jitter, at least Retry-After."""
        ceiling = min(self.max_backoff, self.backoff * (2**attempt))
        jittered = random.uniform(0, ceiling)
        if retry_after is not None:
            # A little jitter on top, so clients told the same instant do not return together.
            return retry_after + random.uniform(0, min(1.0, ceiling))
        return jittered


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """One retry about to happen: what failed and how long the client will wait."""

    method: str
    path: str
    attempt: int  # 1 for the first retry
    delay: float
    status: int | None  # None for a network error
    error: str
    idempotency_key: str | None


OnRetry = Callable[[RetryEvent], None]


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), if the answer has one."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


class Attempts:
    """The retry state of one call: decides, after each attempt, to retry (and wait) or stop."""

    def __init__(
        self, policy: RetryPolicy, on_retry: OnRetry | None, method: str, path: str,
        idempotency_key: str | None,
    ) -> None:  # fmt: skip
        """Start before the first attempt."""
        self._policy = policy
        self._on_retry = on_retry
        self._method, self._path, self._key = method, path, idempotency_key
        self.count = 0

    def _next(self, status: int | None, error: str, retry_after: float | None) -> float:
        delay = self._policy.delay(self.count, retry_after)
        self.count += 1
        event = RetryEvent(self._method, self._path, self.count, delay, status, error, self._key)
        log.info("retrying %s %s in %.2fs (%s)", self._method, self._path, delay, error)
        if self._on_retry is not None:
            self._on_retry(event)
        return delay

    def after_error(self, exc: httpx.TransportError) -> float:
        """The wait before retrying a transport error; raises when the error is final."""
        if not isinstance(exc, RETRY_ERRORS) or self.count >= self._policy.max_retries:
            tries = self.count + 1
            raise ConnectionFailed(
                "connection_failed",
                None,
                f"{self._method} {self._path}: {type(exc).__name__}: {exc or 'no detail'} "
                f"(after {tries} attempt{'s' if tries > 1 else ''})",
            ) from exc
        return self._next(None, f"{type(exc).__name__}: {exc}", None)

    def after_answer(self, response: httpx.Response) -> float | None:
        """None if the answer is final (the caller returns or raises), else the wait to retry.

        The response body must have been read already.
        """
        if response.is_success:
            return None
        status = response.status_code
        retry_after = retry_after_of(response.headers)
        retryable = status in RETRY_STATUSES and self.count < self._policy.max_retries
        if retryable and (retry_after is None or retry_after <= self._policy.max_retry_after):
            return self._next(status, f"HTTP {status}", retry_after)
        return None


def error_of(response: httpx.Response) -> TrailkeepError:
    """The typed error for a non-2xx answer (its body must have been read)."""
    return from_response(
        response.status_code,
        response.headers.get("content-type", ""),
        response.content,
        retry_after=retry_after_of(response.headers),
    )
