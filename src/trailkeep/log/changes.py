"""What changed: RFC 6901 pointers, the diff of two objects, and applying a diff. Pure.

An entry's ``changes`` is ``[{path, old, new}]`` (DESIGN §8): ``path`` is an RFC 6901 JSON
pointer into the changed object, ``old`` is absent for a field that was added and ``new`` for
one that was removed. The server computes it from ``before`` and ``after`` with :func:`diff`:
nested objects are followed key by key, anything else (lists included) is compared as a whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

#: The longest pointer an entry may name (it is indexed; PostgreSQL's btree rows are bounded).
PATH_MAX: Final = 512
#: RFC 6901 as a pattern: one or more reference tokens, `~` only as `~0` or `~1`.
POINTER_PATTERN: Final = r"^(/([^~/]|~[01])*)+$"
_POINTER_RE: Final = re.compile(POINTER_PATTERN, re.DOTALL)


class PointerError(ValueError):
    """A string that is not a pointer an entry may carry."""


def escape(key: str) -> str:
    """One object key as a pointer's reference token (``~`` → ``~0``, ``/`` → ``~1``)."""
    # `~` first: escaping `/` first would turn its `~1` into `~01`.
    return key.replace("~", "~0").replace("/", "~1")


def unescape(token: str) -> str:
    """A reference token as the object key it names."""
    return token.replace("~1", "/").replace("~0", "~")


def pointer(keys: Sequence[str]) -> str:
    """The pointer naming the field reached through ``keys`` (at least one)."""
    return "".join("/" + escape(key) for key in keys)


def parse_pointer(path: str) -> list[str]:
    """The keys a pointer names; :class:`PointerError` unless it is RFC 6901 and not the root."""
    if not path:
        raise PointerError("the root (empty pointer) is not a field; start the pointer with /")
    if len(path) > PATH_MAX:
        raise PointerError(f"at most {PATH_MAX} characters")
    if path[0] != "/":
        raise PointerError("an RFC 6901 JSON pointer starts with /")
    if _POINTER_RE.match(path) is None:
        raise PointerError("`~` is written only as ~0 (for ~) or ~1 (for /) in a JSON pointer")
    return [unescape(token) for token in path[1:].split("/")]


def same(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1``, and ``1`` is ``1.0`` (both are 1 in JSON)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The changes that turn ``before`` into ``after``, in key order; unchanged fields left out.

    Callers bound the nesting first (the record's depth check): this recurses per level.
    """
    out: list[dict[str, Any]] = []
    _diff(before, after, [], out)
    return out


def _diff(
    before: Mapping[str, Any], after: Mapping[str, Any], at: list[str], out: list[dict[str, Any]]
) -> None:
    for key in sorted(before.keys() | after.keys()):
        path = [*at, key]
        if key not in after:
            out.append({"path": pointer(path), "old": before[key]})
        elif key not in before:
            out.append({"path": pointer(path), "new": after[key]})
        else:
            old, new = before[key], after[key]
            if isinstance(old, dict) and isinstance(new, dict):
                _diff(old, new, path, out)
            elif not same(old, new):
                out.append({"path": pointer(path), "old": old, "new": new})


def apply(document: Mapping[str, Any], changes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``document`` with ``changes`` applied (a copy): the inverse of :func:`diff`.

    ``KeyError``/``TypeError`` when a change does not fit the document (its parent is missing).
    """
    result: dict[str, Any] = _copy(document)
    for change in changes:
        keys = parse_pointer(change["path"])
        parent: Any = result
        for key in keys[:-1]:
            parent = parent[key]
        if "new" in change:
            parent[keys[-1]] = _copy(change["new"])
        else:
            del parent[keys[-1]]
    return result


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
