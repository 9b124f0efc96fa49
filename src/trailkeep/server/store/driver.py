"""Statements run through the database driver itself, where SQLAlchemy's per-row cost shows."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Dialect


@contextmanager
def _cursor(c: Connection) -> Iterator[Any]:
    cursor = c.connection.cursor()
    try:
        yield cursor
    finally:
        cursor.close()


def driver_rows(c: Connection, sql: str, params: dict[str, Any]) -> list[Any]:
    """Rows of ``sql`` (in the driver's parameter syntax) as the driver's own tuples.

    For the hot bulk reads (tree tiles, verification) SQLAlchemy's Row objects and result
    processing cost more than the query; both drivers already hand back ints and bytes.
    """
    with _cursor(c) as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def driver_execute(c: Connection, sql: str, params: dict[str, Any]) -> None:
    """Run one statement that returns no rows (in the driver's parameter syntax)."""
    with _cursor(c) as cursor:
        cursor.execute(sql, params)


def driver_executemany(c: Connection, sql: str, rows: Sequence[dict[str, Any]]) -> None:
    """Run ``sql`` (in the driver's parameter syntax) once per row, in the open transaction."""
    with _cursor(c) as cursor:
        cursor.executemany(sql, rows)


#: Each driver's way to name a parameter: sqlite3 ``:name``, psycopg ``%(name)s``.
MARKS: dict[str, Callable[[str], str]] = {
    "sqlite": lambda name: f":{name}",
    "postgresql": lambda name: f"%({name})s",
}


def placeholder(dialect: Dialect) -> Callable[[str], str]:
    """Name a parameter in the driver's own syntax: sqlite3 ``:name``, psycopg ``%(name)s``."""
    return MARKS[dialect.name]
