"""The read path's SQL: filtered keyset pages, counts and export chunks.

Two facts make every filter cheap. An app's entry times never decrease as seq grows (the writer
stamps ``max(now, last time)`` under the app's lock), so a ``since``/``until`` range is first
turned into a seq range with two index seeks, and then combines with any other filter's
``(app_id, column, seq)`` index. And an OR of actions (or an action prefix, expanded to the
actions that exist with two seeks each) is read as a merge of per-action index ranges, each
stopped after one page, rather than as one big sort.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    TextClause,
    and_,
    bindparam,
    func,
    literal_column,
    select,
    text,
    union_all,
)

from trailkeep.log.query import Filters, GroupBy
from trailkeep.server.store import histogram, pgtext, schema

events = schema.events
changed = schema.event_changes
MERGE_MAX_ACTIONS: Final = 64


def _distinct_actions_sql(bounded: bool) -> TextClause:
    # Skip-scan: each step is one index seek to the next distinct action. The upper bound must
    # be a plain range term (no `:hi IS NULL OR ...`): only then does the seek stop at it
    # instead of walking every later action of the app.
    upper = "AND action < :hi" if bounded else ""
    return text(
        f"""
        WITH RECURSIVE found(action) AS (
            SELECT (SELECT min(action) FROM events
                    WHERE app_id = :app AND action >= :lo {upper})
            UNION ALL
            SELECT (SELECT min(action) FROM events
                    WHERE app_id = :app AND action > found.action {upper})
            FROM found WHERE found.action IS NOT NULL
        )
        SELECT action FROM found WHERE action IS NOT NULL LIMIT :cap
        """
    )


_DISTINCT_ACTIONS = {True: _distinct_actions_sql(True), False: _distinct_actions_sql(False)}


def _prefix_upper(prefix: str) -> str | None:
    """The smallest string above every string starting with `prefix`; None if there is none."""
    # Trailing U+10FFFF cannot be incremented; the surrogates are not characters at all.
    stem = prefix.rstrip("\U0010ffff")
    if not stem:
        return None
    point = ord(stem[-1]) + 1
    if 0xD800 <= point <= 0xDFFF:
        point = 0xE000
    return stem[:-1] + chr(point)


def _actions(c: Connection, app_id: str, f: Filters) -> list[str] | None:
    """The concrete actions the filter admits, or None when it admits any action."""
    prefix = f.action_prefix or ""
    if f.actions:
        # A list narrows the prefix to known values: no need to look at the data.
        return [a for a in dict.fromkeys(f.actions) if a.startswith(prefix)]
    if not prefix:
        return None
    upper = _prefix_upper(prefix)
    params: dict[str, Any] = {"app": app_id, "lo": prefix, "cap": MERGE_MAX_ACTIONS + 1}
    if upper is not None:
        params["hi"] = upper
    found = c.execute(_DISTINCT_ACTIONS[upper is not None], params).scalars().all()
    return list(found)


def known_actions(
    c: Connection, app_id: str, prefix: str, after: str | None, limit: int
) -> list[str]:
    """The app's distinct actions starting with ``prefix``, in order, after ``after``.

    The same skip-scan as a prefix filter: one seek of the action index per action returned,
    however many entries each has, so it answers as fast on a million entries as on ten.
    """
    encode = pgtext.encode if c.dialect.name == "postgresql" else str
    upper = _prefix_upper(prefix)
    # `lo` is inclusive: when it is `after`, that action comes back first and is dropped.
    params: dict[str, Any] = {"app": app_id, "lo": encode(prefix), "cap": limit + 1}
    if after is not None and after >= prefix:
        params["lo"] = encode(after)
    if upper is not None:
        params["hi"] = encode(upper)
    found: list[str] = list(c.execute(_DISTINCT_ACTIONS[upper is not None], params).scalars())
    if c.dialect.name == "postgresql":
        found = [pgtext.decode(a) for a in found]
    return [a for a in found if after is None or a > after][:limit]


def seq_range(c: Connection, app_id: str, f: Filters) -> tuple[int, int | None] | None:
    """[lo, hi) of seqs that the time filters admit; None when no entry can match."""
    lo, hi = 0, None
    if f.since is not None:
        first = c.execute(
            select(events.c.seq)
            .where(events.c.app_id == app_id, events.c.time >= f.since)
            .order_by(events.c.time, events.c.seq)
            .limit(1)
        ).scalar()
        if first is None:
            return None
        lo = first
    if f.until is not None:
        last = c.execute(
            select(events.c.seq)
            .where(events.c.app_id == app_id, events.c.time <= f.until)
            .order_by(events.c.time.desc(), events.c.seq.desc())
            .limit(1)
        ).scalar()
        if last is None or last < lo:
            return None
        hi = last + 1
    return lo, hi


def _conditions(app_id: str, f: Filters, lo: int, hi: int | None) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [events.c.app_id == app_id]
    if lo > 0:
        where.append(events.c.seq >= lo)
    if hi is not None:
        where.append(events.c.seq < hi)
    if f.actor is not None:
        where.append(events.c.actor_id == f.actor)
    if f.target_type is not None:
        # With an id as well, the id's index is the one to seek (few rows share an id); `|| ''`
        # keeps the planner, which has no statistics, off the type's index and its long run.
        column = events.c.target_type if f.target_id is None else events.c.target_type.concat("")
        where.append(column == f.target_type)
    if f.target_id is not None:
        where.append(events.c.target_id == f.target_id)
    if f.kind is not None:
        where.append(events.c.kind == f.kind)
    if f.exclude_actions:
        # A plain condition on each row the other filters reach: an exclusion narrows no index.
        where.append(events.c.action.not_in(f.exclude_actions))
    return where


def _changed(app_id: str, path: str) -> ColumnElement[bool]:
    # For counts: the path's seqs, from its index range, as a set the entries are probed by.
    seqs = select(changed.c.seq).where(changed.c.app_id == app_id, changed.c.path == path)
    return events.c.seq.in_(seqs)


def _prefix_condition(f: Filters) -> ColumnElement[bool] | None:
    if not f.action_prefix:
        return None
    upper = _prefix_upper(f.action_prefix)
    if upper is None:
        return events.c.action >= f.action_prefix
    return and_(events.c.action >= f.action_prefix, events.c.action < upper)


def _plan(
    c: Connection, app_id: str, f: Filters, lo: int, hi: int | None
) -> tuple[list[ColumnElement[bool]], list[str] | None]:
    """Conditions shared by every branch, and the actions to merge (None: no merge)."""
    where = _conditions(app_id, f, lo, hi)
    actions = _actions(c, app_id, f)
    if actions is not None and (len(actions) > MERGE_MAX_ACTIONS or f.changed_path is not None):
        # (A changed path drives the read from its own index: the actions are conditions.)
        # Too many to merge: one range scan with the prefix (and the list) as plain conditions.
        prefix = _prefix_condition(f)
        if prefix is not None:
            where.append(prefix)
        if f.actions:
            where.append(events.c.action.in_(f.actions))
        return where, None
    return where, actions


def _stored_form(c: Connection, f: Filters) -> Filters:
    """The filters as the database compares them (PostgreSQL escapes NUL; see pgtext)."""
    if c.dialect.name != "postgresql":
        return f
    values = (*f.actions, *f.exclude_actions, f.action_prefix, f.actor, f.target_type,
              f.target_id, f.changed_path)  # fmt: skip
    if not any(v and ("\x00" in v or "\x01" in v) for v in values):
        return f

    def encoded(value: str | None) -> str | None:
        return None if value is None else pgtext.encode(value)

    return replace(
        f, actions=tuple(map(pgtext.encode, f.actions)), action_prefix=encoded(f.action_prefix),
        exclude_actions=tuple(map(pgtext.encode, f.exclude_actions)),
        actor=encoded(f.actor), target_type=encoded(f.target_type),
        target_id=encoded(f.target_id), changed_path=encoded(f.changed_path),
    )  # fmt: skip


def page(
    c: Connection, app_id: str, f: Filters, before: int | None, limit: int, newest_first: bool
) -> list[tuple[int, bytes]]:
    """Up to ``limit`` matching (seq, entry) pairs, from ``before`` on (exclusive) in seq order."""
    f = _stored_form(c, f)
    bounds = seq_range(c, app_id, f)
    if bounds is None:
        return []
    lo, hi = bounds
    if before is not None:
        if newest_first:
            hi = before if hi is None else min(hi, before)
        else:
            lo = max(lo, before + 1)
    where, actions = _plan(c, app_id, f, lo, hi)
    if f.changed_path is not None:
        return _path_page(c, app_id, f.changed_path, where, (lo, hi), limit, newest_first)
    order = events.c.seq.desc() if newest_first else events.c.seq.asc()
    if actions is None:
        rows = c.execute(
            select(events.c.seq, events.c.entry).where(*where).order_by(order).limit(limit)
        )
        return [(row.seq, bytes(row.entry)) for row in rows]
    if not actions:
        return []
    seqs = _merged_seqs(c, where, actions, limit, newest_first)
    if not seqs:
        return []
    rows = c.execute(
        select(events.c.seq, events.c.entry)
        .where(events.c.app_id == app_id, events.c.seq.in_(seqs))
        .order_by(order)
    )
    return [(row.seq, bytes(row.entry)) for row in rows]


def _path_page(
    c: Connection, app_id: str, path: str, where: Sequence[ColumnElement[bool]],
    bounds: tuple[int, int | None], limit: int, newest_first: bool,
) -> list[tuple[int, bytes]]:  # fmt: skip
    """A page of entries naming ``path`` in their changes: the path's index range, walked in
    seq order, each row joined to its entry and checked against the other filters."""
    lo, hi = bounds
    on = [changed.c.app_id == app_id, changed.c.path == path]
    if lo > 0:
        on.append(changed.c.seq >= lo)
    if hi is not None:
        on.append(changed.c.seq < hi)
    order = changed.c.seq.desc() if newest_first else changed.c.seq.asc()
    joined = changed.join(
        events, and_(events.c.app_id == changed.c.app_id, events.c.seq == changed.c.seq)
    )
    query = (
        select(events.c.seq, events.c.entry)
        .select_from(joined)
        .where(*on, *where)
        .order_by(order)
        .limit(limit)
    )
    return [(row.seq, bytes(row.entry)) for row in c.execute(query)]


def _merged_seqs(
    c: Connection, where: Sequence[ColumnElement[bool]], actions: list[str], limit: int,
    newest_first: bool,
) -> list[int]:  # fmt: skip
    order = events.c.seq.desc() if newest_first else events.c.seq.asc()
    branches = [
        select(events.c.seq).where(*where, events.c.action == action).order_by(order).limit(limit)
        for action in actions
    ]
    if len(branches) == 1:
        return list(c.execute(branches[0]).scalars())
    merged = union_all(*(select(b.subquery().c.seq) for b in branches)).subquery()
    outer = merged.c.seq.desc() if newest_first else merged.c.seq.asc()
    return list(c.execute(select(merged.c.seq).order_by(outer).limit(limit)).scalars())


def _group_key(c: Connection, group_by: GroupBy) -> ColumnElement[Any]:
    if group_by == "action":
        return events.c.action
    if group_by == "actor":
        return events.c.actor_id
    if group_by == "target_type":
        return events.c.target_type
    if group_by == "hour":
        # The hour's first instant, an RFC 3339 time: `2026-11-23T08:00:00Z`.
        if c.dialect.name == "postgresql":
            return func.to_char(
                func.timezone("UTC", events.c.time),
                literal_column('\'YYYY-MM-DD"T"HH24":00:00Z"\''),
            )
        # SQLite keeps UTC times as `YYYY-MM-DD HH:MM:SS.ffffff` text.
        day, hour = func.substr(events.c.time, 1, 10), func.substr(events.c.time, 12, 2)
        return day.concat("T").concat(hour).concat(":00:00Z")
    if c.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", events.c.time), literal_column("'YYYY-MM-DD'"))
    return func.substr(events.c.time, 1, 10)


def _one_index(f: Filters, actions: list[str] | None) -> bool:
    """True when one index's ``(app_id, value, seq)`` ranges hold every match, so that a seq
    range's matches are counted from the index alone: one filter at most (besides the time),
    and an action filter only as a list of actions to seek."""
    if f.exclude_actions or ((f.actions or f.action_prefix is not None) and actions is None):
        return False
    used = (actions is not None, f.actor is not None, f.target_type is not None,
            f.target_id is not None, f.kind is not None, f.changed_path is not None)  # fmt: skip
    return sum(used) <= 1


def _by_buckets(
    c: Connection, app_id: str, f: Filters, actions: list[str] | None,
    bounds: tuple[int, int | None], unit: histogram.Unit,
) -> list[tuple[str | None, int]] | None:  # fmt: skip
    """Counts per day or hour from the index alone (see ``histogram``); None when no one
    index answers the filter, or there are too many buckets."""
    minus: list[ColumnElement[bool]] | None = None
    if f.exclude_actions:
        if actions is not None:
            # A list of actions to seek: the excluded ones are simply not sought.
            actions = [a for a in actions if a not in f.exclude_actions]
            if not actions:
                return []
        elif replace(f, exclude_actions=()).on_time_only():
            # Everything but these actions: the bucket's entries less theirs, both from indexes.
            minus = [events.c.app_id == app_id, events.c.action.in_(f.exclude_actions)]
        else:
            return None
        f = replace(f, exclude_actions=())
    if not _one_index(f, actions):
        return None
    # Without the seq bounds: each bucket brings its own, clipped to them.
    where = _conditions(app_id, f, 0, None)
    if actions is not None:
        where.append(events.c.action.in_(bindparam("actions", actions, expanding=True)))
    return histogram.counts(c, app_id, where, f.changed_path, bounds, unit, minus)


def stats(
    c: Connection, app_id: str, f: Filters, group_by: GroupBy
) -> list[tuple[str | None, int]]:
    """Counts of matching entries per group: largest first, or in date order by day."""
    f = _stored_form(c, f)
    bounds = seq_range(c, app_id, f)
    if bounds is None:
        return []
    where, actions = _plan(c, app_id, f, *bounds)
    if actions is not None:
        if not actions:
            return []
        where.append(events.c.action.in_(bindparam("actions", actions, expanding=True)))
    if group_by in ("day", "hour"):
        found = _by_buckets(c, app_id, f, actions, bounds, "hour" if group_by == "hour" else "day")
        if found is not None:
            return found
    if f.changed_path is not None:
        where.append(_changed(app_id, f.changed_path))
    key = _group_key(c, group_by).label("key")
    count = func.count().label("count")
    query: Select[Any] = select(key, count).where(*where).group_by(key)
    in_time_order = group_by in ("day", "hour")
    query = query.order_by(key) if in_time_order else query.order_by(count.desc(), key)
    rows = [(row[0], int(row[1])) for row in c.execute(query)]
    if c.dialect.name == "postgresql":
        return [(None if key is None else pgtext.decode(key), n) for key, n in rows]
    return rows
