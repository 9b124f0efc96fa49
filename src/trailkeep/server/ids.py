"""Entry ids: made by the server, from its clock and its randomness (the log core has neither)."""

from __future__ import annotations

import os
import threading
import time


class _RandomPool:
    # One getrandom() call per 256 ids instead of one per id: on the hot write path the
    # syscall cost more than building the rest of the entry.
    def __init__(self, chunk: int = 4096) -> None:
        self._chunk = chunk
        self._buffer = b""
        self._offset = 0
        self._lock = threading.Lock()
        # A forked child must never hand out the bytes its parent still holds.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._buffer, self._offset = b"", 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bytes:
        """``n`` random bytes, from the pool, refilled from the OS as it runs out."""
        with self._lock:
            if self._offset + n > len(self._buffer):
                self._buffer, self._offset = os.urandom(self._chunk), 0
            start = self._offset
            self._offset += n
        return self._buffer[start : start + n]


_random = _RandomPool()


def new_entry_id() -> str:
    """An opaque entry id: the time in milliseconds, then 128 random bits.

    The random bits are what keep an erased entry's leaf hash unguessable: its content cannot
    be found by hashing guesses. The time in front makes consecutive entries neighbours in the
    unique index on ids; ids random from their first character would put every insert on a
    random page of that index, and slow inserts down as the log grows.
    """
    return f"evt_{time.time_ns() // 1_000_000:012x}{_random.take(16).hex()}"


def new_id(prefix: str) -> str:
    """An opaque id of a governance record, such as ``hold_…`` or ``era_…``: 96 random bits."""
    return f"{prefix}_{_random.take(12).hex()}"
