"""Which storage errors are outages (503 storage_unavailable) and which stay errors (500).

Real errors where they are cheap to make: SQLite's "database or disk is full" from a database
capped with ``max_page_count``, a refused PostgreSQL connection from a port nobody listens on.
"""

from __future__ import annotations

import errno
import sqlite3

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from tests.servers import free_port
from trailkeep.server.store.errors import StorageUnavailable, outage


def _sqlite_full() -> sqlite3.Error:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (b BLOB)")
    db.execute("PRAGMA max_page_count = 4")
    with pytest.raises(sqlite3.OperationalError) as caught:
        db.execute("INSERT INTO t VALUES (zeroblob(100000))")
    return caught.value


def test_sqlite_full_is_an_outage_raw_and_wrapped() -> None:
    raw = _sqlite_full()
    assert "full" in str(raw)
    assert outage(raw) == "the database's disk is full"
    wrapped = OperationalError("INSERT", {}, raw)
    assert outage(wrapped) == "the database's disk is full"
    # Raised from another exception (the writer re-raises in its own words): still found.
    chained = RuntimeError("append failed")
    chained.__cause__ = raw
    assert outage(chained) == "the database's disk is full"


def test_sqlalchemy_full_error_from_an_engine_is_an_outage() -> None:
    engine = create_engine("sqlite://")
    with engine.connect() as c:
        c.execute(text("CREATE TABLE t (b BLOB)"))
        c.execute(text("PRAGMA max_page_count = 4"))
        with pytest.raises(DBAPIError) as caught:
            c.execute(text("INSERT INTO t VALUES (zeroblob(100000))"))
    assert outage(caught.value) == "the database's disk is full"


def test_a_refused_postgres_connection_is_an_outage() -> None:
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(f"postgresql://x@127.0.0.1:{free_port()}/x", connect_timeout=5)
    assert outage(caught.value) == "the connection to PostgreSQL failed"


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("53100", "PostgreSQL's disk is full"),  # disk_full
        ("53300", "PostgreSQL is out of a resource (disk, memory or connections)"),
        ("57P01", "PostgreSQL is shutting down or restarting"),  # admin_shutdown
        ("57P03", "PostgreSQL is shutting down or restarting"),  # cannot_connect_now
        ("08006", "the connection to PostgreSQL failed"),  # connection_failure
        ("57014", None),  # query_canceled: a statement timeout, not an outage
        ("23505", None),  # unique_violation
        ("P0001", None),  # raise_exception: an append-only trigger refusing a change
    ],
)
def test_postgres_sqlstates(sqlstate: str, expected: str | None) -> None:
    error = psycopg.errors.lookup(sqlstate)("from the server")
    assert outage(error) == expected
    assert outage(OperationalError("SELECT 1", {}, error)) == expected


def test_disk_errors_of_the_file_system_are_outages() -> None:
    assert outage(OSError(errno.ENOSPC, "No space left on device")) is not None
    assert outage(OSError(errno.EIO, "Input/output error")) is not None
    assert outage(OSError(errno.ENOENT, "No such file")) is None


def test_what_is_not_an_outage_stays_an_error() -> None:
    constraint = sqlite3.IntegrityError("UNIQUE constraint failed")
    assert outage(IntegrityError("INSERT", {}, constraint)) is None
    assert outage(ValueError("a bug")) is None
    assert outage(StorageUnavailable("the database's disk is full")) is not None
