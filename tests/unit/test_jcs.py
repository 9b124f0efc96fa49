"""The fast canonical encoder is byte-identical to the rfc8785 reference, or refuses alike."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from trailkeep.log import jcs

# Keys and strings over all of Unicode (minus lone surrogates), non-BMP and U+E000.. included.
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=1500)
@given(json_values)
def test_fast_path_matches_reference(value: Any) -> None:
    assert jcs.canonical(value) == rfc8785.dumps(value)


@given(st.dictionaries(st.sampled_from(["\ue000", "\U0001f600", "\uffff", "a", "é"]), st.none()))
def test_key_order_is_by_utf16_code_units(value: dict[str, None]) -> None:
    assert jcs.canonical(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("number", [2**53, -(2**53), 10**30])
def test_integers_outside_ijson_are_refused(number: int) -> None:
    with pytest.raises(jcs.CanonicalizationError):
        jcs.canonical({"n": number})


def test_floats_follow_ecmascript() -> None:
    assert jcs.canonical({"a": 1.0, "b": 1e21, "c": 0.1, "d": -0.0}) == (
        b'{"a":1,"b":1e+21,"c":0.1,"d":0}'
    )
