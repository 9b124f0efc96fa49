"""store.packed: one INSERT … SELECT stores exactly what executemany stores, value for value."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trailkeep.store.packed import pack

COLUMNS = ("app", "seq", "name", "note", "moment", "body", "digest")
BINARIES = ("body", "digest")
TABLE = (
    "CREATE TABLE {} (app TEXT, seq INTEGER, name TEXT, note TEXT, moment TEXT, body BLOB,"
    " digest BLOB)"
)


def _stamp(value: Any) -> str:
    if not isinstance(value, datetime):
        raise TypeError(type(value).__name__)
    return value.isoformat()


def _db() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute(TABLE.format("packed"))
    db.execute(TABLE.format("plain"))
    return db


def _stored(db: sqlite3.Connection, table: str) -> list[tuple[Any, ...]]:
    # typeof() too: an integer must not come back as text, nor a blob as text.
    columns = ", ".join(f"{c}, typeof({c})" for c in COLUMNS)
    return db.execute(f"SELECT {columns} FROM {table} ORDER BY rowid").fetchall()


def _plain(db: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
    db.executemany(
        f"INSERT INTO plain ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
        [[_stamp(row[c]) if c == "moment" else row[c] for c in COLUMNS] for row in rows],
    )


text = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=40)
MOMENTS = [datetime(2026, 1, 2, 3, 4, 5, 6, UTC), datetime(2026, 5, 6, tzinfo=UTC)]
rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "app": st.sampled_from(["app_a", "app_b"]),
            "seq": st.integers(-(2**63), 2**63 - 1),
            "name": text,
            "note": st.none() | text,
            "moment": st.sampled_from(MOMENTS),
            "body": st.binary(max_size=300),
            "digest": st.binary(min_size=32, max_size=32),
        }
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(rows_strategy)
def test_packed_rows_equal_the_drivers_own(rows: list[dict[str, Any]]) -> None:
    # Non-BMP text, quotes, backslashes and control characters; shared and varying columns;
    # empty blobs; the whole int64 range.
    db = _db()
    packed = pack("packed", rows, BINARIES, _stamp)
    assert packed is not None
    db.execute(*packed)
    _plain(db, rows)
    assert _stored(db, "packed") == _stored(db, "plain")


@pytest.mark.parametrize("where", ["name", "note"])
@pytest.mark.parametrize("count", [1, 3])
def test_a_string_holding_nul_is_left_to_the_driver(where: str, count: int) -> None:
    # SQLite's JSON reader would cut "a\0b" to "a": such rows must take the ordinary path.
    rows = [
        {"app": "a", "seq": n, "name": "x", "note": "y", "moment": datetime.now(UTC),
         "body": b"b", "digest": b"d" * 32}
        for n in range(count)
    ]  # fmt: skip
    rows[-1][where] = "a\x00b"
    assert pack("packed", rows, BINARIES, _stamp) is None


def test_a_literal_backslash_u0000_is_stored_as_written() -> None:
    # The text "\\u0000" (six characters) is not U+0000; it may take either path, but must
    # come back unchanged.
    rows = [{"app": "a", "seq": 1, "name": "\\u0000", "note": None, "moment": datetime.now(UTC),
             "body": b"", "digest": b"d" * 32}]  # fmt: skip
    db = _db()
    packed = pack("packed", rows, BINARIES, _stamp)
    if packed is not None:
        db.execute(*packed)
        assert db.execute("SELECT name FROM packed").fetchone() == ("\\u0000",)


def test_the_insert_runs_beside_a_busy_python_thread() -> None:
    # The reason the module exists: executemany takes the GIL back for every row, and beside
    # a thread running Python each take waits for a switch interval. 2,000 rows then took
    # ~8 s here; as one statement, well under one.
    rows = [
        {"app": "a", "seq": n, "name": f"n{n}", "note": None, "moment": datetime.now(UTC),
         "body": b"x" * 200, "digest": bytes(32)}
        for n in range(2000)
    ]  # fmt: skip
    packed = pack("packed", rows, BINARIES, _stamp)
    assert packed is not None
    db = _db()
    steps: list[str] = []
    db.set_trace_callback(steps.append)  # once per statement run; executemany's, once a row
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        started = time.perf_counter()
        db.execute(*packed)
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        spinner.join()
    db.set_trace_callback(None)
    assert len([s for s in steps if s.startswith("INSERT INTO packed")]) == 1
    assert db.execute("SELECT count(*) FROM packed").fetchone() == (2000,)
    # A bound for a broken path, not a speed measurement (those live in bench/): one handoff
    # per row would be ~2,000 × 5 ms.
    assert elapsed < 3.0
