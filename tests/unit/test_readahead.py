"""`ahead`: a stream read on a thread, in order, its failure raised, closed when left early."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from trailkeep.cli.readahead import ahead


def test_items_come_in_order_and_end() -> None:
    assert list(ahead(iter(range(1000)), depth=3)) == list(range(1000))


def test_a_failure_of_the_source_is_raised_to_the_reader() -> None:
    def source() -> Iterator[int]:
        yield 1
        raise ConnectionError("the stream broke")

    reader = ahead(source())
    assert next(reader) == 1
    with pytest.raises(ConnectionError, match="broke"):
        next(reader)


def test_leaving_early_closes_the_source() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(10**9)
        finally:
            closed.set()

    reader = ahead(source(), depth=2)
    assert [next(reader) for _ in range(5)] == [0, 1, 2, 3, 4]
    reader.close()
    assert closed.wait(5), "the source was not closed"
