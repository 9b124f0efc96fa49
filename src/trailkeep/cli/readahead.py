"""Read a stream on a thread of its own, a bounded number of items ahead of the reader."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from queue import Full, Queue
from typing import TypeVar

T = TypeVar("T")


def ahead(blocks: Iterator[T], depth: int = 16) -> Iterator[T]:
    """The items of ``blocks``, read on a thread up to ``depth`` ahead of their use.

    For ``trailkeep export``: without it the server waits while this process works on a block
    (the socket's buffer is far smaller than a page of the export), and the two take turns
    instead of working side by side. Stopping early closes ``blocks`` (its HTTP response).
    """
    queue: Queue[T | BaseException | None] = Queue(depth)
    stop = threading.Event()

    def put(item: T | BaseException | None) -> bool:
        # Never blocked for good: once the reader has gone, nothing takes from the queue.
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def pump() -> None:
        try:
            for block in blocks:
                if not put(block):
                    return
            put(None)
        except BaseException as exc:  # handed to the reader, who raises it
            put(exc)
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()  # the HTTP response, when the reader stopped early

    thread = threading.Thread(target=pump, name="export-reader", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
