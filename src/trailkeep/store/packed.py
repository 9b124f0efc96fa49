"""Many rows as one SQLite statement: ``INSERT … SELECT`` over a JSON array and a blob.

Why not ``executemany``: Python's sqlite3 releases the GIL around each row's step and takes it
back to bind the next row. While another thread runs Python (the event loop, an export), each
of those takes waits for it to yield the GIL, up to the 5 ms switch interval: 1,600-row inserts
ran at ~65,000 rows/s alone and at ~270 rows/s beside one busy Python thread. One statement is
one step: SQLite inserts every row with the GIL released, ~39,000 rows/s beside the busy
thread. The price is SQLite reading the JSON (~4 µs a row), so the store packs only large
inserts (docs/performance.md has both sides).

The scalar columns travel as a JSON array of arrays, one per row, except those every row shares,
which are bound once; each binary column's values are joined into one blob, and the row carries
its value's offset and length in it, so no bytes are escaped. SQLite's JSON reader stops a
string at U+0000, so rows holding one are refused (``pack`` returns None) and the caller binds
them the ordinary way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import accumulate
from operator import itemgetter
from typing import Any

Packed = tuple[str, dict[str, Any]]


@lru_cache(maxsize=32)
def statement(
    table: str, shared: tuple[str, ...], varying: tuple[str, ...], binaries: tuple[str, ...]
) -> str:
    """The INSERT … SELECT for these columns (a few texts per table: the statement cache holds)."""
    values = [f":s{n}" for n, _ in enumerate(shared)]
    values += [f"r.value ->> {i}" for i, _ in enumerate(varying)]
    at = len(varying)
    for n, _ in enumerate(binaries):
        values.append(f"substr(:b{n}, r.value ->> {at}, r.value ->> {at + 1})")
        at += 2
    columns = ", ".join((*shared, *varying, *binaries))
    return f"INSERT INTO {table} ({columns}) SELECT {', '.join(values)} FROM json_each(:rows) AS r"


def pack(
    table: str,
    rows: Sequence[dict[str, Any]],
    binaries: Sequence[str],
    encode: Callable[[Any], Any],
) -> Packed | None:
    """The statement and parameters that insert ``rows``; None if a string holds U+0000.

    Every row has the same keys. ``binaries`` names the columns that hold bytes; ``encode``
    turns any other value JSON cannot hold (a datetime) into one it can.
    """
    params: dict[str, Any] = {}
    shared: list[str] = []
    varying: list[str] = []
    for column in rows[0]:
        if column in binaries:
            continue
        # A column every row shares (a commit's app and time) is bound once, not parsed per row.
        # First against last settles most columns (seq, id) without a set of every value.
        value = rows[0][column]
        if value == rows[-1][column] and len(set(map(itemgetter(column), rows))) == 1:
            if isinstance(value, str) and "\x00" in value:
                return None
            plain = isinstance(value, str | int | float | None)
            params[f"s{len(shared)}"] = value if plain else encode(value)
            shared.append(column)
        else:
            varying.append(column)
    per_row: list[Any] = [() for _ in rows]
    if len(varying) == 1:
        per_row = [(row[varying[0]],) for row in rows]
    elif varying:
        per_row = list(map(itemgetter(*varying), rows))
    for n, column in enumerate(binaries):
        data = [row[column] for row in rows]
        lengths = list(map(len, data))
        # One leading byte: sqlite3 binds an empty bytes object as NULL, and substr of NULL
        # is NULL, not an empty blob. So the first value starts at 2 (substr counts from 1).
        offsets = accumulate(lengths[:-1], initial=2)
        spans = zip(per_row, offsets, lengths, strict=True)
        per_row = [(*row, at, size) for row, at, size in spans]
        params[f"b{n}"] = b"".join((b"\0", *data))
    text = json.dumps(per_row, ensure_ascii=False, separators=(",", ":"), default=encode)
    # json.dumps writes U+0000 as \u0000. A false alarm (a backslash, then "u0000") only costs
    # the slower path.
    if "\\u0000" in text:
        return None
    params["rows"] = text
    return statement(table, tuple(shared), tuple(varying), tuple(binaries)), params
