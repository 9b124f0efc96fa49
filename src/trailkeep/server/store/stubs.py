"""Erased entries as reads return them: stubs, merged into pages by seq.

An erased entry's row is gone from ``events``; what is left is its row in ``erased_entries``:
seq, id, time, leaf hash, and what erased it. Every read that could return the entry returns
the stub instead (DESIGN §5), so an export stays gapless and verifies.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, insert, select, tuple_

from trailkeep.log import seqs
from trailkeep.log.query import Filters
from trailkeep.log.record import format_time
from trailkeep.server.store import schema, webhooks
from trailkeep.server.store.append import utc
from trailkeep.server.store.driver import driver_execute

erased = schema.erased_entries

# PostgreSQL is a round trip away: the stubs and the deletes of a chunk travel as arrays, one
# statement each, instead of a statement per row (a purge ran at 9,000 entries/s that way).
# The id and time are copied from the row itself, so only integers and hashes travel. The time
# bounds let PostgreSQL look only in the partitions that hold the entries.
_PG_STUBS = (
    "INSERT INTO erased_entries (app_id, seq, id, time, leaf_hash, erased_by, at_size)"
    " SELECT e.app_id, e.seq, e.id, e.time, r.leaf_hash, %(by)s, %(size)s"
    " FROM unnest(%(seqs)s::bigint[], %(hashes)s::bytea[]) AS r(seq, leaf_hash)"
    " JOIN events AS e ON e.app_id = %(app)s AND e.seq = r.seq"
    " AND e.time >= %(first)s AND e.time <= %(last)s"
)
_PG_DELETE = (
    "DELETE FROM events WHERE app_id = %(app)s AND seq = ANY(%(seqs)s::bigint[])"
    " AND time >= %(first)s AND time <= %(last)s"
)
_SQLITE_DELETE = "DELETE FROM events WHERE app_id = :app AND seq BETWEEN :low AND :high"
# A changed path can name a person: the paths go with the content, after the stubs (0013).
_PG_PATHS = "DELETE FROM event_changes WHERE app_id = %(app)s AND seq = ANY(%(seqs)s::bigint[])"
_SQLITE_PATHS = "DELETE FROM event_changes WHERE app_id = :app AND seq BETWEEN :low AND :high"


@dataclass(frozen=True, slots=True)
class Match:
    """An entry that retention or an erasure reached: enough to stub it and to check holds."""

    seq: int
    id: str
    time: datetime
    actor_id: str
    target_type: str | None
    target_id: str | None
    leaf_hash: bytes


def erase_rows(c: Connection, app_id: str, matches: Sequence[Match], erased_by: str) -> None:
    """Write these entries' stubs, then delete their changed paths and rows (the database
    wants stubs first, and an entry's paths gone before it).

    ``matches`` are in seq order. The one way retention and erasure take content out of the log,
    so it is here that each webhook destination of the app gets its ``audit.erased`` notice
    queued, in the erasing transaction: the erasure and its notice commit together or not at all.
    """
    if not matches:
        return
    size = _locked_size(c, app_id)
    _erase(c, app_id, matches, erased_by, size)
    ranges = seqs.runs(m.seq for m in matches)
    webhooks.queue_erased(c, app_id, ranges, erased_by, size)


def _locked_size(c: Connection, app_id: str) -> int:
    """The app's log size, under the app's lock (taken here if the caller has not yet).

    Each stub records it (``at_size``): with the lock held, no entry commits between this read
    and the erasure's commit, so a reader that saw a size N before the erasure committed saw
    N <= ``at_size``, and asking for ``at_size >= N`` later misses nothing.
    """
    heads = schema.log_heads
    # FOR UPDATE is PostgreSQL's row lock; SQLite's write transaction is the lock already.
    size = c.execute(
        select(heads.c.size).where(heads.c.app_id == app_id).with_for_update()
    ).scalar()
    return int(size or 0)


def _erase(c: Connection, app_id: str, matches: Sequence[Match], erased_by: str, size: int) -> None:
    if c.dialect.name == "postgresql":
        where = {"app": app_id, "seqs": [m.seq for m in matches],
                 "first": matches[0].time, "last": matches[-1].time}  # fmt: skip
        hashes = [m.leaf_hash for m in matches]
        driver_execute(c, _PG_STUBS, where | {"by": erased_by, "hashes": hashes, "size": size})
        driver_execute(c, _PG_PATHS, {"app": app_id, "seqs": where["seqs"]})
        driver_execute(c, _PG_DELETE, where)
        return
    c.execute(
        insert(erased),
        [{"app_id": app_id, "seq": m.seq, "id": m.id, "time": m.time,
          "leaf_hash": m.leaf_hash, "erased_by": erased_by, "at_size": size} for m in matches],
    )  # fmt: skip
    # SQLite is in-process: a statement per run of consecutive seqs (a purge's chunk is mostly
    # one) costs less than binding a thousand seqs.
    for low, high in seqs.runs(m.seq for m in matches):
        driver_execute(c, _SQLITE_PATHS, {"app": app_id, "low": low, "high": high})
        driver_execute(c, _SQLITE_DELETE, {"app": app_id, "low": low, "high": high})


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


def erased_since(
    c: Connection,
    app_id: str,
    since_size: int,
    below_seq: int | None,
    after: tuple[int, int] | None,
    limit: int,
) -> list[tuple[int, int]]:
    """``(at_size, seq)`` of up to ``limit`` stubs written at log size ``since_size`` or later.

    In (at_size, seq) order, the index's, after the ``after`` position; only seqs below
    ``below_seq`` when given (an exporter asks about the entries it already holds).
    """
    where = [erased.c.app_id == app_id, erased.c.at_size >= since_size]
    if below_seq is not None:
        where.append(erased.c.seq < below_seq)
    if after is not None:
        where.append(tuple_(erased.c.at_size, erased.c.seq) > tuple_(*after))
    rows = c.execute(
        select(erased.c.at_size, erased.c.seq)
        .where(*where)
        .order_by(erased.c.at_size, erased.c.seq)
        .limit(limit)
    )
    return [(row.at_size, row.seq) for row in rows]
