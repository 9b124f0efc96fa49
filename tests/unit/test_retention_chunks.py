"""How a purge sizes its chunks: toward a target time holding the lock, within bounds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trailkeep.server.governance.retention import MIN_CHUNK, PURGE_CHUNK, next_chunk


def test_a_slow_chunk_shrinks_the_next_and_a_fast_one_grows_it_at_most_twofold() -> None:
    assert next_chunk(1_000, held=0.130, target=0.025, largest=PURGE_CHUNK) == 192
    assert next_chunk(200, held=0.005, target=0.025, largest=PURGE_CHUNK) == 400
    assert next_chunk(800, held=0.001, target=0.025, largest=PURGE_CHUNK) == PURGE_CHUNK
    assert next_chunk(100, held=10.0, target=0.025, largest=PURGE_CHUNK) == MIN_CHUNK
    assert next_chunk(300, held=0.0, target=0.025, largest=PURGE_CHUNK) == 600


@given(
    size=st.integers(MIN_CHUNK, PURGE_CHUNK),
    held=st.floats(0, 100, allow_nan=False),
    target=st.floats(0.001, 1),
)
def test_the_next_chunk_stays_within_its_bounds(size: int, held: float, target: float) -> None:
    chunk = next_chunk(size, held, target, PURGE_CHUNK)
    assert MIN_CHUNK <= chunk <= min(PURGE_CHUNK, 2 * size)
