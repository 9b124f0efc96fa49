"""uvicorn's httptools protocol with a bound on request headers, in size and in time.

httptools buffers a header until it is complete, with no limit of its own (a 64 MiB header got
a 200), and uvicorn times out idle keep-alive connections but not a client that sends its
headers a byte at a time. ``GuardedHttpTools`` answers 431 once a request's line and headers
exceed ``TRAILKEEP_HEADER_MAX_BYTES``, and 408 when they have not all arrived within
``TRAILKEEP_HEADER_TIMEOUT_SECONDS`` of the connection opening or the request's first byte,
and cuts a connection whose client has not read for ``TRAILKEEP_SEND_STALL_SECONDS``.
`trailkeep serve` hands it to uvicorn as ``http=PROTOCOL`` (an import path, so that worker
processes load it too). Bodies are bounded by ``RequestGuard`` (guard.py).
"""

from __future__ import annotations

import asyncio
import functools
from http import HTTPStatus
from typing import Final

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from trailkeep.server.settings import Settings

PROTOCOL: Final = "trailkeep.server.api.protocol:GuardedHttpTools"
#: After a refusal, what the client still sends is read and dropped this long before closing:
#: closing with unread bytes resets the connection, and the client would lose the answer.
LINGER_SECONDS: Final = 2.0


@functools.cache
def _limits() -> tuple[int, float, float]:
    # Read once per process: every connection of a node shares them.
    settings = Settings()
    return settings.header_max_bytes, settings.header_timeout_seconds, settings.send_stall_seconds


def refusal(status: int, code: str, detail: str) -> bytes:
    """A whole problem+json answer that closes the connection, as raw HTTP/1.1 bytes."""
    phrase = HTTPStatus(status).phrase
    body = orjson.dumps({
        "type": f"urn:trailkeep:problem:{code}", "title": phrase, "status": status,
        "code": code, "detail": detail, "instance": "",
    })  # fmt: skip
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol; request headers are bounded in bytes and in time."""

    _awaiting_headers = True
    _header_bytes = 0
    _completed = 0  # requests whose last byte has been parsed on this connection
    _header_timer: asyncio.TimerHandle | None = None
    _refusal: bytes | None = None
    _stall_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock: a new connection must send its headers in time too."""
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clocks."""
        self._disarm()
        self._unstall()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The client's buffer is full: it has that long to read, or the connection is cut.

        A client that stops reading an answer (an export, say) would otherwise hold the
        answer's task, its buffers and its export slot for as long as it keeps the connection.
        """
        super().pause_writing()
        self._unstall()
        self._stall_timer = self.loop.call_later(_limits()[2], self._stalled)

    def resume_writing(self) -> None:
        """The client reads again."""
        self._unstall()
        super().resume_writing()

    def _unstall(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _stalled(self) -> None:
        self._stall_timer = None
        # Nothing can be said to a client that does not read: the connection is cut, which
        # ends the answer as a hang-up would (its task stops, its slot is released).
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        """Parse, then refuse a request whose headers have grown past the limit."""
        if self._refusal is not None:
            return  # refused: nothing more is parsed, the connection is closing
        headers_before, completed_before = self._awaiting_headers, self._completed
        super().data_received(data)
        if headers_before and self._awaiting_headers and self._completed == completed_before:
            # Counted after parsing, and only for a chunk that was headers throughout: one
            # that held the end of a request (its body, say) is not counted against the next
            # request's headers. httptools holds at most one chunk more than the limit.
            self._header_bytes += len(data)
            maximum = _limits()[0]
            if self._header_bytes > maximum and self._refusal is None:
                self._refuse(431, "headers_too_large", f"request headers over {maximum:,} bytes")

    def on_message_begin(self) -> None:
        """A request's first byte: its headers have until the deadline to arrive."""
        super().on_message_begin()
        self._awaiting_headers = True
        self._header_bytes = 0
        if self._header_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        """The headers are in: the clock stops, the request goes to the app."""
        self._awaiting_headers = False
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """What comes next on this connection is another request's headers."""
        super().on_message_complete()
        self._completed += 1
        self._awaiting_headers = True
        self._header_bytes = 0

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(_limits()[1], self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._awaiting_headers and (self.cycle is None or self.cycle.response_complete):
            seconds = _limits()[1]
            self._refuse(408, "request_timeout", f"request headers not sent within {seconds:g} s")

    def _refuse(self, status: int, code: str, detail: str) -> None:
        self._disarm()
        self._refusal = refusal(status, code, detail)
        if self.transport.is_closing():
            return
        self.transport.write(self._refusal)
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the answer is whole: the client may read it now
        self.flow.resume_reading()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
