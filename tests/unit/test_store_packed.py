"""store.packed: blocks of rows store exactly what executemany stores, value for value."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trailkeep.server.store.packed import BLOCK_ROWS, block_rows, blocks

COLUMNS = ("app", "seq", "name", "note", "moment", "body", "digest")
TABLE = (
    "CREATE TABLE {} (app TEXT NOT NULL, seq INTEGER, name TEXT, note TEXT, moment TEXT,"
    " body BLOB, digest BLOB)"
)
PLAIN = f"INSERT INTO plain ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def _db() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute(TABLE.format("packed"))
    db.execute(TABLE.format("plain"))
    return db


def _stored(db: sqlite3.Connection, table: str) -> list[tuple[Any, ...]]:
    # typeof() too: an integer must not come back as text, nor a blob as text.
    columns = ", ".join(f"{c}, typeof({c})" for c in COLUMNS)
    return db.execute(f"SELECT {columns} FROM {table} ORDER BY rowid").fetchall()


def _insert(db: sqlite3.Connection, rows: list[tuple[Any, ...]], max_params: int) -> int:
    """Insert through blocks(); return how many statements ran."""
    ran = 0
    for text, params in blocks("packed", COLUMNS, rows, max_params):
        db.execute(text, params)
        ran += 1
    return ran


text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
row_strategy = st.tuples(
    st.sampled_from(["app_a", "app_b", ""]),
    st.integers(-(2**63), 2**63 - 1),
    text,
    st.none() | text,
    st.sampled_from(["2026-01-02 03:04:05.000006", "2026-05-06 00:00:00.000000"]),
    st.none() | st.binary(max_size=300),
    st.binary(min_size=32, max_size=32),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(row_strategy, min_size=1, max_size=30),
    st.integers(1, 1_400),
    st.sampled_from([32_766, 999, 70]),
)
def test_blocks_store_what_executemany_stores(
    templates: list[tuple[Any, ...]], count: int, max_params: int
) -> None:
    # U+0000 and non-BMP text, quotes, backslashes, control characters, empty and NULL blobs,
    # the whole int64 range; counts that fill blocks exactly, pad them, and cross from one
    # block to the next; and the smaller blocks an older SQLite's parameter limit asks for.
    rows = [templates[n % len(templates)] for n in range(count)]
    db = _db()
    _insert(db, rows, max_params)
    db.executemany(PLAIN, rows)
    assert _stored(db, "packed") == _stored(db, "plain")


@pytest.mark.parametrize(
    ("count", "statements"), [(1, 1), (64, 1), (65, 1), (1_024, 1), (1_025, 2), (2_500, 3)]
)
def test_rows_go_in_a_block_at_a_time(count: int, statements: int) -> None:
    rows = [("a", n, "x", None, "t", b"", bytes(32)) for n in range(count)]
    db = _db()
    assert _insert(db, rows, 32_766) == statements
    assert db.execute("SELECT count(*), min(seq), max(seq) FROM packed").fetchone() == (
        count, 0, count - 1,
    )  # fmt: skip


def test_statement_texts_are_few() -> None:
    # Each text is a prepared program in sqlite3's per-connection cache: a text per row count
    # would fill it.
    texts = set()
    for count in range(1, 3_000, 7):
        rows = [("a", n, "x", None, "t", b"", bytes(32)) for n in range(count)]
        texts |= {text for text, _ in blocks("packed", COLUMNS, rows)}
    assert len(texts) == len(BLOCK_ROWS)


def test_blocks_fit_the_parameter_limit() -> None:
    assert block_rows(10, 32_766) == (64, 256, 1_024)
    assert block_rows(10, 999) == (64, 99)
    assert block_rows(7, 10) == (1,)
    for text, params in blocks("packed", COLUMNS, [("a", 1, "", None, "", b"", b"")] * 300, 999):
        assert len(params) <= 999
        assert text.count("?") == len(params)


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ((None, 1, "x", None, "t", b"", b""), "app marks padding rows"),
        (("a", 1, "x"), "every row must have 7 values"),
    ],
)
def test_rows_that_would_be_lost_are_refused(row: tuple[Any, ...], error: str) -> None:
    # A NULL first value reads as padding, a short row shifts every later value: both would
    # drop or garble rows without an error from SQLite, so blocks() raises instead.
    rows = [("a", 0, "x", None, "t", b"", b""), row]
    with pytest.raises(ValueError, match=error):
        list(blocks("packed", COLUMNS, rows))


def test_the_insert_runs_beside_a_busy_python_thread() -> None:
    # The reason the module exists: executemany takes the GIL back for every row, and beside
    # a thread running Python each take waits for a switch interval. 2,000 rows then took
    # ~8 s here; as two statements, well under one.
    rows = [("a", n, f"n{n}", None, "t", b"x" * 200, bytes(32)) for n in range(2_000)]
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
        _insert(db, rows, 32_766)
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        spinner.join()
    db.set_trace_callback(None)
    assert len([s for s in steps if s.startswith("INSERT INTO packed")]) == 2
    assert db.execute("SELECT count(*) FROM packed").fetchone() == (2_000,)
    # A bound for a broken path, not a speed measurement (those live in bench/): one handoff
    # per row would be ~2,000 × 5 ms.
    assert elapsed < 3.0
