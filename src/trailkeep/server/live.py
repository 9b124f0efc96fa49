"""Live feeds: new entries fanned out to an app's stream subscribers (DESIGN §6, "Live stream").

Each app with subscribers on this node has one :class:`Feed`: a task that reads the entries
appended since it last looked, once, and offers each to every subscriber of the app (never
one query per subscriber). This node's own commits wake it at once (``Hub.wake``, called after
each commit); entries appended by other nodes on a shared PostgreSQL are found by checking the
app's log size every ``poll`` seconds, a one-row read, only while the app has subscribers.

A subscriber holds at most ``bound`` entries waiting to be sent. One that falls further behind
(its client stopped reading) is dropped, not buffered: it is told where it stopped, and resumes
from there with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Final

import orjson

from trailkeep.log.query import Filters
from trailkeep.server.store import Store

log = logging.getLogger(__name__)

#: Entries a feed (or a subscriber catching up) reads from the store at a time.
FEED_PAGE: Final = 500
_EVERYTHING: Final = Filters()  # a feed reads every entry, stubs of erased ones included
#: Waiting events sent as one body chunk, at most: bounds a chunk to about the transport's
#: write buffer, so a stream holds little more than its waiting events while it sends.
SEND_BATCH: Final = 64


def sse_event(seq: int, entry: bytes) -> bytes:
    """An entry as its Server-Sent Event, byte for byte what every subscriber of it is sent.

    Stored entries are compact JSON, with no line break outside a string (JSON escapes those
    inside one), so the entry is one ``data:`` line as it is. ``\\r\\n`` as sse-starlette ends
    the stream's other lines.
    """
    return b"id: %d\r\ndata: %b\r\n\r\n" % (seq, entry)


class Subscriber:
    """One open stream: its filters, the events waiting for it, and where it stands."""

    def __init__(self, filters: Filters, bound: int, last: int) -> None:
        self.filters = filters
        self.everything = filters == _EVERYTHING  # no filter: no entry needs testing
        self.bound = bound
        self.last = last  # the last seq this subscriber has (or has queued): nothing at or before
        self.live = False  # False while it catches up from the store: the feed passes it by
        self.dropped = False
        # (seq, SSE event bytes): the bytes are the feed's, one object shared by every subscriber.
        self.pending: deque[tuple[int, bytes]] = deque()
        # Set only while its stream waits for events: a feed's offer to a subscriber that is
        # busy sending costs no wake-up (an asyncio.Event's set and wait per entry did).
        self.waiter: asyncio.Future[None] | None = None

    def offer(self, events: list[tuple[int, bytes]], parsed: list[dict[str, object]]) -> None:
        """Queue the events of a page the feed read that are new to this subscriber and match.

        ``parsed`` holds the page's entries parsed, in the same order, or is empty when no
        subscriber of the feed has a filter.
        """
        if not self.live or self.dropped:
            return
        last = self.last
        if events[0][0] <= last:
            new = [(i, event) for i, event in enumerate(events) if event[0] > last]
        else:
            new = list(enumerate(events))
        if not self.everything:
            new = [(i, event) for i, event in new if self.filters.matches(parsed[i])]
        if not new:
            return
        if len(self.pending) + len(new) > self.bound:
            # Too far behind: what is waiting is let go at once (memory stays bounded), and the
            # stream ends with an `event: dropped` once its connection takes bytes again. The
            # entries that fitted are let go too, as they were when offered one at a time.
            self.dropped = True
            self.pending.clear()
        else:
            self.pending.extend(event for _, event in new)
            self.last = new[-1][1][0]
        self.wake()

    def wake(self) -> None:
        """Let its stream run if it waits."""
        if self.waiter is not None:
            _wake_up(self.waiter)

    def take(self) -> tuple[int, bytes]:
        """The waiting events (at most ``SEND_BATCH``) as one body chunk, and the last one's seq.

        One ASGI send (and one socket write) for all of them: the per-send cost, not the
        bytes, is most of what a stream costs the event loop.
        """
        pending = self.pending
        if len(pending) <= SEND_BATCH:
            last = pending[-1][0]
            chunk = b"".join([event for _, event in pending])
            pending.clear()
            return last, chunk
        events = [pending.popleft() for _ in range(SEND_BATCH)]
        return events[-1][0], b"".join([event for _, event in events])


def _wake_up(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Feed:
    """One app's reader of new entries, alive while the app has subscribers on this node."""

    def __init__(self, hub: Hub, app_id: str, head: int) -> None:
        self.hub = hub
        self.app_id = app_id
        self.head = head  # the last seq read and offered (-1: none)
        self.subscribers: set[Subscriber] = set()
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Read what was appended after each wake (or poll), until no one subscribes."""
        while self.subscribers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), self.hub.poll)
            self.wakeup.clear()
            try:
                await self.read_new()
            except Exception as exc:
                # The database may be restarting: subscribers wait, and the next poll retries.
                log.warning("live feed of %s could not read new entries: %s", self.app_id, exc)

    async def read_new(self) -> None:
        """Offer every entry after ``head`` to every subscriber, a page at a time."""
        store = self.hub.store
        size = await asyncio.to_thread(store.log_size, self.app_id)
        # Pages no larger than a subscriber's bound: one page never overflows a subscriber that
        # kept up with the last one (a batch of 1,000 arrives at once).
        limit = min(FEED_PAGE, self.hub.bound)
        while self.head < size - 1 and self.subscribers:
            rows = await asyncio.to_thread(
                store.page, self.app_id, _EVERYTHING, self.head, limit, False
            )
            if rows:
                # Each entry is encoded once and parsed at most once, for all subscribers.
                events = [(seq, sse_event(seq, entry)) for seq, entry in rows]
                filtered = any(not s.everything for s in self.subscribers)
                parsed = [orjson.loads(entry) for _, entry in rows] if filtered else []
                for subscriber in tuple(self.subscribers):
                    subscriber.offer(events, parsed)
                    if subscriber.dropped:
                        self.subscribers.discard(subscriber)
                self.head = rows[-1][0]
            if len(rows) < limit:
                # Read to the end of what `size` counted (purged seqs have no rows at all).
                self.head = max(self.head, size - 1)
                return


class Hub:
    """This node's feeds, one per app with subscribers."""

    def __init__(self, store: Store, bound: int, poll: float) -> None:
        self.store = store
        self.bound = bound
        self.poll = poll
        self._feeds: dict[str, Feed] = {}

    def wake(self, app_ids: set[str]) -> None:
        """These apps' logs grew on this node (called on the event loop after each commit)."""
        for app_id in app_ids:
            feed = self._feeds.get(app_id)
            if feed is not None:
                feed.wakeup.set()

    def subscribers(self) -> int:
        """Open subscriptions on this node."""
        return sum(len(feed.subscribers) for feed in self._feeds.values())

    async def head(self, app_id: str) -> int:
        """The app's last seq now (-1 for an empty log)."""
        return await asyncio.to_thread(self.store.log_size, app_id) - 1

    async def subscribe(self, app_id: str, filters: Filters, after: int) -> Subscriber:
        """A subscriber of the app's entries after seq ``after``, still to catch up."""
        feed = self._feeds.get(app_id)
        if feed is None:
            head = await self.head(app_id)
            feed = self._feeds.get(app_id)  # another subscriber may have made it meanwhile
            if feed is None:
                feed = self._feeds[app_id] = Feed(self, app_id, head)
        subscriber = Subscriber(filters, self.bound, after)
        feed.subscribers.add(subscriber)
        if feed.task is None or feed.task.done():
            feed.task = asyncio.create_task(feed.run(), name=f"trailkeep-live-{app_id}")
        return subscriber

    def feed_head(self, app_id: str) -> int:
        """The last seq the app's feed has offered (-1 when it has none)."""
        feed = self._feeds.get(app_id)
        return -1 if feed is None else feed.head

    async def follow(
        self, app_id: str, subscriber: Subscriber, seconds: float
    ) -> AsyncIterator[tuple[int, bytes]]:
        """The subscriber's events as body chunks, each with its last seq: first from the store,
        then from the feed.

        Ends when the subscriber is dropped or after ``seconds``. No entry is missed or repeated
        at the switch: the subscriber turns live only right after a short page read while the
        feed stood still, so everything the feed had offered before it was in that page's reach.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            known = self.feed_head(app_id)
            rows = await asyncio.to_thread(
                self.store.page, app_id, subscriber.filters, subscriber.last, FEED_PAGE, False
            )
            caught_up = len(rows) < FEED_PAGE
            last = rows[-1][0] if rows else subscriber.last
            if caught_up:
                last = max(last, known)  # the page saw every entry up to `known`
            if caught_up and self.feed_head(app_id) == known:
                subscriber.last, subscriber.live = last, True  # no await since the check
            else:
                subscriber.last = last
            if rows:
                chunk = b"".join([sse_event(seq, entry) for seq, entry in rows])
                yield rows[-1][0], chunk
                del chunk
            del rows
            if subscriber.live:
                break
        while not subscriber.dropped and subscriber.live:
            if subscriber.pending:
                yield subscriber.take()
                continue
            left = deadline - loop.time()
            if left <= 0:
                return
            # A bare future and timer: asyncio.wait_for would wrap each wait in a task of its own.
            waiter = subscriber.waiter = loop.create_future()
            timer = loop.call_later(left, _wake_up, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                subscriber.waiter = None

    def unsubscribe(self, app_id: str, subscriber: Subscriber) -> None:
        """Forget a subscriber; the app's feed ends with its last one."""
        subscriber.pending.clear()
        feed = self._feeds.get(app_id)
        if feed is None:
            return
        feed.subscribers.discard(subscriber)
        if not feed.subscribers:
            del self._feeds[app_id]
            feed.wakeup.set()  # its task sees no subscribers and returns

    async def stop(self) -> None:
        """End every feed."""
        feeds, self._feeds = list(self._feeds.values()), {}
        for feed in feeds:
            feed.subscribers.clear()
            if feed.task is not None:
                feed.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feed.task
