"""Counts per day or hour from seq ranges: a histogram without reading the entries' times.

An app's entry times never decrease as seq grows (see ``reads``), so each UTC day (or hour) of
its log is one run of seqs, found with one seek of the time index at the bucket's first instant.
A bucket's count is then the count of matching entries in its seq range, which each filter's
``(app_id, column, seq)`` index answers by itself: the entries' rows (and their times) are never
read. Grouping the matching rows by their time instead reads every one of them: half a second
for an app of a million entries, where this takes milliseconds a bucket at most.

SQLite runs a statement per bucket (microseconds each); PostgreSQL, where each statement is a
round trip, gets all the buckets' seeks in one statement and all their counts in another (the
ranges as arrays, each counted by a correlated subquery). The caller uses this only when one
index answers the filter (one filter besides the time): with more, each bucket's count would
read the entries' rows as well, and one scan grouping them is cheaper. Past
:data:`MAX_BUCKETS` buckets (hours over months) the per-bucket work would cost more than the
one scan: the caller groups the rows then.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from sqlalchemy import (
    ARRAY,
    BigInteger,
    BindParameter,
    ColumnElement,
    Connection,
    DateTime,
    Select,
    bindparam,
    func,
    select,
)

from trailkeep.server.store import schema

events = schema.events
changed = schema.event_changes
#: More buckets than this are grouped by one scan instead (a bucket costs two statements).
MAX_BUCKETS: Final = 1_000

Unit = Literal["day", "hour"]


def _aware(moment: datetime) -> datetime:
    # psycopg hands back aware datetimes; SQLite naive ones, in UTC.
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _start(moment: datetime, unit: Unit) -> datetime:
    """The first instant of the day or hour (UTC) that ``moment`` falls in."""
    moment = _aware(moment)
    if unit == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def key(start: datetime, unit: Unit) -> str:
    """The bucket's key as ``stats`` names it: ``2026-11-23``, or ``2026-11-23T08:00:00Z``."""
    return start.strftime("%Y-%m-%dT%H:00:00Z" if unit == "hour" else "%Y-%m-%d")


def starts(first: datetime, last: datetime, unit: Unit) -> list[datetime]:
    """Every bucket's first instant, from the one holding ``first`` to the one holding ``last``."""
    step = timedelta(hours=1) if unit == "hour" else timedelta(days=1)
    at, end = _start(first, unit), _start(last, unit)
    found = []
    while at <= end:
        found.append(at)
        at += step
    return found


def _time_at(c: Connection, app_id: str, seq: int | None, newest: bool) -> datetime | None:
    """The time of the app's first entry from ``seq`` on, or (``newest``) its last one before
    ``seq`` (None: its last of all)."""
    where = [events.c.app_id == app_id]
    if seq is not None:
        where.append(events.c.seq < seq if newest else events.c.seq >= seq)
    order = events.c.seq.desc() if newest else events.c.seq.asc()
    found = c.execute(select(events.c.time).where(*where).order_by(order).limit(1)).scalar()
    return None if found is None else _aware(found)


def _boundaries(
    c: Connection, app_id: str, lo: int, hi: int, bucket_starts: Sequence[datetime]
) -> list[int]:
    """Each bucket's first seq (clipped to [lo, hi]), then ``hi``: one time-index seek each."""
    seek = (
        select(events.c.seq)
        .where(events.c.app_id == app_id, events.c.time >= bindparam("at", type_=DateTime(True)))
        .order_by(events.c.time, events.c.seq)
        .limit(1)
    )
    found = [lo]
    for at in bucket_starts[1:]:
        seq = c.execute(seek, {"at": at}).scalar()
        found.append(hi if seq is None else min(max(int(seq), lo), hi))
    return [*found, hi]


