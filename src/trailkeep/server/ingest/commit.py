"""The one way entries are appended, by whichever process appends them.

The server's writer, the CLI and the retention scheduler all append through
:func:`append_groups`, inside a transaction of ``Store.append_tx``. The seqs are reserved under
the app's lock (SQLite's write lock, taken by BEGIN IMMEDIATE; PostgreSQL's lock on the app's
``log_heads`` row) and the tree's frontier is read after it, so appenders in several processes or
on several nodes take turns and each starts exactly where the last one committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from trailkeep.log import merkle
from trailkeep.log.record import PendingEntry
from trailkeep.server.ingest.rows import Built, Head, build
from trailkeep.server.store import AppendTx


def append_groups(
    tx: AppendTx,
    app_id: str,
    groups: Sequence[Sequence[PendingEntry]],
    now: datetime,
    cached: Head | None = None,
) -> Built:
    """Append ``groups``' entries to the app's log in ``tx``; return what was written.

    ``cached`` is the log as this process last committed it: when nobody else has appended
    since, its frontier saves reading the tree. Any other size means another appender moved the
    log on, and the frontier is read from the database, under the lock.
    """
    total = sum(len(group) for group in groups)
    start, moment = tx.reserve(app_id, total, now)
    if cached is not None and cached.size == start:
        frontier = cached.frontier
    else:
        frontier_ids = merkle.frontier(start)
        known = tx.nodes(app_id, frontier_ids)
        frontier = [known[node] for node in frontier_ids]
    built = build(app_id, groups, start, moment, frontier, tx.time_param(moment))
    tx.insert(built.rows)
    if built.changes:
        tx.insert_changes(built.changes)
    tx.extend_tree(app_id, built.written)
    return built
