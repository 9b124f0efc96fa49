"""PostgreSQL text cannot hold NUL: a reversible, order-keeping escape for the text columns.

Entries themselves are stored as bytes, so nothing is lost there; but the indexed copies of
caller-chosen values (actor id, target type and id) and the filters compared with them are
text. On PostgreSQL, U+0000 is written as U+0001 U+0001 and U+0001 as U+0001 U+0002; every
other character is itself. Equal values stay equal, and code point order is kept (both escapes
sort below U+0002, in the order of what they stand for, and no escape is a prefix of another),
so results, counts and their order match SQLite's.
"""

from __future__ import annotations

import re
from typing import Final

_ESCAPED: Final = re.compile("\x01[\x01\x02]")


def encode(value: str) -> str:
    """The form of ``value`` that PostgreSQL stores and compares."""
    if "\x00" not in value and "\x01" not in value:
        return value
    return value.replace("\x01", "\x01\x02").replace("\x00", "\x01\x01")


def decode(value: str) -> str:
    """The value that :func:`encode` turned into ``value``."""
    if "\x01" not in value:
        return value
    return _ESCAPED.sub(lambda m: "\x00" if m.group(0) == "\x01\x01" else "\x01", value)
