"""A live-stream subscriber for tests: one real SSE connection read on a thread."""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any

import httpx
import pytest

from tests.integration.http_api import Entry, events_url, expect_status
from tests.servers import Server
from trailkeep.sdk.sse import EventParser, ServerEvent


class Subscriber:
    """One SSE connection read on a thread: its events (and comments) land in a queue."""

    def __init__(
        self, server: Server, app_id: str, token: str, params: Any = None, **headers: str
    ) -> None:
        self.events: queue.Queue[ServerEvent | None] = queue.Queue()
        self._parser = EventParser()
        self.resume_point: str | None = None
        self._client = httpx.Client(base_url=server.url, timeout=30)
        request = self._client.build_request(
            "GET", events_url(app_id, "events/stream"), params=params,
            headers={"Authorization": f"Bearer {token}", **headers},
        )  # fmt: skip
        self.response = self._client.send(request, stream=True)
        expect_status(self.response)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for chunk in self.response.iter_bytes():
                for event in self._parser.feed(chunk):
                    if event.data:  # not the id-only block that states the resume point
                        self.events.put(event)
                    else:
                        self.resume_point = event.id
        except httpx.HTTPError:
            pass  # closed by the test
        finally:
            self.events.put(None)

    @property
    def comments(self) -> int:
        """Comment lines (heartbeats) received so far."""
        return self._parser.comments

    def take(self, count: int, within: float = 30) -> list[ServerEvent]:
        """The next ``count`` events; fails if they do not come in time or the stream ends."""
        got: list[ServerEvent] = []
        deadline = time.monotonic() + within
        while len(got) < count:
            event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            assert event is not None, f"the stream ended after {len(got)} of {count} events"
            got.append(event)
        return got

    def nothing_more(self, wait: float = 0.5) -> None:
        """No further event arrives within ``wait`` seconds."""
        try:
            extra = self.events.get(timeout=wait)
        except queue.Empty:
            return
        pytest.fail(f"unexpected event {extra}")

    def close(self) -> None:
        """Hang up."""
        self.response.close()
        self._client.close()
        self._thread.join(10)


def entries_of(events: list[ServerEvent]) -> list[Entry]:
    """The entries of ``events``, each checked to carry its seq as its event id."""
    entries = [json.loads(event.data) for event in events]
    assert [e.event for e in events] == ["message"] * len(events)
    assert [event.id for event in events] == [str(e["seq"]) for e in entries]
    return entries
