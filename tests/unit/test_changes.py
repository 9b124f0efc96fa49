"""The pure core of "what changed": pointers, the diff of two objects, and a write's changes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trailkeep.log.changes import (
    PointerError,
    apply,
    diff,
    escape,
    parse_pointer,
    pointer,
    same,
    unescape,
)
from trailkeep.log.record import (
    CHANGES_MAX,
    Actor,
    EntryError,
    Origin,
    caller_changes,
    prepare,
    validate_write,
)

keys = st.text(alphabet=st.sampled_from("ab~/01 é\x00"), max_size=6)
scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=5)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=12,
)
objects = st.dictionaries(keys, values, max_size=5)


@given(objects, objects)
def test_applying_the_diff_to_before_gives_after(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    changes = diff(before, after)
    assert same(apply(before, changes), after)
    paths = [c["path"] for c in changes]
    assert len(paths) == len(set(paths))
    for change in changes:
        assert {"old", "new"} & change.keys()
        parse_pointer(change["path"])  # every computed pointer is a valid one


@given(objects)
def test_an_unchanged_object_has_no_changes(document: dict[str, Any]) -> None:
    assert diff(document, document) == []


@given(st.lists(keys, min_size=1, max_size=5))
def test_pointers_round_trip(path: list[str]) -> None:
    assert parse_pointer(pointer(path)) == path
    for key in path:
        assert unescape(escape(key)) == key


def test_the_diff_follows_objects_and_compares_everything_else_whole() -> None:
    before = {"role": "member", "address": {"city": "Oslo", "zip": "0150"}, "tags": [1, 2],
              "a/b": 1, "m~n": True, "gone": None}  # fmt: skip
    after = {"role": "admin", "address": {"city": "Bergen", "zip": "0150"}, "tags": [1, 2, 3],
             "a/b": 1, "m~n": 1, "new": {"x": 1}}  # fmt: skip
    assert diff(before, after) == [
        {"path": "/address/city", "old": "Oslo", "new": "Bergen"},
        {"path": "/gone", "old": None},
        {"path": "/m~0n", "old": True, "new": 1},  # JSON's true is not 1
        {"path": "/new", "new": {"x": 1}},
        {"path": "/role", "old": "member", "new": "admin"},
        {"path": "/tags", "old": [1, 2], "new": [1, 2, 3]},
    ]
    assert diff({"n": 1}, {"n": 1.0}) == []  # one JSON number
    assert diff({"o": {"a": 1}}, {"o": [1]}) == [{"path": "/o", "old": {"a": 1}, "new": [1]}]


@pytest.mark.parametrize(
    ("path", "why"),
    [("", "root"), ("role", "starts with /"), ("/a~2", "~0"), ("/a~", "~0"), ("/" * 513, "512")],
)
def test_bad_pointers_are_refused(path: str, why: str) -> None:
    with pytest.raises(PointerError, match=why):
        parse_pointer(path)


def test_pointer_tokens_unescape_in_rfc_order() -> None:
    assert parse_pointer("/~01") == ["~1"]  # not "/": ~1 is unescaped first
    assert parse_pointer("/a~1b/~0/") == ["a/b", "~", ""]


def _prepared(body: dict[str, Any], max_bytes: int = 10_240) -> bytes:
    event = validate_write(body)
    pending = prepare("app_t", "evt_t", event, Actor("user", "u"), Origin(None, None), max_bytes)
    return pending.canonical(0, "2026-12-07T00:00:00.000000Z")


def test_changes_are_part_of_the_canonical_entry_only_when_there_are_some() -> None:
    plain = _prepared({"action": "a.b"})
    assert b"changes" not in plain
    assert _prepared({"action": "a.b", "changes": []}) == plain
    assert _prepared({"action": "a.b", "before": {"x": 1}, "after": {"x": 1}}) == plain
    given_ = _prepared({"action": "a.b", "changes": [{"path": "/x", "old": 1, "new": 2}]})
    computed = _prepared({"action": "a.b", "before": {"x": 1}, "after": {"x": 2}})
    assert given_ == computed
    assert b'"changes":[{"new":2,"old":1,"path":"/x"}]' in given_


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"changes": [{"path": "x", "old": 1}]}, "changes[0].path: an RFC 6901"),
        ({"changes": [{"path": "/x"}]}, "changes[0]: give `old`, `new` or both"),
        ({"changes": [{"path": "/x", "old": 1, "why": 2}]}, "changes[0].why: unknown field"),
        ({"changes": [{"path": "/x", "new": 1}, {"path": "/x", "old": 2}]}, "repeats"),
        ({"changes": [{"path": "/x", "new": 1}] * (CHANGES_MAX + 1)}, "changes: List should"),
        ({"changes": [], "before": {}, "after": {}}, "changes: give `changes` or `before`"),
        ({"before": {"a": 1}}, "after: give `before` and `after` together"),
        ({"after": {"a": 1}}, "before: give `before` and `after` together"),
        ({"changes": {"path": "/x"}}, "changes: "),
        ({"before": [], "after": {}}, "before: "),
    ],
)
def test_malformed_changes_are_refused_naming_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(EntryError) as caught:
        validate_write({"action": "a.b", **body})
    assert caught.value.detail.startswith(message) or message in caught.value.detail


def test_computed_changes_are_bounded() -> None:
    many = validate_write({"action": "a", "before": {}, "after": {f"k{i}": i for i in range(101)}})
    with pytest.raises(EntryError, match="101 fields differ"):
        caller_changes(many)
    deep: dict[str, Any] = {}
    for _ in range(10):
        deep = {"d": deep}
    with pytest.raises(EntryError, match="before: nesting"):
        caller_changes(validate_write({"action": "a", "before": deep, "after": {}}))


def test_changes_count_within_the_metadata_limit() -> None:
    big = "x" * 600
    body = {"action": "a", "metadata": {"m": big}, "changes": [{"path": "/p", "new": big}]}
    assert _prepared(body, 2_000)
    with pytest.raises(EntryError, match=r"metadata: .* \(and changes") as caught:
        _prepared(body, 1_000)
    assert caught.value.code == "payload_too_large"
    with pytest.raises(EntryError, match="changes: canonical encoding") as caught:
        _prepared({"action": "a", "changes": [{"path": "/p", "new": big * 2}]}, 1_000)
    assert caught.value.code == "payload_too_large"


def test_reserved_actions_stay_refused_with_changes() -> None:
    with pytest.raises(EntryError, match="reserved"):
        validate_write({"action": "app.settings.change", "changes": [{"path": "/a", "new": 1}]})
