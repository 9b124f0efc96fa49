"""An append, built: the entries' stored bytes, their rows and the tree nodes they complete.

Pure (no I/O): everything here follows from the entries, the first ``seq``, the entry time and
the tree's frontier before the append, which the writer (``Ingest``) reads under the write lock.
Kept apart from the transaction so that it can be tested on its own (tests/unit/test_rows.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from trailkeep.log import merkle
from trailkeep.log.merkle import NodeId
from trailkeep.log.record import PendingEntry, format_time, with_leaf_hash
from trailkeep.server.store import ChangeRow, EventRow


@dataclass(frozen=True, slots=True)
class Head:
    """An app's log as of a commit: its size and the tree's frontier (merkle.frontier)."""

    size: int
    frontier: list[bytes]


@dataclass(frozen=True, slots=True)
class Built:
    """One app's part of a commit: the rows to insert, the tree nodes, each group's entries."""

    start: int  # the first entry's seq
    rows: list[EventRow]  # as AppendTx.insert binds them
    written: list[tuple[NodeId, bytes]]
    stored: list[list[bytes]]  # per group, the entries as stored
    head: Head  # the log once these rows are committed
    changes: list[ChangeRow]  # the changed paths of entries that carry `changes`, indexed


def build(
    app_id: str,
    groups: Sequence[Sequence[PendingEntry]],
    start: int,
    moment: datetime,
    frontier: list[bytes],
    stored_time: datetime | str,
) -> Built:
    """Number ``groups``' entries from ``start``, stamp them ``moment`` and grow the tree.

    ``stored_time`` is ``moment`` as the database binds it (``AppendTx.time_param``): the rows
    go to the insert exactly as they are built here.
    """
    stamp = format_time(moment)
    rows: list[EventRow] = []
    leaves: list[bytes] = []
    stored: list[list[bytes]] = []
    changes: list[ChangeRow] = []
    seq = start
    for group in groups:
        entries: list[bytes] = []
        for pending in group:
            document = pending.canonical(seq, stamp)
            leaf = merkle.hash_leaf(document)
            entry = with_leaf_hash(document, leaf)
            leaves.append(leaf)
            entries.append(entry)
            rows.append((
                app_id, seq, pending.id, stored_time, pending.action, pending.kind,
                pending.actor_id, pending.target_type, pending.target_id, entry,
            ))  # fmt: skip
            if pending.changed_paths:
                changes.extend((app_id, path, seq) for path in pending.changed_paths)
            seq += 1
        stored.append(entries)
    written, after = merkle.append_leaves(start, frontier, leaves)
    return Built(start, rows, written, stored, Head(seq, after), changes)