def counts(
    c: Connection, app_id: str, where: Sequence[ColumnElement[bool]], changed_path: str | None,
    bounds: tuple[int, int | None], unit: Unit,
    minus: Sequence[ColumnElement[bool]] | None = None,
) -> list[tuple[str | None, int]] | None:  # fmt: skip
    """Matching entries per bucket, oldest first, empty ones left out; None past MAX_BUCKETS.

    ``where`` holds the conditions on the entry's own columns, without the seq ``bounds``
    (each bucket's range is clipped to them); ``changed_path``, when given, is the only filter
    besides the time, and is counted from its own index. The entries ``minus`` matches (some
    of those ``where`` does) are taken off each bucket's count.
    """
    lo, upper = bounds
    first = _time_at(c, app_id, lo, newest=False)
    last = _time_at(c, app_id, upper, newest=True)
    if first is None or last is None or last < first:
        return []
    # Past the last seq there is nothing to count: any bound above it will do.
    hi = (1 << 62) if upper is None else upper
    bucket_starts = starts(first, last, unit)
    if len(bucket_starts) > MAX_BUCKETS:
        return None
    if c.dialect.name == "postgresql":
        seqs = _boundaries_at_once(c, app_id, lo, hi, bucket_starts)
    else:
        seqs = _boundaries(c, app_id, lo, hi, bucket_starts)
    ranges = [(low, high) for low, high in itertools.pairwise(seqs)]
    if c.dialect.name == "postgresql":
        numbers = _counts_at_once(c, app_id, where, changed_path, minus, ranges)
    else:
        numbers = _counts_one_by_one(c, app_id, where, changed_path, minus, ranges)
    return [(key(start, unit), n) for start, n in zip(bucket_starts, numbers, strict=True) if n]


def _count(
    app_id: str, where: Sequence[ColumnElement[bool]], changed_path: str | None,
    low: ColumnElement[Any], high: ColumnElement[Any],
) -> Select[Any]:  # fmt: skip
    """The count of one seq range [low, high): from the filter's index, or the path's."""
    if changed_path is None:
        return (
            select(func.count())
            .select_from(events)
            .where(*where, events.c.seq >= low, events.c.seq < high)
        )
    # A path's rows exist only beside their entry's (an erasure deletes both), so the path's
    # own index counts the entries.
    return (
        select(func.count())
        .select_from(changed)
        .where(changed.c.app_id == app_id, changed.c.path == changed_path)
        .where(changed.c.seq >= low, changed.c.seq < high)
    )


def _counts_one_by_one(
    c: Connection, app_id: str, where: Sequence[ColumnElement[bool]], changed_path: str | None,
    minus: Sequence[ColumnElement[bool]] | None, ranges: Sequence[tuple[int, int]],
) -> list[int]:  # fmt: skip
    """Each range's count, a statement each (SQLite: a statement costs microseconds)."""
    a: BindParameter[int] = bindparam("a", type_=BigInteger)
    b: BindParameter[int] = bindparam("b", type_=BigInteger)
    query = _count(app_id, where, changed_path, a, b)
    less = None if minus is None else _count(app_id, minus, None, a, b)
    found = []
    for low, high in ranges:
        n = 0
        if low < high:
            n = int(c.execute(query, {"a": low, "b": high}).scalar_one())
        if less is not None and n:
            n -= int(c.execute(less, {"a": low, "b": high}).scalar_one())
        found.append(n)
    return found


def _boundaries_at_once(
    c: Connection, app_id: str, lo: int, hi: int, bucket_starts: Sequence[datetime]
) -> list[int]:
    """As ``_boundaries``, in one statement (PostgreSQL: a statement is a round trip)."""
    at = (
        func.unnest(bindparam("starts", list(bucket_starts[1:]), type_=ARRAY(DateTime(True))))
        .table_valued("at", with_ordinality="n")
        .render_derived()
    )
    seek = (
        select(events.c.seq)
        .where(events.c.app_id == app_id, events.c.time >= at.c.at)
        .order_by(events.c.time, events.c.seq)
        .limit(1)
        .scalar_subquery()
    )
    seqs = c.execute(select(seek).select_from(at).order_by(at.c.n)).scalars().all()
    found = [lo] + [hi if seq is None else min(max(int(seq), lo), hi) for seq in seqs]
    return [*found, hi]


def _counts_at_once(
    c: Connection, app_id: str, where: Sequence[ColumnElement[bool]], changed_path: str | None,
    minus: Sequence[ColumnElement[bool]] | None, ranges: Sequence[tuple[int, int]],
) -> list[int]:  # fmt: skip
    """Each range's count, in one statement (PostgreSQL: a statement is a round trip)."""
    pairs = (
        func.unnest(
            bindparam("lows", [low for low, _ in ranges], type_=ARRAY(BigInteger)),
            bindparam("highs", [high for _, high in ranges], type_=ARRAY(BigInteger)),
        )
        .table_valued("low", "high", with_ordinality="n")
        .render_derived()
    )
    columns = [_count(app_id, where, changed_path, pairs.c.low, pairs.c.high).scalar_subquery()]
    if minus is not None:
        columns.append(_count(app_id, minus, None, pairs.c.low, pairs.c.high).scalar_subquery())
    rows = c.execute(select(*columns).select_from(pairs).order_by(pairs.c.n)).all()
    return [int(row[0]) - (int(row[1]) if minus is not None else 0) for row in rows]
