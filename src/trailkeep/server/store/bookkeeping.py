"""Write transactions for bookkeeping that a power failure may roll back at the cost of a repeat.

Webhook delivery writes a few rows per batch: its lease, the batch it pinned, the cursor once
the batch was taken, and a record of the attempt. Delivery is at least once, so losing the last
of these in a power failure costs a batch sent again (under the same ``webhook-id`` where the
pin survived), never an entry lost or one sent out of order. Those commits therefore skip the
fsync that every entry's commit pays (SQLite ``synchronous=NORMAL`` on a connection of their
own; PostgreSQL ``synchronous_commit = off`` for the transaction); a crash of the process
alone loses nothing (SQLite's WAL and PostgreSQL's commit are both written before returning).

On SQLite they also wait for the write lock differently. SQLite's own busy handler sleeps
longer after each failed try (up to 100 ms), and the ingest writer takes the lock again and
again under load, so a bookkeeping write could wait most of a second for it; here the lock is
tried again every millisecond, which finds the gaps between the writer's commits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from trailkeep.server.store.engine import sqlite_bookkeeping_engine

#: How long a bookkeeping write waits for SQLite's write lock before it gives up.
LOCK_WAIT: Final = 30.0
_RETRY: Final = 0.001


class Bookkeeping:
    """Opens bookkeeping transactions on the store's database (see the module's docstring)."""

    def __init__(self, url: str, writer: Engine) -> None:
        """Use ``writer`` on PostgreSQL; on SQLite a connection of its own, made when first used."""
        self._url = url
        self._writer = writer
        self._engine: Engine | None = None

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction, committed at the end of the block (rolled back on an error)."""
        if self._writer.dialect.name == "postgresql":
            with self._writer.begin() as c:
                c.execute(text("SET LOCAL synchronous_commit = off"))
                yield c
            return
        if self._engine is None:
            self._engine = sqlite_bookkeeping_engine(self._url)
        c = self._locked(self._engine)
        try:
            yield c
            c.commit()
        except BaseException:
            c.rollback()
            raise
        finally:
            c.close()

    @staticmethod
    def _locked(engine: Engine) -> Connection:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            c = engine.connect()
            try:
                c.begin()  # BEGIN IMMEDIATE: fails at once while another writer holds the lock
                return c
            except OperationalError as exc:
                c.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(_RETRY)

    def dispose(self) -> None:
        """Close its connections."""
        if self._engine is not None:
            self._engine.dispose()
