"""The in-memory moving window, against the definition: at most N hits in any window."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trailkeep.server.api.ratelimit import MovingWindow

# Hits as (key, gap since the previous hit), so times only move forward.
hits = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(min_value=0, max_value=3)),
    max_size=200,
)


@given(amount=st.integers(min_value=1, max_value=6), period=st.floats(0.5, 5), script=hits)
def test_matches_the_definition(
    amount: int, period: float, script: list[tuple[str, float]]
) -> None:
    window = MovingWindow(amount, period)
    accepted: dict[str, list[float]] = {}
    now = 100.0
    for key, gap in script:
        now += gap
        recent = [t for t in accepted.get(key, []) if t > now - period]
        expected = len(recent) < amount
        allowed, remaining, reset_at = window.hit(key, now)
        assert allowed == expected
        if allowed:
            accepted.setdefault(key, []).append(now)
            recent.append(now)
        assert remaining == amount - len(recent)
        assert reset_at == min(recent) + period


def test_idle_keys_are_forgotten() -> None:
    window = MovingWindow(2, 60)
    for n in range(1_000):
        window.hit(f"client-{n}", 0.0)
    window.hit("late", 61.0)
    assert set(window._hits) == {"late"}


def test_refusal_says_when_to_come_back() -> None:
    window = MovingWindow(2, 60)
    assert window.hit("ip", 0.0)[0]
    assert window.hit("ip", 10.0)[0]
    allowed, remaining, reset_at = window.hit("ip", 30.0)
    assert (allowed, remaining, reset_at) == (False, 0, 60.0)
    assert window.hit("ip", 60.0)[0]  # the first hit has left the window
