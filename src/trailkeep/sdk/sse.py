"""Server-Sent Events as the live stream sends them: parsed from lines, one event at a time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One event: its type (``message`` unless named), ``id`` and ``data``."""

    event: str
    data: str
    id: str | None


#: A longer line is not an event this server sends: refused rather than buffered without end.
LINE_MAX = 16 << 20


def lines_of(chunks: Iterable[bytes]) -> Iterator[str]:
    """Lines split at CR, LF or CRLF only, as SSE says.

    Not ``str.splitlines``: an entry's JSON may hold U+2028 or U+0085 unescaped, and those
    are no line ends here.
    """
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while True:
            cut = min((i for i in (buffer.find(b"\r"), buffer.find(b"\n")) if i >= 0), default=-1)
            if cut < 0:
                break
            if buffer[cut : cut + 1] == b"\r" and cut + 1 == len(buffer):
                break  # a CR at the end of a chunk: its LF may come with the next one
            yield buffer[:cut].decode()
            step = 2 if buffer[cut : cut + 2] == b"\r\n" else 1
            buffer = buffer[cut + step :]
        if len(buffer) > LINE_MAX:
            raise ValueError(f"a stream line longer than {LINE_MAX} bytes")
    if buffer:
        yield buffer.rstrip(b"\r").decode()


def events_of(lines: Iterable[str]) -> Iterator[ServerEvent]:
    """The events in a stream's lines (WHATWG rules: comments skipped, data lines joined).

    A block with an id and no data is yielded too (with empty ``data``): it dispatches no event,
    but it moves where a reconnection resumes.
    """
    event, data, event_id = "message", list[str](), None
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data or event_id is not None:  # an id alone moves the resume point
                yield ServerEvent(event, "\n".join(data), event_id)
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue  # a heartbeat
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            event_id = value
