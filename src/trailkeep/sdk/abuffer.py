"""The asyncio twin of :class:`~trailkeep.sdk.buffer.AuditBuffer`: a task sends the batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Unpack

from .buffer import BufferState, BufferStats, OnDrop, OnError, Queued, by_context, splittable
from .models import EventFields

if TYPE_CHECKING:
    from .aclient import AsyncClient

log = logging.getLogger("trailkeep.sdk")


class AsyncAuditBuffer:
    """The asyncio twin of :class:`AuditBuffer`: a task sends the batches.

    Create it inside the event loop and ``await buffer.aclose()`` before the loop ends (for
    example in the app's lifespan): an event loop cannot be driven from an exit hook.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        max_batch: int = 100,
        flush_interval: float = 1.0,
        max_queue: int = 10_000,
        on_drop: OnDrop | None = None,
        on_error: OnError | None = None,
    ) -> None:
        """Configure the buffer; its task starts with the first entry."""
        self._client = client
        self._state = BufferState(
            max_batch, flush_interval, max_queue, on_drop, on_error,
            client._core.builder.metadata_max_bytes,
        )  # fmt: skip
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def log(
        self,
        action: str,
        *,
        session: str | None = None,
        client_ip: str | None = None,
        user_agent: str | None = None,
        **fields: Unpack[EventFields],
    ) -> bool:
        """Queue an entry (no await needed); False if it was dropped (and reported)."""
        event = self._state.event(action, fields)
        context = self._client._core.context(session, client_ip, user_agent)
        outcome = self._state.offer(Queued(event, context, time.monotonic()))
        if outcome is False:
            self._state.report_drop(event, "buffer closed" if self.closed else "queue full")
            return False
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="trailkeep-audit-buffer"
            )
        if outcome is None:
            self._wake.set()
        return True

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` began."""
        return self._state.closing

    @property
    def dropped(self) -> int:
        """Entries refused because the queue was full (or the buffer closed)."""
        return self._state.dropped

    def stats(self) -> BufferStats:
        """Counters: pending, sent, failed, dropped, batches."""
        return self._state.stats()

    async def flush(self) -> None:
        """Send everything queued so far (or report it failed)."""
        target = self._state.accepted
        self._state.flush_upto = max(self._state.flush_upto, target)
        self._wake.set()
        while self._state.done < target and self._task is not None and not self._task.done():
            self._progress.clear()
            await self._progress.wait()

    async def aclose(self) -> None:
        """Flush and stop the task."""
        self._state.closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._state.dropped:
            log.warning("trailkeep: %d audit entries were dropped", self._state.dropped)

    async def __aenter__(self) -> AsyncAuditBuffer:
        """Use as an async context manager that closes (and so flushes) the buffer."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the buffer."""
        await self.aclose()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            batch, wait = self._state.ready(time.monotonic())
            if batch is None:
                if self._state.closing and not self._state.items:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            await self._send(batch)
            self._state.done += len(batch)
            self._progress.set()

    async def _send(self, batch: list[Queued]) -> None:
        for context, events in by_context(batch):
            try:
                await self._client.audit.send_batch(events, context)
            except Exception as exc:
                if not splittable(exc, events):
                    self._state.report_failure(exc, events)
                    continue
                for event in events:
                    try:
                        await self._client.audit.send_batch([event], context)
                    except Exception as one:
                        self._state.report_failure(one, [event])
                    else:
                        self._state.sent += 1
                        self._state.batches += 1
            else:
                self._state.sent += len(events)
                self._state.batches += 1
