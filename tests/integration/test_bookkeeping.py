"""``Store.bookkeeping``: webhook delivery's writes, without an fsync, and quick to the lock.

On SQLite its connection runs ``synchronous=NORMAL`` (every entry's own commits stay ``FULL``)
and it takes the write lock as soon as another writer lets it go, rather than after SQLite's
busy handler has slept up to 100 ms between tries; on PostgreSQL its transactions run with
``synchronous_commit = off``. What it writes is kept like any other commit.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import select, text, update

from tests.servers import Server, Tenant
from trailkeep.server.store import schema


def test_bookkeeping_commits_without_fsync_and_keeps_what_it_wrote(
    server: Server, tenant: Tenant
) -> None:
    with server.store() as store:
        with store.bookkeeping.begin() as c:
            if store.dialect == "postgresql":
                assert c.execute(text("SHOW synchronous_commit")).scalar() == "off"
            else:
                assert c.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
            c.execute(update(schema.apps).where(schema.apps.c.id == tenant.app_id)
                      .values(name="renamed by bookkeeping"))  # fmt: skip
        with store.reader_engine.connect() as c:
            name = c.execute(select(schema.apps.c.name).where(schema.apps.c.id == tenant.app_id))
            assert name.scalar() == "renamed by bookkeeping"
        if store.dialect != "postgresql":
            # Entries' commits are still synced to disk before they return.
            with store.writer_engine.begin() as c:
                assert c.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL


def test_on_sqlite_bookkeeping_gets_the_lock_as_soon_as_it_is_free(sqlite_server: Server) -> None:
    with sqlite_server.store() as store:
        holder = store.writer_engine.connect()
        holder.begin()  # BEGIN IMMEDIATE: the write lock, held for 300 ms
        released = threading.Event()

        def release() -> None:
            time.sleep(0.3)
            holder.commit()
            released.set()

        threading.Thread(target=release).start()
        started = time.monotonic()
        with store.bookkeeping.begin() as c:
            waited = time.monotonic() - started
            assert released.is_set()
            c.execute(text("SELECT 1"))
        holder.close()
    # It waited for the lock (its connection's busy timeout is 0: without the retries it would
    # have failed at once) and took it soon after it was free (tries every millisecond).
    assert 0.3 <= waited < 0.5, waited
