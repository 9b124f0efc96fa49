"""Prometheus metrics of one node: requests, entries appended, batch sizes, commit latency."""

from __future__ import annotations

import functools
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """One registry per server, so several apps can live in one process (as in tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "trailkeep_http_requests", "HTTP requests answered.", ["method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.appended = Counter(
            "trailkeep_entries_appended", "Entries committed to the log.", registry=self.registry
        )
        self.batch_size = Histogram(
            "trailkeep_commit_batch_entries", "Entries per group commit.",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
            registry=self.registry,
        )  # fmt: skip
        self.commit_seconds = Histogram(
            "trailkeep_commit_seconds", "Latency of one group commit (including fsync).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )  # fmt: skip

        self.redis_failures = Counter(
            "trailkeep_rate_limit_redis_failures",
            "Requests whose rate limit could not be counted because Redis was unreachable, "
            "by limit and by what was done (open: let through; closed: refused with 503).",
            ["limit", "policy"], registry=self.registry,
        )  # fmt: skip
        self.cache_entries = Gauge(
            "trailkeep_auth_cache_entries", "Entries held in each credential cache.", ["cache"],
            registry=self.registry,
        )  # fmt: skip

        self.stream_dropped = Counter(
            "trailkeep_stream_dropped",
            "Live streams dropped because their client fell too far behind.",
            registry=self.registry,
        )
        self.stream_subscribers = Gauge(
            "trailkeep_stream_subscribers", "Live streams open on this node.",
            registry=self.registry,
        )  # fmt: skip

    def track_caches(self, sizes: Callable[[], dict[str, int]]) -> None:
        """Report the credential caches' sizes, read when the metrics are scraped."""
        for name in sizes():
            self.cache_entries.labels(name).set_function(functools.partial(_size, sizes, name))

    def on_redis_failure(self, limit: str, policy: str) -> None:
        """Count one request the limiter could not count."""
        self.redis_failures.labels(limit, policy).inc()

    def on_commit(self, entries: int, seconds: float) -> None:
        """Record one group commit."""
        self.appended.inc(entries)
        self.batch_size.observe(entries)
        self.commit_seconds.observe(seconds)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)


def _size(sizes: Callable[[], dict[str, int]], name: str) -> float:
    return float(sizes()[name])
