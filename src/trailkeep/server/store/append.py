"""The appending transaction: what the group-commit writer may do while it holds an app's lock."""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, DateTime, Table, select

from trailkeep.log.merkle import NodeId
from trailkeep.server.store import pgtext, schema, tree
from trailkeep.server.store.driver import MARKS, driver_execute, driver_rows
from trailkeep.server.store.packed import blocks
from trailkeep.server.store.records import IdempotencyRecord

SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
# From this many rows an insert goes in as blocks of rows (store/packed.py). Below it,
# executemany: with nothing else running Python it is ~20% faster at 100 rows (blocks bind
# padding and run a larger program), and a small insert hands the GIL back and forth only a
# few times.
PACK_MIN_ROWS = 500


def _statements(mark: Callable[[str], str]) -> dict[str, str]:
    key = f"app_id = {mark('app')} AND key = {mark('key')}"
    names = ", ".join(mark(name) for name in ("app", "key", "fingerprint", "seq", "count", "at"))
    return {
        "lock": f"SELECT size FROM log_heads WHERE app_id = {mark('app')} FOR UPDATE",
        "reserve": f"UPDATE log_heads SET size = size + {mark('count')}, last_time = CASE"
        f" WHEN last_time IS NULL OR last_time < {mark('now')} THEN {mark('now')}"
        f" ELSE last_time END WHERE app_id = {mark('app')} RETURNING size, last_time",
        "find_key": f"SELECT fingerprint, seq, count, created_at FROM idempotency_keys WHERE {key}",
        "forget_key": f"DELETE FROM idempotency_keys WHERE {key}",
        "remember_key": "INSERT INTO idempotency_keys"
        f" (app_id, key, fingerprint, seq, count, created_at) VALUES ({names})",
    }


# The transaction's own statements go through the driver as text written once per dialect:
# built and compiled as SQLAlchemy expressions on every commit, they cost more than a one-entry
# insert (docs/performance.md).
_STATEMENTS = {dialect: _statements(mark) for dialect, mark in MARKS.items()}


def _sqlite_time(moment: datetime) -> str:
    # The text SQLAlchemy's SQLite DateTime writes for a moment; it sorts in time order.
    return moment.astimezone(UTC).strftime(SQLITE_TIME_FORMAT)


