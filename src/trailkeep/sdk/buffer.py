"""Background batching for hot request paths: :class:`AuditBuffer` (a thread).

``buffer.log(...)`` only queues the entry (with the end user bound to the current request) and
returns at once; a worker sends the queue in batches when ``max_batch`` entries are waiting or
the oldest has waited ``flush_interval`` seconds. The queue is bounded: an entry that does not
fit is dropped *and reported* (``on_drop`` callback, else a logged warning) and counted in
``dropped``. Entries the server refuses after every retry are reported the same way through
``on_error`` and counted in ``failed``. The buffer flushes at interpreter exit.
:class:`~trailkeep.sdk.abuffer.AsyncAuditBuffer` is its asyncio twin.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Unpack

from .build import checked_body
from .context import RequestContext
from .errors import InvalidRequest, PayloadTooLarge, local_error
from .models import Event, EventFields

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("trailkeep.sdk")

OnDrop = Callable[[Event, int], None]
OnError = Callable[[BaseException, Sequence[Event]], None]
WARN_EVERY_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True)
class Queued:
    """An entry waiting to be sent, with the end user it was logged for."""

    event: Event
    context: RequestContext
    at: float


@dataclass(frozen=True, slots=True)
class BufferStats:
    """Counts since the buffer started: waiting, sent, refused or unsent, dropped, batches."""

    pending: int
    sent: int
    failed: int
    dropped: int
    batches: int


def by_context(batch: Sequence[Queued]) -> list[tuple[RequestContext, list[Event]]]:
    """Split a batch per end user (a request forwards one user), keeping the order."""
    groups: dict[RequestContext, list[Event]] = {}
    for item in batch:
        groups.setdefault(item.context, []).append(item.event)
    return list(groups.items())


class BufferState:
    """The queue and counters both buffers share; callers hold their own lock around it."""

    def __init__(
        self, max_batch: int, flush_interval: float, max_queue: int, on_drop: OnDrop | None,
        on_error: OnError | None, metadata_max_bytes: int | None,
    ) -> None:  # fmt: skip
        if not 1 <= max_batch <= 1000:
            raise ValueError("max_batch: 1 to 1,000 (the batch route's limit)")
        if flush_interval <= 0:
            raise ValueError("flush_interval: more than 0 seconds")
        if max_queue < 1:
            raise ValueError("max_queue: at least 1")
        self.max_batch, self.flush_interval, self.max_queue = max_batch, flush_interval, max_queue
        self.on_drop, self.on_error = on_drop, on_error
        self.metadata_max_bytes = metadata_max_bytes
        self.items: deque[Queued] = deque()
        self.accepted = self.taken = self.done = self.flush_upto = 0
        self.sent = self.failed = self.dropped = self.batches = 0
        self.closing = False
        self._warned_at = -WARN_EVERY_SECONDS

    def event(self, action: str, fields: EventFields) -> Event:
        """The event to queue, refused now (not at send time) if the server would refuse it."""
        try:
            event = Event(action, **fields)
        except TypeError as exc:
            raise local_error("invalid_request", str(exc)) from None
        checked_body(event, "", self.metadata_max_bytes)
        return event

    def offer(self, item: Queued) -> bool | None:
        """Queue ``item``: True, or False when full/closed; None if the worker must wake."""
        if self.closing or len(self.items) >= self.max_queue:
            self.dropped += 1
            return False
        self.items.append(item)
        self.accepted += 1
        wake = len(self.items) == 1 or len(self.items) >= self.max_batch
        return None if wake else True

    def ready(self, now: float) -> tuple[list[Queued] | None, float | None]:
        """(batch to send now, or None; else how long to wait: None means until woken)."""
        if not self.items:
            return None, None
        due = self.items[0].at + self.flush_interval - now
        urgent = len(self.items) >= self.max_batch or self.closing or self.flush_upto > self.taken
        if not urgent and due > 0:
            return None, due
        count = min(self.max_batch, len(self.items))
        self.taken += count
        return [self.items.popleft() for _ in range(count)], None

    def report_drop(self, event: Event, why: str) -> None:
        """Tell the application an entry was not queued (never silently)."""
        if self.on_drop is not None:
            try:
                self.on_drop(event, self.dropped)
            except Exception:
                log.exception("trailkeep: the on_drop callback failed")
            return
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(
                "trailkeep: audit entry %r dropped (%s); %d dropped so far. Raise max_queue or "
                "pass on_drop= to handle drops.", event.action, why, self.dropped,
            )  # fmt: skip

    def report_failure(self, exc: BaseException, events: Sequence[Event]) -> None:
        """Tell the application entries could not be recorded."""
        self.failed += len(events)
        if self.on_error is not None:
            try:
                self.on_error(exc, events)
            except Exception:
                log.exception("trailkeep: the on_error callback failed")
            return
        log.error("trailkeep: %d audit entries were not recorded: %s", len(events), exc)

    def stats(self) -> BufferStats:
        """A snapshot of the counters."""
        return BufferStats(len(self.items), self.sent, self.failed, self.dropped, self.batches)


def splittable(exc: Exception, events: Sequence[Event]) -> bool:
    # A batch is all or none: when the server refuses one entry of it, send the entries one
    # by one so that only the bad one is lost.
    return isinstance(exc, InvalidRequest | PayloadTooLarge) and len(events) > 1


class AuditBuffer:
    """Queues entries in memory and sends them in batches from a background thread."""

    def __init__(
        self,
        client: Client,
        *,
        max_batch: int = 100,
        flush_interval: float = 1.0,
        max_queue: int = 10_000,
        on_drop: OnDrop | None = None,
        on_error: OnError | None = None,
        exit_timeout: float = 30.0,
    ) -> None:
        """Start the worker thread; the buffer is flushed at exit (or by :meth:`close`)."""
        self._client = client
        self._state = BufferState(
            max_batch, flush_interval, max_queue, on_drop, on_error,
            client._core.builder.metadata_max_bytes,
        )  # fmt: skip
        self._cond = threading.Condition()
        self._exit_timeout = exit_timeout
        # A daemon thread, so that interpreter exit runs the atexit flush instead of waiting.
        self._thread = threading.Thread(
            target=self._run, name="trailkeep-audit-buffer", daemon=True
        )
        self._thread.start()
        atexit.register(self._at_exit)

    def log(
        self,
        action: str,
        *,
        session: str | None = None,
        client_ip: str | None = None,
        user_agent: str | None = None,
        **fields: Unpack[EventFields],
    ) -> bool:
        """Queue an entry (fields as :meth:`Audit.log`); False if it was dropped (and reported)."""
        event = self._state.event(action, fields)
        context = self._client._core.context(session, client_ip, user_agent)
        with self._cond:
            outcome = self._state.offer(Queued(event, context, time.monotonic()))
            if outcome is None:
                self._cond.notify_all()
        if outcome is False:
            self._state.report_drop(event, "buffer closed" if self.closed else "queue full")
        return outcome is not False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` began."""
        return self._state.closing

    @property
    def dropped(self) -> int:
        """Entries refused because the queue was full (or the buffer closed)."""
        return self._state.dropped

    def stats(self) -> BufferStats:
        """Counters: pending, sent, failed, dropped, batches."""
        with self._cond:
            return self._state.stats()

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far; True once it is all sent (or reported failed)."""
        with self._cond:
            target = self._state.accepted
            self._state.flush_upto = max(self._state.flush_upto, target)
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._state.done >= target, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush and stop the worker; True if everything was sent in time."""
        with self._cond:
            self._state.closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        atexit.unregister(self._at_exit)
        if self._state.dropped:
            log.warning("trailkeep: %d audit entries were dropped", self._state.dropped)
        return not self._thread.is_alive()

    def __enter__(self) -> AuditBuffer:
        """Use as a context manager that closes (and so flushes) the buffer."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the buffer."""
        self.close()

    def _at_exit(self) -> None:
        if not self.close(self._exit_timeout):
            log.error("trailkeep: audit entries still unsent at exit after %ss", self._exit_timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    batch, wait = self._state.ready(time.monotonic())
                    if batch is not None:
                        break
                    if self._state.closing and not self._state.items:
                        return
                    self._cond.wait(wait)
            self._send(batch)
            with self._cond:
                self._state.done += len(batch)
                self._cond.notify_all()

    def _send(self, batch: list[Queued]) -> None:
        for context, events in by_context(batch):
            try:
                self._client.audit.send_batch(events, context)
            except Exception as exc:
                if not splittable(exc, events):
                    self._state.report_failure(exc, events)
                    continue
                for event in events:
                    try:
                        self._client.audit.send_batch([event], context)
                    except Exception as one:
                        self._state.report_failure(one, [event])
                    else:
                        self._state.sent += 1
                        self._state.batches += 1
            else:
                self._state.sent += len(events)
                self._state.batches += 1
