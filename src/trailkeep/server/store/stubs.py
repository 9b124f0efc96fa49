"""Erased entries as reads return them: stubs, merged into pages by seq.

An erased entry's row is gone from ``events``; what is left is its row in ``erased_entries``:
seq, id, time, leaf hash, and what erased it. Every read that could return the entry returns
the stub instead (DESIGN §5), so an export stays gapless and verifies.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, select

from trailkeep.log.query import Filters
from trailkeep.log.record import format_time
from trailkeep.server.store import schema
from trailkeep.server.store.append import utc

erased = schema.erased_entries


def stub_json(seq: int, entry_id: str, time: datetime, leaf_hash: bytes, erased_by: str) -> bytes:
    """The stub of an erased entry, keys sorted as every entry's are."""
    return orjson.dumps(
        {
            "erased": True,
            "erased_by": erased_by,
            "id": entry_id,
            "leaf_hash": leaf_hash.hex(),
            "seq": seq,
            "time": format_time(utc(time) or time),
        }
    )


def _stub(row: Any) -> tuple[int, bytes]:
    return row.seq, stub_json(row.seq, row.id, row.time, bytes(row.leaf_hash), row.erased_by)


def by_id(c: Connection, app_id: str, entry_id: str) -> bytes | None:
    """The stub of the erased entry with this id, or None."""
    row = c.execute(
        select(erased).where(erased.c.app_id == app_id, erased.c.id == entry_id)
    ).one_or_none()
    return None if row is None else _stub(row)[1]


def page(
    c: Connection, app_id: str, f: Filters, before: int | None, limit: int, newest_first: bool
) -> list[tuple[int, bytes]]:
    """Up to ``limit`` stubs after ``before`` in seq order, for a filter on time alone."""
    where = [erased.c.app_id == app_id]
    if before is not None:
        where.append(erased.c.seq < before if newest_first else erased.c.seq > before)
    if f.since is not None:
        where.append(erased.c.time >= f.since)
    if f.until is not None:
        where.append(erased.c.time <= f.until)
    order = erased.c.seq.desc() if newest_first else erased.c.seq.asc()
    return [
        _stub(row) for row in c.execute(select(erased).where(*where).order_by(order).limit(limit))
    ]


def span(c: Connection, app_id: str, low: int, high: int) -> list[tuple[int, bytes]]:
    """The stubs of seqs [low, high), in seq order."""
    rows = c.execute(
        select(erased)
        .where(erased.c.app_id == app_id, erased.c.seq >= low, erased.c.seq < high)
        .order_by(erased.c.seq)
    )
    return [_stub(row) for row in rows]


def merged(
    entries: Sequence[tuple[int, bytes]],
    stubs: Sequence[tuple[int, bytes]],
    limit: int,
    newest_first: bool,
) -> list[tuple[int, bytes]]:
    """Two pages in seq order merged into one of at most ``limit`` rows."""
    if not stubs:
        return list(entries)
    rows = heapq.merge(entries, stubs, key=lambda row: row[0], reverse=newest_first)
    return [row for _, row in zip(range(limit), rows, strict=False)]