def _stored_time(value: datetime | str) -> datetime:
    # psycopg hands back aware datetimes, sqlite3 the text above.
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def utc(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything Trailkeep stores is UTC.
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


class AppendTx:
    """One appending transaction: the writer's view of the database while it holds the lock.

    On SQLite the whole transaction holds the database's write lock (BEGIN IMMEDIATE). On
    PostgreSQL each app's log_heads row is locked on first touch (the idempotency lookup or
    ``reserve``) and held to commit, so nodes appending to one app take turns, and everything
    read after the lock (tree frontier, idempotency keys) is what the previous holder committed
    (READ COMMITTED: each statement has a fresh snapshot). Callers touch apps in sorted order,
    so two transactions never wait on each other's locks in a cycle.
    """

    def __init__(self, connection: Connection) -> None:
        self._c = connection
        self._row_locks = connection.dialect.name == "postgresql"
        self._sql = _STATEMENTS[connection.dialect.name]
        self._locked: set[str] = set()

    def _lock(self, app_id: str) -> None:
        if not self._row_locks or app_id in self._locked:
            return
        driver_rows(self._c, self._sql["lock"], {"app": app_id})
        self._locked.add(app_id)

    def reserve(self, app_id: str, count: int, now: datetime) -> tuple[int, datetime]:
        """Lock the app's counter row and take ``count`` seqs; return (first seq, entry time).

        Entry time never goes backwards within an app, so a time range is also a seq range.
        """
        # The UPDATE itself waits for and takes the row lock; the seqs it returns are the
        # committed size, never one another node has also been given.
        self._locked.add(app_id)
        params = {"count": count, "now": self._when(now), "app": app_id}
        rows = driver_rows(self._c, self._sql["reserve"], params)
        if not rows:
            raise LookupError(f"no such app: {app_id}")
        size, last_time = rows[0]
        return int(size) - count, _stored_time(last_time)

    def _when(self, moment: datetime) -> datetime | str:
        # A moment as a parameter: psycopg binds datetimes; SQLite compares the stored text.
        return moment if self._row_locks else _sqlite_time(moment)

    def nodes(self, app_id: str, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        """Tree node hashes by (level, index), read inside the transaction."""
        return tree.read_nodes(self._c, app_id, ids)

    def insert(self, entries: list[dict[str, Any]]) -> None:
        """Insert entry rows."""
        if self._row_locks:
            self._copy(schema.events, [_text_safe(row) for row in entries])
        else:
            self._insert_many(schema.events, entries)

    def extend_tree(self, app_id: str, written: Sequence[tuple[NodeId, bytes]]) -> None:
        """Store the tree nodes an append completed (``merkle.append_leaves``'s first result)."""
        tree.extend(self._c, app_id, written)

    def _insert_many(self, table: Table, rows: list[dict[str, Any]]) -> None:
        # SQLite, through the driver, in this transaction: SQLAlchemy's per-row parameter
        # processing cost as much as SQLite's own work on the hot path (docs/performance.md).
        if not rows:
            return
        raw = self._c.connection.driver_connection
        assert raw is not None
        columns = list(rows[0])
        bound = _bound(table, columns, rows)
        cursor = raw.cursor()
        try:
            if len(rows) < PACK_MIN_ROWS:
                marks = ", ".join("?" * len(columns))
                statement = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"
                cursor.executemany(statement, bound)
                return
            limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            for block, params in blocks(table.name, columns, bound, limit):
                cursor.execute(block, params)
        finally:
            cursor.close()

    def _copy(self, table: Table, rows: list[dict[str, Any]]) -> None:
        # COPY, in this transaction: several times faster than a multi-row INSERT on
        # PostgreSQL, where rows go through the partition router and seven indexes anyway.
        if not rows:
            return
        columns = list(rows[0])
        quote = self._c.dialect.identifier_preparer.quote
        statement = f"COPY {quote(table.name)} ({', '.join(map(quote, columns))}) FROM STDIN"
        raw = self._c.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row([row[column] for column in columns])

    def idempotency(self, app_id: str, key: str, ttl: timedelta) -> IdempotencyRecord | None:
        """The unexpired record of an earlier write with this idempotency key, if any."""
        # Under the app's lock: a key that another node is committing right now is seen once
        # it commits, rather than inserted twice.
        self._lock(app_id)
        params = {"app": app_id, "key": key}
        rows = driver_rows(self._c, self._sql["find_key"], params)
        if not rows:
            return None
        fingerprint, seq, count, created_at = rows[0]
        if _stored_time(created_at) < datetime.now(UTC) - ttl:
            driver_execute(self._c, self._sql["forget_key"], params)
            return None
        return IdempotencyRecord(bytes(fingerprint), int(seq), int(count))

    def remember(self, app_id: str, key: str, record: IdempotencyRecord) -> None:
        """Record what a write with an idempotency key appended, in the same transaction."""
        driver_execute(self._c, self._sql["remember_key"], {
            "app": app_id, "key": key, "fingerprint": record.fingerprint, "seq": record.seq,
            "count": record.count, "at": self._when(datetime.now(UTC)),
        })  # fmt: skip

    def entries(self, app_id: str, seq: int, count: int) -> list[bytes]:
        """Entries [seq, seq + count) as stored, read inside the transaction."""
        return read_range(self._c, app_id, seq, count)


def _bound(table: Table, columns: list[str], rows: list[dict[str, Any]]) -> list[Any]:
    """The rows as parameter sequences in ``columns`` order, datetimes as SQLite text."""
    # Rows become tuples in C (itemgetter); only the DateTime columns are touched in Python,
    # and a commit's rows share one moment, so each is formatted once. A per-value function
    # call here was ~18% of an in-process append (docs/performance.md).
    getter = operator.itemgetter(*columns)
    timed = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, DateTime)]
    if timed:
        stamps: dict[datetime, str] = {}

        def row_of(row: dict[str, Any]) -> list[Any]:
            values = list(getter(row))
            for i in timed:
                moment = values[i]
                if isinstance(moment, datetime):
                    if moment not in stamps:
                        stamps[moment] = _sqlite_time(moment)
                    values[i] = stamps[moment]
            return values

        return [row_of(row) for row in rows]
    if len(columns) == 1:
        return [(getter(row),) for row in rows]
    return [getter(row) for row in rows]


def read_range(c: Connection, app_id: str, seq: int, count: int) -> list[bytes]:
    events = schema.events
    rows = c.execute(
        select(events.c.entry)
        .where(events.c.app_id == app_id, events.c.seq >= seq, events.c.seq < seq + count)
        .order_by(events.c.seq)
    )
    return [bytes(row.entry) for row in rows]


# Caller-chosen text that the events table indexes (PostgreSQL text cannot hold NUL).
_FREE_TEXT = ("actor_id", "target_type", "target_id")


def _text_safe(row: dict[str, Any]) -> dict[str, Any]:
    if not any(isinstance(row[k], str) and ("\x00" in row[k] or "\x01" in row[k])
               for k in _FREE_TEXT):  # fmt: skip
        return row
    safe = dict(row)
    for k in _FREE_TEXT:
        if isinstance(safe[k], str):
            safe[k] = pgtext.encode(safe[k])
    return safe
