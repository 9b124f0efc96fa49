"""Server-Sent Events as the live stream sends them, parsed without I/O (h11 style).

:class:`EventParser` is fed the stream's bytes in whatever chunks they arrive and hands back
the events they complete; the sync and the async stream both read through it.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One event: its type (``message`` unless named), ``id`` and ``data``."""

    event: str
    data: str
    id: str | None


#: A longer line is not an event this server sends: refused rather than buffered without end.
LINE_MAX = 16 << 20

# CR, LF or CRLF only, as SSE says. Not ``str.splitlines``: an entry's JSON may hold U+2028 or
# U+0085 unescaped, and those are no line ends here.
_LINE_END = re.compile(rb"\r\n|\r|\n")


class EventParser:
    """An incremental SSE parser: ``feed`` it chunks, get the events they complete.

    WHATWG rules: comments (heartbeats) skipped and counted in ``comments``, data lines joined
    with ``\\n``. A block with an id and no data is returned too (with empty ``data``): it
    dispatches no event, but it moves where a reconnection resumes.
    """

    def __init__(self) -> None:
        """Start at the beginning of a stream."""
        self.comments = 0
        self._pending: list[bytes] = []  # the start of a line whose end has not come yet
        self._pending_size = 0
        self._after_cr = False  # the last chunk ended with CR: an LF opening the next is its pair
        self._event = "message"
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[ServerEvent]:
        """The events that ``chunk`` completes; ValueError past :data:`LINE_MAX`."""
        if not chunk:
            return []
        if self._after_cr:
            self._after_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
                if not chunk:
                    return []
        parts = _LINE_END.split(chunk)
        rest = parts.pop()
        if not parts:  # no line ends here: keep the pieces, joined once the line ends
            self._hold(rest)
            return []
        if self._pending:
            parts[0] = b"".join(self._pending) + parts[0]
            self._pending, self._pending_size = [], 0
        self._after_cr = chunk[-1:] == b"\r"
        events: list[ServerEvent] = []
        for line in parts:
            if len(line) > LINE_MAX:
                raise ValueError(f"a stream line longer than {LINE_MAX} bytes")
            self._line(line.decode(), events)
        if rest:
            self._hold(rest)
        return events

    def end(self) -> list[ServerEvent]:
        """The stream ended: the events still due (an unfinished event is discarded, as WHATWG
        says: an event is dispatched only by its blank line)."""
        self._pending, self._pending_size, self._after_cr = [], 0, False
        self._event, self._data, self._id = "message", [], None
        return []

    def _hold(self, piece: bytes) -> None:
        self._pending.append(piece)
        self._pending_size += len(piece)
        if self._pending_size > LINE_MAX:
            raise ValueError(f"a stream line longer than {LINE_MAX} bytes")

    def _line(self, line: str, events: list[ServerEvent]) -> None:
        if not line:
            if self._data or self._id is not None:  # an id alone moves the resume point
                events.append(ServerEvent(self._event, "\n".join(self._data), self._id))
            self._event, self._data, self._id = "message", [], None
            return
        if line[0] == ":":
            self.comments += 1  # a heartbeat
            return
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value


def resume_seq(event: ServerEvent) -> int | None:
    """The seq an event's id names (where a reconnection resumes), or None."""
    if event.id is not None and event.id.lstrip("-").isdigit():
        return int(event.id)
    return None


class StreamReader:
    """What a live stream's bytes say, with no I/O: each entry's data, and where to resume.

    The sync and async streams feed it chunks (``None`` at the end) and ask it for entries.
    """

    def __init__(self) -> None:
        """Nothing read yet."""
        self.last_seq: int | None = None
        self.ended = False
        self._parser = EventParser()
        self._ready: deque[ServerEvent] = deque()

    def next_data(self) -> str | None:
        """The next entry's JSON that the chunks so far complete, or None (feed more)."""
        while self._ready:
            event = self._ready.popleft()
            if (seq := resume_seq(event)) is not None:
                self.last_seq = seq
            if event.event == "message" and event.data:
                return event.data
        return None

    def feed(self, chunk: bytes | None) -> None:
        """Take the next chunk of the stream; None when the server ended it."""
        if chunk is None:
            self.ended = True
            self._ready.extend(self._parser.end())
        else:
            self._ready.extend(self._parser.feed(chunk))
