"""The group-commit writer: concurrent appends share one transaction, so one fsync each batch.

Requests queue up while a commit is on disk; the next commit takes everything that queued. Under
no load a request is committed alone at once; under load, batches grow by themselves, and the
cost of durability is paid once per batch rather than once per entry.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from trailkeep.log.record import PendingEntry
from trailkeep.server.ingest.commit import append_groups
from trailkeep.server.ingest.rows import Head
from trailkeep.server.store import AppendTx, IdempotencyRecord, Store
from trailkeep.server.store.errors import StorageUnavailable, outage

log = logging.getLogger(__name__)


#: A group commit takes at most this many entries (a single request's may be more).
MAX_BATCH_ENTRIES = 5_000
#: How long an idempotency key is remembered, unless the settings say otherwise.
IDEMPOTENCY_TTL = timedelta(hours=24)


class IdempotencyConflict(Exception):
    """The idempotency key was used before with a different request."""


class WriterUnavailable(Exception):
    """The writer cannot take appends just now (its process is restarting); retry shortly."""


@dataclass(frozen=True, slots=True)
class Idempotency:
    """A write's idempotency key and the fingerprint of what it asked for."""

    key: str
    fingerprint: bytes

    @staticmethod
    def of(key: str, *parts: bytes) -> Idempotency:
        """Fingerprint a request from its parts (who asked, where, and the body)."""
        digest = hashlib.sha256()
        for part in parts:
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return Idempotency(key, digest.digest())


@dataclass(frozen=True, slots=True)
class Appended:
    """What an append produced: the stored entries, and whether this was a replay."""

    entries: list[bytes]
    first_seq: int
    replayed: bool = False


@dataclass(slots=True)
class _Request:
    app_id: str
    entries: Sequence[PendingEntry]
    idempotency: Idempotency | None
    future: asyncio.Future[Appended]
    result: Appended | BaseException | None = field(default=None)


@dataclass(frozen=True, slots=True)
class IngestStats:
    """Hooks for metrics: called after every commit with the batch size and its latency."""

    on_commit: Callable[[int, float], None] = lambda size, seconds: None


class Appender(Protocol):
    """What the server appends through: :class:`Ingest`, or a writer in its own process."""

    async def start(self) -> None:
        """Start taking appends."""

    async def stop(self) -> None:
        """Commit what is queued, then stop."""

    async def append(
        self, app_id: str, entries: Sequence[PendingEntry], idempotency: Idempotency | None = None
    ) -> Appended:
        """Append entries (all or none) and return them once they are durably committed."""


