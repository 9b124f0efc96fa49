"""RFC 8785 (JCS) canonical JSON, fast: orjson where it is provably identical, rfc8785 elsewhere.

orjson with sorted keys writes exactly the JCS bytes for every JSON value except three cases:
floats (JCS prints numbers the ECMAScript way, ``1.0`` as ``1``), integers outside the I-JSON
safe range (JCS refuses them), and object keys holding characters at or above U+E000 (JCS sorts
keys by UTF-16 code units, orjson by code points, and the two orders differ only there). A
value with none of those takes the fast path; any other goes to the reference implementation.
``tests/unit/test_jcs.py`` checks the two agree on generated values.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson
import rfc8785

CanonicalizationError = rfc8785.CanonicalizationError

_SAFE_INT: Final = 2**53 - 1
_HIGH_KEY: Final = re.compile("[\ue000-\U0010ffff]")


def _fast_ok(value: Any) -> bool:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-_SAFE_INT <= value <= _SAFE_INT)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (not key.isascii() and _HIGH_KEY.search(key)):
                return False
            if not _fast_ok(item):
                return False
        return True
    if kind is list:
        return all(_fast_ok(item) for item in value)
    return False  # floats, and anything that is not plain JSON


def canonical(value: Any) -> bytes:
    """The RFC 8785 canonical encoding of a JSON value."""
    if _fast_ok(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # e.g. a lone surrogate: the reference refuses it with CanonicalizationError
    encoded: bytes = rfc8785.dumps(value)
    return encoded
