"""Export streams: how many may be open at once, and answers that hold a bounded buffer.

30 clients that opened an export and stopped reading once grew a server by 2.5 GiB: each
stream held a page of 5,000 entries, and the same bytes again in its connection's buffer.
A stream now reads the next page (``PAGE_ENTRIES``) only when the last one was sent, hands
it to the connection in pieces of at most ``PIECE_BYTES`` (the connection pauses the stream
once its buffer is full), and holds a slot, of which an app and a client have a bounded number.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Final

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from trailkeep.server.api.errors import Problem

#: Entries read from the store at a time.
PAGE_ENTRIES: Final = 500
#: Bytes handed to the connection at a time.
PIECE_BYTES: Final = 64 << 10


class ExportSlots:
    """Open exports, counted per app and per client, each under its cap."""

    def __init__(
        self, per_app: int, per_client: int, code: str = "too_many_exports", noun: str = "exports"
    ) -> None:
        self.per_app = per_app
        self.per_client = per_client
        self.code = code  # the 429's code: live streams count their own slots
        self.noun = noun
        self._apps: Counter[str] = Counter()
        self._clients: Counter[str] = Counter()

    def open_count(self) -> int:
        """Exports open on this node."""
        return sum(self._apps.values())

    def acquire(self, app_id: str, client: str) -> Slot:
        """A slot for one export; 429 ``too_many_exports`` when the app or the client is full."""
        if self._apps[app_id] >= self.per_app:
            raise Problem(
                self.code,
                f"this app already has {self.per_app} {self.noun} open; retry when one ends",
                {"Retry-After": "5"},
            )
        if self._clients[client] >= self.per_client:
            raise Problem(
                self.code,
                f"this address already has {self.per_client} {self.noun} open; retry when one ends",
                {"Retry-After": "5"},
            )
        self._apps[app_id] += 1
        self._clients[client] += 1
        return Slot(self, app_id, client)

    def _release(self, app_id: str, client: str) -> None:
        for counts, key in ((self._apps, app_id), (self._clients, client)):
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]  # no entry is kept for an app or a client with none open


class Slot:
    """One open export's place; released once, however the export ends."""

    def __init__(self, slots: ExportSlots, app_id: str, client: str) -> None:
        self._slots = slots
        self._key: tuple[str, str] | None = (app_id, client)

    def release(self) -> None:
        """Give the place back (a second call does nothing)."""
        if self._key is not None:
            key, self._key = self._key, None
            self._slots._release(*key)


class SlotStream(StreamingResponse):
    """A streaming answer that gives its export slot back when it ends, however it ends."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        slot: Slot,
        media_type: str,
        headers: Mapping[str, str],
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream, then release the slot (the end, a disconnect, or an error alike)."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()


def pieces(page: bytes) -> Iterator[bytes]:
    """``page`` in pieces of at most ``PIECE_BYTES``, for the connection to take one at a time."""
    view = memoryview(page)
    for start in range(0, len(page), PIECE_BYTES):
        yield bytes(view[start : start + PIECE_BYTES])
