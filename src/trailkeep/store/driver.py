"""Statements run through the database driver itself, where SQLAlchemy's per-row cost shows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect


def driver_rows(c: Connection, sql: str, params: dict[str, Any]) -> list[Any]:
    """Rows of ``sql`` (in the driver's parameter syntax) as the driver's own tuples.

    For the hot bulk reads (tree tiles, verification) SQLAlchemy's Row objects and result
    processing cost more than the query; both drivers already hand back ints and bytes.
    """
    cursor = c.connection.cursor()
    try:
        cursor.execute(sql, params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def driver_executemany(c: Connection, sql: str, rows: Sequence[dict[str, Any]]) -> None:
    """Run ``sql`` (in the driver's parameter syntax) once per row, in the open transaction."""
    cursor = c.connection.cursor()
    try:
        cursor.executemany(sql, rows)
    finally:
        cursor.close()


#: Each driver's way to name a parameter: sqlite3 ``:name``, psycopg ``%(name)s``.
MARKS: dict[str, Callable[[str], str]] = {
    "sqlite": lambda name: f":{name}",
    "postgresql": lambda name: f"%({name})s",
}


def placeholder(dialect: Dialect) -> Callable[[str], str]:
    """Name a parameter in the driver's own syntax: sqlite3 ``:name``, psycopg ``%(name)s``."""
    return MARKS[dialect.name]


def driver_execute(c: Connection, sql: str, params: dict[str, Any]) -> None:
    """Run one statement that returns no rows (in the driver's parameter syntax)."""
    cursor = c.connection.cursor()
    try:
        cursor.execute(sql, params)
    finally:
        cursor.close()
