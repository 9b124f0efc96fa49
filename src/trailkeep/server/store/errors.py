"""Which storage errors are an outage (retry later) rather than a fault of the request or code.

A full disk, a PostgreSQL server restarting or a dropped connection make a statement fail
without anything being wrong with what it asked for: the same write succeeds once space or the
server is back. Those are answered 503 with ``Retry-After`` (the API's ``storage_unavailable``),
never 500, and nothing was acknowledged, so a client's retry loses nothing. Everything else
(a constraint, a trigger refusing a change, a bug) stays an error.

The test looks through SQLAlchemy's wrapper (``DBAPIError.orig``) and the exception chain,
because the hot paths run statements on the driver's own cursor (``store/driver.py``), whose
errors arrive unwrapped.
"""

from __future__ import annotations

import errno
import sqlite3

import psycopg
from sqlalchemy.exc import DBAPIError

# SQLite's primary result codes (an extended code keeps them in its low byte).
_SQLITE_OUTAGES = {
    13: "the database's disk is full",  # SQLITE_FULL
    10: "the database's disk failed an I/O operation",  # SQLITE_IOERR
    14: "the database file cannot be opened",  # SQLITE_CANTOPEN
    5: "the database is busy",  # SQLITE_BUSY: another process held the lock past busy_timeout
}
_OS_OUTAGES = {
    errno.ENOSPC: "the data directory's disk is full",
    errno.EDQUOT: "the data directory's disk quota is used up",
    errno.EIO: "the data directory's disk failed an I/O operation",
}
# PostgreSQL SQLSTATE classes and codes that mean the server, not the statement, is the problem.
_PG_CLASSES = {
    "08": "the connection to PostgreSQL failed",  # connection_exception
    "53": "PostgreSQL is out of a resource (disk, memory or connections)",  # insufficient_resources
    "57": "PostgreSQL is shutting down or restarting",  # operator_intervention (57P01-57P05)
}
_PG_CODES = {
    "53100": "PostgreSQL's disk is full",  # disk_full: a table or index could not grow
    "57014": None,  # query_canceled: a statement timeout is not the server going away
}


class StorageUnavailable(Exception):
    """The database cannot take this statement now (disk full, server restarting); retry."""


def outage(exc: BaseException) -> str | None:
    """Why ``exc`` is a storage outage (to answer 503), or None if it is not one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        reason = _one(current)
        if reason is not None:
            return reason
        if isinstance(current, DBAPIError) and isinstance(current.orig, BaseException):
            current = current.orig
        else:
            current = current.__cause__ or current.__context__
    return None


def _one(exc: BaseException) -> str | None:
    if isinstance(exc, StorageUnavailable):
        return str(exc)
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return "the database connection was lost"
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return _SQLITE_OUTAGES.get(code & 0xFF) if isinstance(code, int) else None
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        if state is None:
            # No SQLSTATE: the client library failed (connection refused, reset, or used after
            # it closed), never the server refusing the statement.
            lost = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
            return _PG_CLASSES["08"] if lost else None
        if state in _PG_CODES:
            return _PG_CODES[state]
        return _PG_CLASSES.get(state[:2])
    if isinstance(exc, OSError):
        return _OS_OUTAGES.get(exc.errno) if exc.errno is not None else None
    return None
