"""Many rows as few SQLite statements: ``INSERT … SELECT`` from a ``VALUES`` list of fixed size.

Why not ``executemany``: Python's sqlite3 releases the GIL around each row's step and takes it
back to bind the next row. While another thread runs Python (the event loop, an export), each
of those takes waits for that thread to yield the GIL, up to the interpreter's switch interval,
so a large insert beside one busy Python thread spends nearly all its time waiting. A block of
rows is one step: the driver binds every value in C, then SQLite inserts the lot with the GIL
released.

Why fixed sizes: a statement's text is the key of sqlite3's per-connection statement cache, and
a text per row count would fill it with programs of up to a thousand rows each. So a block is
one of ``BLOCK_ROWS`` rows long, and the rows a short block does not have are bound as NULL and
dropped by ``WHERE column1 IS NOT NULL``: the first column must be one that is never NULL.
Blocks as large as a whole group commit would gain nothing: their padding costs what the fewer
statements save.

Why bound values rather than the rows as one JSON text for SQLite to parse: parsing costs
SQLite work for every entry, and that text cannot carry U+0000; bound values cost neither.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache
from itertools import chain
from typing import Any

# Three texts per table. 1,024 rows of the widest table (events, 10 columns) are 10,240
# parameters, a third of SQLite's default limit (32,766 since 3.32).
BLOCK_ROWS = (64, 256, 1_024)


@lru_cache(maxsize=32)
def statement(table: str, columns: tuple[str, ...], rows: int) -> str:
    """The INSERT of up to ``rows`` rows; those whose first value is NULL are skipped."""
    one = f"({', '.join('?' * len(columns))})"
    values = ", ".join([one] * rows)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM (VALUES {values})"
        " WHERE column1 IS NOT NULL"
    )


def block_rows(width: int, max_params: int) -> tuple[int, ...]:
    """The rows a block holds, smallest first, for a table of ``width`` columns."""
    # An older SQLite allows as few as 999 parameters: blocks shrink to fit.
    most = max(1, max_params // width)
    return tuple(sorted({min(rows, most) for rows in BLOCK_ROWS}))


def blocks(
    table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], max_params: int = 32_766
) -> Iterator[tuple[str, list[Any]]]:
    """The statements, with their parameters, that insert ``rows`` (sequences in column order)."""
    names = tuple(columns)
    sizes = block_rows(len(names), max_params)
    for start in range(0, len(rows), sizes[-1]):
        part = rows[start : start + sizes[-1]]
        size = next(n for n in sizes if n >= len(part))
        params = list(chain.from_iterable(part))
        # Either mistake would lose rows silently rather than fail: check both.
        if len(params) != len(part) * len(names):
            raise ValueError(f"every row must have {len(names)} values")
        if any(row[0] is None for row in part):
            raise ValueError(f"{names[0]} marks padding rows and cannot be NULL")
        params.extend([None] * ((size - len(part)) * len(names)))
        yield statement(table, names, size), params
