"""The appending transaction: what the group-commit writer may do while it holds an app's lock."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, select

from trailkeep.log.merkle import NodeId
from trailkeep.server.store import pgtext, schema, tree
from trailkeep.server.store.driver import MARKS, driver_execute, driver_rows
from trailkeep.server.store.packed import blocks
from trailkeep.server.store.records import IdempotencyRecord

SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

#: The columns of an entry's row (the events table's, in order), as :meth:`AppendTx.insert`
#: binds them.
EVENT_COLUMNS: Final = tuple(column.name for column in schema.events.columns)
#: An entry's row: app_id, seq, id, time (as ``AppendTx.time_param`` gives it), action, kind,
#: actor_id, target_type, target_id, entry.
EventRow = tuple[str, int, str, datetime | str, str, str, str, str | None, str | None, bytes]
#: A changed path of an entry: app_id, path, seq (the event_changes table's columns, in order).
ChangeRow = tuple[str, str, int]

# From this many rows an insert goes in as blocks of rows (store/packed.py). Below it,
# executemany: with nothing else running Python it is the faster of the two for small inserts
# (blocks bind padding and run a larger program), and a small insert hands the GIL back and
# forth only a few times.
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
# built and compiled as SQLAlchemy expressions on every commit, they would cost more than a
# one-entry insert.
_STATEMENTS = {dialect: _statements(mark) for dialect, mark in MARKS.items()}
_SQLITE_CHANGES = "INSERT INTO event_changes (app_id, path, seq) VALUES (?, ?, ?)"
_SQLITE_INSERT = (
    f"INSERT INTO {schema.events.name} ({', '.join(EVENT_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
)


def _sqlite_time(moment: datetime) -> str:
    # The text SQLAlchemy's SQLite DateTime writes for a moment; it sorts in time order.
    return moment.astimezone(UTC).strftime(SQLITE_TIME_FORMAT)


def _stored_time(value: datetime | str) -> datetime:
    # psycopg hands back aware datetimes, sqlite3 the text above.
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def utc(moment: datetime | None) -> datetime | None:
    """A stored moment as an aware UTC datetime (SQLite hands back naive ones)."""
    # Everything Trailkeep stores is UTC.
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

    def __init__(self, connection: Connection, *, locking: bool = True) -> None:
        self._c = connection
        self._row_locks = connection.dialect.name == "postgresql"
        self._sql = _STATEMENTS[connection.dialect.name]
        # A view for reading only (``Store.admin_view``) takes no app's lock.
        self._locked: set[str] | None = set() if locking else None

    @property
    def connection(self) -> Connection:
        """The transaction's connection, for the store's other tables (webhooks)."""
        return self._c

    def lock(self, app_id: str) -> None:
        """Take the app's lock now (PostgreSQL; on SQLite the transaction holds it already)."""
        if not self._row_locks or self._locked is None or app_id in self._locked:
            return
        driver_rows(self._c, self._sql["lock"], {"app": app_id})
        self._locked.add(app_id)

    def reserve(self, app_id: str, count: int, now: datetime) -> tuple[int, datetime]:
        """Lock the app's counter row and take ``count`` seqs; return (first seq, entry time).

        Entry time never goes backwards within an app, so a time range is also a seq range.
        """
        # The UPDATE itself waits for and takes the row lock; the seqs it returns are the
        # committed size, never one another node has also been given.
        if self._locked is not None:
            self._locked.add(app_id)
        params = {"count": count, "now": self.time_param(now), "app": app_id}
        rows = driver_rows(self._c, self._sql["reserve"], params)
        if not rows:
            raise LookupError(f"no such app: {app_id}")
        size, last_time = rows[0]
        return int(size) - count, _stored_time(last_time)

    def time_param(self, moment: datetime) -> datetime | str:
        """A moment as this database binds it: psycopg takes datetimes, SQLite stores text."""
        return moment if self._row_locks else _sqlite_time(moment)

    def nodes(self, app_id: str, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        """Tree node hashes by (level, index), read inside the transaction."""
        return tree.read_nodes(self._c, app_id, ids)

    def insert(self, rows: Sequence[EventRow]) -> None:
        """Insert entry rows, each in :data:`EVENT_COLUMNS` order, as they are given."""
        if not rows:
            return
        if self._row_locks:
            self._copy([_text_safe(row) for row in rows])
        else:
            self._insert_many(rows)

    def insert_changes(self, rows: Sequence[ChangeRow]) -> None:
        """Index the changed paths of the entries just inserted (only entries with ``changes``)."""
        raw = self._c.connection.driver_connection
        assert raw is not None
        if self._row_locks:
            quote = self._c.dialect.identifier_preparer.quote
            statement = f"COPY {quote(schema.event_changes.name)} (app_id, path, seq) FROM STDIN"
            with raw.cursor() as cursor, cursor.copy(statement) as copy:
                for app_id, path, seq in rows:
                    copy.write_row((app_id, pgtext.encode(path), seq))
            return
        cursor = raw.cursor()
        try:
            cursor.executemany(_SQLITE_CHANGES, rows)
        finally:
            cursor.close()

    def extend_tree(self, app_id: str, written: Sequence[tuple[NodeId, bytes]]) -> None:
        """Store the tree nodes an append completed (``merkle.append_leaves``'s first result)."""
        tree.extend(self._c, app_id, written)

    def _insert_many(self, rows: Sequence[EventRow]) -> None:
        # SQLite, through the driver, in this transaction: SQLAlchemy's per-row parameter
        # processing cost as much as SQLite's own work on the hot path. The rows are bound as
        # they come, already in column order with the time as SQLite's text.
        raw = self._c.connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            if len(rows) < PACK_MIN_ROWS:
                cursor.executemany(_SQLITE_INSERT, rows)
                return
            limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            for block, params in blocks(schema.events.name, EVENT_COLUMNS, rows, limit):
                cursor.execute(block, params)
        finally:
            cursor.close()

    def _copy(self, rows: Sequence[Sequence[Any]]) -> None:
        # COPY, in this transaction: far cheaper than a multi-row INSERT on PostgreSQL, where
        # the rows go through the partition router and every index anyway.
        quote = self._c.dialect.identifier_preparer.quote
        columns = ", ".join(map(quote, EVENT_COLUMNS))
        statement = f"COPY {quote(schema.events.name)} ({columns}) FROM STDIN"
        raw = self._c.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def idempotency(self, app_id: str, key: str, ttl: timedelta) -> IdempotencyRecord | None:
        """The unexpired record of an earlier write with this idempotency key, if any."""
        # Under the app's lock: a key that another node is committing right now is seen once
        # it commits, rather than inserted twice.
        self.lock(app_id)
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
            "count": record.count, "at": self.time_param(datetime.now(UTC)),
        })  # fmt: skip

    def entries(self, app_id: str, seq: int, count: int) -> list[bytes]:
        """Entries [seq, seq + count) as stored, read inside the transaction."""
        return read_range(self._c, app_id, seq, count)


def read_range(c: Connection, app_id: str, seq: int, count: int) -> list[bytes]:
    """Entries [seq, seq + count) of an app as stored, in seq order, on connection ``c``."""
    events = schema.events
    rows = c.execute(
        select(events.c.entry)
        .where(events.c.app_id == app_id, events.c.seq >= seq, events.c.seq < seq + count)
        .order_by(events.c.seq)
    )
    return [bytes(row.entry) for row in rows]


# Where the caller-chosen text that the events table indexes sits in a row (PostgreSQL text
# cannot hold NUL).
_FREE_TEXT = tuple(EVENT_COLUMNS.index(name) for name in ("actor_id", "target_type", "target_id"))


def _text_safe(row: EventRow) -> Sequence[Any]:
    texts = [row[i] for i in _FREE_TEXT]
    if not any(isinstance(t, str) and ("\x00" in t or "\x01" in t) for t in texts):
        return row
    safe: list[Any] = list(row)
    for i, text in zip(_FREE_TEXT, texts, strict=True):
        if isinstance(text, str):
            safe[i] = pgtext.encode(text)
    return safe