class Ingest:
    """Queue appends and commit them in batches, one transaction per batch."""

    def __init__(
        self,
        store: Store,
        *,
        max_batch_entries: int = MAX_BATCH_ENTRIES,
        idempotency_ttl: timedelta = IDEMPOTENCY_TTL,
        stats: IngestStats | None = None,
        on_appended: Callable[[set[str]], None] | None = None,
    ) -> None:
        self._store = store
        self._max = max_batch_entries
        self._ttl = idempotency_ttl
        self._stats = stats or IngestStats()
        self._on_appended = on_appended
        self._queue: deque[_Request] = deque()
        # Each app's log (size, tree frontier) after this node's last commit: the next append
        # usually starts right there, and then needs no tree read. Another node's append moves
        # the log on, the sizes differ, and the frontier is read from the database instead.
        self._heads: dict[str, Head] = {}
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None
        self._closing = False

    async def start(self) -> None:
        """Start the writer thread."""
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._run, args=(loop,), name="trailkeep-writer", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._thread is not None:
            # The writer schedules its last answers on this loop before it ends, so they run
            # before this wakes up: every queued append is answered when stop() returns.
            await asyncio.to_thread(self._thread.join)

    async def append(
        self, app_id: str, entries: Sequence[PendingEntry], idempotency: Idempotency | None = None
    ) -> Appended:
        """Append entries (all or none) and return them once they are durably committed."""
        if self._closing or self._thread is None:
            raise RuntimeError("the writer is not running")
        future: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(app_id, entries, idempotency, future))
        self._wakeup.set()
        return await future

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        # A thread of its own, not asyncio.to_thread per commit: a commit never queues in the
        # loop's default pool behind reads and credential lookups (so writes keep their pace
        # beside clients listing the log), and the next one starts as soon as the last is on
        # disk, without waiting for the busy loop to hand it over.
        while True:
            self._wakeup.wait()
            # Cleared before the queue is read: an append after this sets it again.
            self._wakeup.clear()
            while self._queue:
                batch = self._take()
                started = time.perf_counter()
                try:
                    self._commit_batch(batch)
                except BaseException as exc:  # pragma: no cover - the commit itself failed
                    for request in batch:
                        request.result = exc
                loop.call_soon_threadsafe(self._settle, batch, time.perf_counter() - started)
            if self._closing and not self._queue:
                return

    def _settle(self, batch: list[_Request], seconds: float) -> None:
        """Answer a committed batch's requests, on the event loop."""
        self._stats.on_commit(sum(len(r.entries) for r in batch), seconds)
        for request in batch:
            if request.future.done():  # the caller went away
                continue
            if isinstance(request.result, BaseException):
                request.future.set_exception(request.result)
            elif request.result is not None:
                request.future.set_result(request.result)
        if self._on_appended is not None:
            self._on_appended({r.app_id for r in batch})

    def _take(self) -> list[_Request]:
        taken: list[_Request] = []
        total = 0
        while self._queue and (not taken or total + len(self._queue[0].entries) <= self._max):
            request = self._queue.popleft()
            taken.append(request)
            total += len(request.entries)
        return taken

    def _commit_batch(self, batch: list[_Request]) -> None:
        try:
            self._commit(batch)
        except Exception as exc:
            reason = outage(exc)
            if reason is not None:
                # The disk or the database, not a request: each alone would fail the same way.
                # None of them is acknowledged: each caller gets a 503 and retries (with its
                # Idempotency-Key, which finds a commit a lost connection hid). The next batch
                # tries the database again: that is how the writer recovers, without a restart.
                log.warning("append failed, storage unavailable (%s): %s", reason, exc)
                for request in batch:
                    request.result = StorageUnavailable(reason)
                return
            if len(batch) == 1:
                log.warning("append failed: %s", exc)
                batch[0].result = exc
                return
            # One request spoiled the shared transaction: commit each alone, so only it fails.
            log.info("batch of %d failed (%s); committing one by one", len(batch), exc)
            for request in batch:
                self._commit_batch([request])

    def _commit(self, batch: list[_Request]) -> None:
        by_app: dict[str, list[_Request]] = {}
        for request in batch:
            by_app.setdefault(request.app_id, []).append(request)
        replays: list[tuple[_Request, IdempotencyRecord]] = []
        heads: dict[str, Head] = {}
        with self._store.append_tx() as tx:
            now = datetime.now(UTC)
            # A fixed order of row locks keeps two nodes' transactions from deadlocking.
            for app_id in sorted(by_app):
                replays += self._append_app(tx, app_id, by_app[app_id], now, heads)
            for request, record in replays:
                request.result = Appended(
                    tx.entries(request.app_id, record.seq, record.count), record.seq, True
                )
        # Only now is the transaction committed: a rolled-back head must not be kept.
        self._heads.update(heads)

    def _append_app(
        self,
        tx: AppendTx,
        app_id: str,
        requests: list[_Request],
        now: datetime,
        heads: dict[str, Head],
    ) -> list[tuple[_Request, IdempotencyRecord]]:
        fresh: list[_Request] = []
        # A replay points at the stored record, or at a request earlier in this same batch.
        replays: list[tuple[_Request, IdempotencyRecord | _Request]] = []
        claimed: dict[str, _Request] = {}
        for request in requests:
            key = request.idempotency
            if key is None:
                fresh.append(request)
                continue
            original: IdempotencyRecord | _Request | None = claimed.get(key.key) or tx.idempotency(
                app_id, key.key, self._ttl
            )
            if original is None:
                claimed[key.key] = request
                fresh.append(request)
            elif _fingerprint(original) != key.fingerprint:
                request.result = IdempotencyConflict(key.key)
            else:
                replays.append((request, original))
        if fresh:
            heads[app_id] = self._append_fresh(tx, app_id, fresh, now)
        return [(request, _record(original)) for request, original in replays]

    def _append_fresh(
        self, tx: AppendTx, app_id: str, fresh: list[_Request], now: datetime
    ) -> Head:
        """Append the requests' entries and grow the tree; return the app's log after them."""
        groups = [request.entries for request in fresh]
        built = append_groups(tx, app_id, groups, now, self._heads.get(app_id))
        first = built.start
        for request, stored in zip(fresh, built.stored, strict=True):
            request.result = Appended(stored, first)
            if request.idempotency is not None:
                tx.remember(
                    app_id,
                    request.idempotency.key,
                    IdempotencyRecord(request.idempotency.fingerprint, first, len(stored)),
                )
            first += len(stored)
        return built.head


def _fingerprint(original: IdempotencyRecord | _Request) -> bytes:
    if isinstance(original, IdempotencyRecord):
        return original.fingerprint
    assert original.idempotency is not None
    return original.idempotency.fingerprint


def _record(original: IdempotencyRecord | _Request) -> IdempotencyRecord:
    if isinstance(original, IdempotencyRecord):
        return original
    result = original.result
    assert isinstance(result, Appended)
    return IdempotencyRecord(_fingerprint(original), result.first_seq, len(result.entries))
