"""Tests for trailkeep.log.record: write validation, limits, and the canonical form of an entry."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from trailkeep.log.record import (
    ACTION_MAX,
    METADATA_MAX_DEPTH,
    RELATED_MAX,
    TARGET_ID_MAX,
    TARGET_TYPE_MAX,
    Actor,
    EntryError,
    EventWrite,
    Origin,
    PendingEntry,
    canonical_metadata,
    format_time,
    parse_body,
    prepare,
    validate_batch,
    validate_write,
    with_leaf_hash,
)
from trailkeep.server.ids import new_entry_id

LIMIT = 10_240
APP = "app_unittest"
KEY_ACTOR = Actor(type="api_key", id="key_abc")
ORIGIN = Origin(ip="127.0.0.1", user_agent="pytest")
# The action rule, written independently of the implementation's regex.
ACTION_ORACLE = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")


def refused(body: Any, code: str = "invalid_request") -> EntryError:
    """Assert that ``body`` is refused with ``code``; return the error for further checks."""
    with pytest.raises(EntryError) as caught:
        validate_write(body)
    assert caught.value.code == code, caught.value.detail
    return caught.value


def nested(depth: int) -> dict[str, Any]:
    """A metadata object whose nesting is ``depth`` (the metadata object itself is level 1)."""
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value}
    assert isinstance(value, dict)
    return value


def pending(metadata: dict[str, Any] | None, max_bytes: int = LIMIT) -> PendingEntry:
    return prepare(
        APP, new_entry_id(), EventWrite(action="a", metadata=metadata), KEY_ACTOR, ORIGIN, max_bytes
    )


# --- action ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    ["a", "A", "0", "_", "-", "user.role.change", "a-b_c.D-9", "x" * ACTION_MAX,
     ".".join(["ab"] * 40)[:127] + "z"],
)  # fmt: skip
def test_valid_actions_are_accepted(action: str) -> None:
    assert validate_write({"action": action}).action == action


@pytest.mark.parametrize(
    "action",
    ["", ".", "a.", ".a", "a..b", "a b", " a", "a/b", "a:b", "é", "a\n", "a.b\n", "\na",
     "a\x00", "ａ", "x" * (ACTION_MAX + 1), "a." * 64 + "b"],
)  # fmt: skip
def test_invalid_actions_are_refused(action: str) -> None:
    error = refused({"action": action})
    assert "action" in error.detail


@given(st.from_regex(ACTION_ORACLE, fullmatch=True))
def test_every_action_matching_the_pattern_is_accepted_up_to_128(action: str) -> None:
    if len(action) <= ACTION_MAX:
        assert validate_write({"action": action}).action == action
    else:
        refused({"action": action})


@given(st.text(max_size=140))
@example("a\n")
@example("a.b.")
def test_action_validation_matches_the_rule(action: str) -> None:
    ok = ACTION_ORACLE.fullmatch(action) is not None and 1 <= len(action) <= ACTION_MAX
    if ok:
        assert validate_write({"action": action}).action == action
    else:
        refused({"action": action})


def test_action_is_required() -> None:
    assert "action" in refused({}).detail
    assert "action" in refused({"target_type": "t", "target_id": "i"}).detail


# --- target and related fields -----------------------------------------------------------


def test_target_lengths() -> None:
    event = validate_write(
        {"action": "a", "target_type": "t" * TARGET_TYPE_MAX, "target_id": "i" * TARGET_ID_MAX}
    )
    assert (event.target_type, event.target_id) == ("t" * TARGET_TYPE_MAX, "i" * TARGET_ID_MAX)
    assert (
        "target_type"
        in refused(
            {"action": "a", "target_type": "t" * (TARGET_TYPE_MAX + 1), "target_id": "i"}
        ).detail
    )
    assert (
        "target_id"
        in refused(
            {"action": "a", "target_type": "t", "target_id": "i" * (TARGET_ID_MAX + 1)}
        ).detail
    )


@pytest.mark.parametrize(
    "body",
    [{"action": "a", "target_type": "order"}, {"action": "a", "target_id": "ord_1"},
     {"action": "a", "target_type": "order", "target_id": None}],
)  # fmt: skip
def test_target_needs_both_or_neither(body: dict[str, Any]) -> None:
    error = refused(body)
    assert "target_type" in error.detail
    assert "target_id" in error.detail


def test_target_neither_is_fine() -> None:
    event = validate_write({"action": "a", "target_type": None, "target_id": None})
    assert event.target_type is None
    assert event.target_id is None


@pytest.mark.parametrize("field", ["project", "server", "request_id"])
def test_related_fields_are_at_most_128(field: str) -> None:
    assert getattr(validate_write({"action": "a", field: "p" * RELATED_MAX}), field) == (
        "p" * RELATED_MAX
    )
    assert field in refused({"action": "a", field: "p" * (RELATED_MAX + 1)}).detail


@given(st.text(min_size=1, max_size=RELATED_MAX))
def test_related_fields_take_any_text_up_to_the_limit(text: str) -> None:
    assert validate_write({"action": "a", "project": text}).project == text


# --- unknown, forbidden and server-owned fields ------------------------------------------


@pytest.mark.parametrize("field", ["foo", "target", "Action", "metadata_", "extra", ""])
def test_unknown_fields_are_refused(field: str) -> None:
    error = refused({"action": "a", field: "x"})
    assert "unknown field" in error.detail


@pytest.mark.parametrize(
    "actor", ["user_1", {"type": "user", "id": "u"}, None, 5, {"type": "api_key", "id": "k"}]
)
def test_actor_in_the_body_is_refused_with_its_own_code(actor: Any) -> None:
    error = refused({"action": "a", "actor": actor}, code="actor_not_allowed")
    assert "actor" in error.detail


def test_actor_wins_over_other_errors() -> None:
    refused({"action": "", "actor": "x", "bogus": 1, "time": "now"}, code="actor_not_allowed")


@pytest.mark.parametrize(
    "field",
    ["time", "kind", "seq", "id", "leaf_hash", "context", "app_id", "ip", "user_agent",
     "forwarded_by"],
)  # fmt: skip
def test_server_owned_fields_are_refused(field: str) -> None:
    error = refused({"action": "a", field: "x"})
    assert field in error.detail


# --- types -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"action": 5}, {"action": None}, {"action": True}, {"action": ["a"]}, {"action": 1.5},
        {"action": {"a": 1}},
        {"action": "a", "target_type": 5, "target_id": "i"},
        {"action": "a", "target_type": "t", "target_id": 7},
        {"action": "a", "metadata": []}, {"action": "a", "metadata": "x"},
        {"action": "a", "metadata": 5}, {"action": "a", "metadata": True},
        {"action": "a", "project": 5}, {"action": "a", "server": ["s"]},
        {"action": "a", "request_id": False},
    ],
)  # fmt: skip
def test_wrong_types_are_refused_strictly(body: dict[str, Any]) -> None:
    refused(body)


@pytest.mark.parametrize("body", [[], ["a"], "a", 5, None, True, 1.5, b"{}"])
def test_non_object_bodies_are_refused(body: Any) -> None:
    assert "object" in refused(body).detail


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"{'action': 'a'}", b'{"action": NaN}', b'{"x": Infinity}', b"1e400",
            b'{"x": -1e400}', b'"\\ud800"', b"\xff\xfe", b'{"a":1}x']
)  # fmt: skip
def test_parse_body_refuses_what_is_not_strict_json(raw: bytes) -> None:
    with pytest.raises(EntryError) as caught:
        parse_body(raw)
    assert caught.value.code == "invalid_request"


# --- metadata ----------------------------------------------------------------------------


def test_metadata_boundary_is_the_canonical_size() -> None:
    at_limit = {"x": "a" * 10_232}
    assert len(rfc8785.dumps(at_limit)) == LIMIT
    entry = pending(at_limit)
    assert b'"metadata":' + rfc8785.dumps(at_limit) in entry.head
    with pytest.raises(EntryError) as caught:
        pending({"x": "a" * 10_233})
    assert caught.value.code == "payload_too_large"
    assert "10241" in caught.value.detail.replace(",", "")


def test_metadata_size_counts_canonical_not_raw_bytes() -> None:
    # Escapes and whitespace that JCS removes do not count; non-ASCII counts in UTF-8 bytes.
    value = {"x": "é" * 5_116}  # 2 bytes each: 8 + 10,232 = 10,240
    assert len(rfc8785.dumps(value)) == LIMIT
    pending(value)
    with pytest.raises(EntryError):
        pending({"x": "é" * 5_117})
    raw = b'{ "x" :  "' + b"a" * 10_232 + b'" }'
    assert len(raw) > LIMIT
    assert validate_write({"action": "a", "metadata": parse_body(raw)}).metadata is not None
    pending(parse_body(raw))


def test_metadata_limit_is_configurable() -> None:
    pending({"x": "a" * 92}, max_bytes=100)
    with pytest.raises(EntryError) as caught:
        pending({"x": "a" * 93}, max_bytes=100)
    assert caught.value.code == "payload_too_large"


@given(st.integers(min_value=0, max_value=300))
def test_metadata_boundary_for_any_limit(n: int) -> None:
    limit = 8 + n  # '{"x":""}' is 8 bytes
    assert len(canonical_metadata({"x": "a" * n}, limit)) == limit
    with pytest.raises(EntryError):
        canonical_metadata({"x": "a" * (n + 1)}, limit)


def test_metadata_nesting_up_to_8_levels() -> None:
    pending(nested(METADATA_MAX_DEPTH))
    pending({"a": [[[[[[["deep"]]]]]]]})  # object + 7 arrays = 8 levels
    with pytest.raises(EntryError) as caught:
        pending(nested(METADATA_MAX_DEPTH + 1))
    assert caught.value.code == "invalid_request"
    assert "nest" in caught.value.detail
    with pytest.raises(EntryError):
        pending({"a": [[[[[[[["deep"]]]]]]]]})


@pytest.mark.parametrize("depth", [50, 600, 1_000, 5_000])
def test_very_deep_metadata_is_refused_not_crashed(depth: int) -> None:
    with pytest.raises(EntryError) as caught:
        pending(nested(depth))
    assert "nest" in caught.value.detail
    deep_list: Any = 1
    for _ in range(depth):
        deep_list = [deep_list]
    with pytest.raises(EntryError):
        pending({"a": deep_list})


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), float("-inf"), 2**53, -(2**53), 2**64, 10**30]
)
def test_values_jcs_cannot_encode_are_refused(value: Any) -> None:
    event = validate_write({"action": "a", "metadata": {"x": value}})
    with pytest.raises(EntryError) as caught:
        prepare(APP, new_entry_id(), event, KEY_ACTOR, ORIGIN, LIMIT)
    assert caught.value.code == "invalid_request"


@pytest.mark.parametrize("value", [2.0**53, -(2.0**53), 1e20, 123456789012345678.0])
def test_integral_floats_that_would_read_back_as_unsafe_integers_are_refused(value: float) -> None:
    # JCS writes 1e20 as 100000000000000000000, which reads back as an integer JCS refuses:
    # such an entry could never be verified again, so it is not accepted.
    assert orjson.loads(rfc8785.dumps(value)) == int(value)
    with pytest.raises(EntryError) as caught:
        pending({"x": [1, {"y": value}]})
    assert caught.value.code == "invalid_request"


@pytest.mark.parametrize("value", [2.0**53 - 1, 1e21, 1e300, 0.5, -1.5e25, 2.0**52 + 0.5])
def test_other_floats_round_trip(value: float) -> None:
    document = pending({"x": value}).canonical(3, "2026-01-01T00:00:00.000000Z")
    assert rfc8785.dumps(orjson.loads(document)) == document


def test_empty_and_absent_metadata_are_an_empty_object() -> None:
    for metadata in (None, {}):
        document = pending(metadata).canonical(0, "2026-01-01T00:00:00.000000Z")
        assert json.loads(document)["metadata"] == {}


# --- batches -----------------------------------------------------------------------------


def test_batch_of_valid_items() -> None:
    writes = validate_batch({"events": [{"action": f"a{i}"} for i in range(1000)]})
    assert [w.action for w in writes] == [f"a{i}" for i in range(1000)]


@pytest.mark.parametrize(
    "body",
    [{}, {"events": []}, {"events": {"action": "a"}}, {"events": None}, [], "x",
     {"events": [{"action": "a"}] * 1001}, {"events": [{"action": "a"}], "extra": 1}],
)  # fmt: skip
def test_bad_batches_are_refused(body: Any) -> None:
    with pytest.raises(EntryError) as caught:
        validate_batch(body)
    assert caught.value.code == "invalid_request"


def test_batch_limit_is_configurable() -> None:
    assert len(validate_batch({"events": [{"action": "a"}] * 3}, max_entries=3)) == 3
    with pytest.raises(EntryError):
        validate_batch({"events": [{"action": "a"}] * 4}, max_entries=3)


@pytest.mark.parametrize(
    ("item", "code"),
    [({"action": "bad action"}, "invalid_request"), ({"action": "a", "actor": "x"},
     "actor_not_allowed"), ({"action": "a", "seq": 1}, "invalid_request"), ("nope",
     "invalid_request"), ({"action": "a", "zzz": 1}, "invalid_request")],
)  # fmt: skip
def test_batch_error_names_the_item(item: Any, code: str) -> None:
    items: list[Any] = [{"action": "ok"}] * 7
    items[4] = item
    with pytest.raises(EntryError) as caught:
        validate_batch({"events": items})
    assert caught.value.code == code
    assert caught.value.detail.startswith("events[4]")


# --- actor -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "kind"),
    [
        (Actor(type="user", id="u", role="owner"), "admin"),
        (Actor(type="user", id="u", role="admin"), "admin"),
        (Actor(type="user", id="u", role="member"), "user"),
        (Actor(type="user", id="u"), "user"),
        (Actor(type="user", id="u", role=""), "user"),
        (Actor(type="api_key", id="key_1", manages=True), "admin"),
        (Actor(type="api_key", id="key_1"), "user"),
    ],
)
def test_actor_kind(actor: Actor, kind: str) -> None:
    assert actor.kind == kind
    entry = json.loads(
        prepare(APP, new_entry_id(), EventWrite(action="a"), actor, ORIGIN, LIMIT).canonical(0, "t")
    )
    assert entry["kind"] == kind


@given(st.text(max_size=20).filter(lambda r: r not in {"owner", "admin"}))
def test_any_other_role_is_a_plain_user(role: str) -> None:
    assert Actor(type="user", id="u", role=role).kind == "user"


def test_actor_json_leaves_out_unset_name_and_role() -> None:
    assert Actor(type="api_key", id="key_1", manages=True).as_json() == {
        "type": "api_key",
        "id": "key_1",
    }
    assert Actor(type="user", id="u", name="Ada", role="member").as_json() == {
        "type": "user",
        "id": "u",
        "name": "Ada",
        "role": "member",
    }


# --- canonical form ----------------------------------------------------------------------

SAFE_INT = 2**53 - 1
# Keys that make UTF-16 and code-point order differ, next to plain ones.
TRICKY_KEYS = ["a", "b", "B", "é", "\u00ff", "\ud7ff", "\ue000", "\uffff", "\U00010000",
               "\U0001f600", "a\U0001f600", "a\ue000", "", "\x00", "\x7f", "\"", "\\"]  # fmt: skip
keys = st.text(max_size=8) | st.sampled_from(TRICKY_KEYS)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-SAFE_INT, max_value=SAFE_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        [
            0.0,
            -0.0,
            1e21,
            1e-7,
            5e-324,
            1.7976931348623157e308,
            0.1,
            1.0,
            100.0,
            2.0**53 - 1,
            2.0**53,
            -(2.0**53),
            1e20,
            9.999999999999999e20,
        ]
    )
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=25,
)
metadata_objects = st.dictionaries(keys, json_values, max_size=6)
maybe_text = st.none() | st.text(min_size=1, max_size=30)


def inexact_ints(value: Any) -> bool:
    """True if the value holds an integral float JCS would write as an unsafe integer."""
    if isinstance(value, dict):
        return any(map(inexact_ints, value.values()))
    if isinstance(value, list):
        return any(map(inexact_ints, value))
    return isinstance(value, float) and value.is_integer() and 2**53 <= abs(value) < 1e21


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


@st.composite
def actors(draw: st.DrawFn) -> Actor:
    if draw(st.booleans()):
        return Actor(type="api_key", id=draw(st.text(min_size=1, max_size=20)),
                     manages=draw(st.booleans()))  # fmt: skip
    return Actor(
        type="user",
        id=draw(st.text(min_size=1, max_size=20)),
        name=draw(maybe_text),
        role=draw(st.none() | st.sampled_from(["owner", "admin", "member"]) | st.text()),
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    metadata=st.none() | metadata_objects,
    actor=actors(),
    ip=st.none() | st.ip_addresses().map(str),
    agent=maybe_text,
    forwarded_by=st.none() | st.text(min_size=1, max_size=20),
    target=st.none() | st.tuples(st.text(min_size=1, max_size=64), st.text(min_size=1)),
    related=st.tuples(maybe_text, maybe_text, maybe_text),
    seq=st.integers(min_value=0, max_value=SAFE_INT),
    moment=st.datetimes(datetime(1971, 1, 1), datetime(2200, 1, 1), timezones=st.just(UTC)),
    action=st.from_regex(ACTION_ORACLE, fullmatch=True).filter(lambda a: len(a) <= ACTION_MAX),
)
def test_canonical_is_jcs_of_the_equivalent_entry(
    metadata: dict[str, Any] | None,
    actor: Actor,
    ip: str | None,
    agent: str | None,
    forwarded_by: str | None,
    target: tuple[str, str] | None,
    related: tuple[str | None, str | None, str | None],
    seq: int,
    moment: datetime,
    action: str,
) -> None:
    assume(metadata is None or depth(metadata) <= METADATA_MAX_DEPTH)
    body: dict[str, Any] = {"action": action, "metadata": metadata}
    if target is not None:
        body["target_type"], body["target_id"] = target
    for name, value in zip(("project", "server", "request_id"), related, strict=True):
        if value is not None:
            body[name] = value
    event = validate_write(body)
    origin = Origin(ip=ip, user_agent=agent, forwarded_by=forwarded_by)
    if inexact_ints(metadata):
        with pytest.raises(EntryError):
            prepare(APP, new_entry_id(), event, actor, origin, 1 << 30)
        return
    entry = prepare(APP, new_entry_id(), event, actor, origin, 1 << 30)
    time = format_time(moment)

    actor_json: dict[str, Any] = {"type": actor.type, "id": actor.id}
    if actor.name is not None:
        actor_json["name"] = actor.name
    if actor.role is not None:
        actor_json["role"] = actor.role
    context: dict[str, Any] = {"ip": ip, "user_agent": agent}
    if forwarded_by is not None:
        context["forwarded_by"] = forwarded_by
    for name, value in zip(("project", "server", "request_id"), related, strict=True):
        if value is not None:
            context[name] = value
    kind = "admin" if (actor.manages if actor.type == "api_key" else actor.role in
                       {"owner", "admin"}) else "user"  # fmt: skip
    expected = {
        "id": entry.id, "app_id": APP, "seq": seq, "time": time, "action": action, "kind": kind,
        "actor": actor_json,
        "target": {"type": target[0], "id": target[1]} if target is not None else None,
        "metadata": metadata or {}, "context": context,
    }  # fmt: skip
    document = entry.canonical(seq, time)
    assert document == rfc8785.dumps(expected)

    # What a read returns: the same bytes with the leaf hash appended, hashed per RFC 9162.
    stored = with_leaf_hash(document, hashlib.sha256(b"\x00" + document).digest())
    read_back = orjson.loads(stored)
    leaf = read_back.pop("leaf_hash")
    assert leaf == hashlib.sha256(b"\x00" + rfc8785.dumps(read_back)).hexdigest()
    assert rfc8785.dumps(read_back) == document


@given(metadata_objects)
def test_canonical_metadata_is_jcs(metadata: dict[str, Any]) -> None:
    assume(depth(metadata) <= METADATA_MAX_DEPTH)
    assume(not inexact_ints(metadata))
    expected = rfc8785.dumps(metadata) if metadata else b"{}"
    assert canonical_metadata(metadata, 1 << 30) == expected


def test_pending_entry_fields() -> None:
    actor = Actor(type="user", id="u_1", name="Ada", role="owner")
    event = validate_write({"action": "order.refund", "target_type": "order", "target_id": "o9"})
    entry = prepare(APP, new_entry_id(), event, actor, ORIGIN, LIMIT)
    assert (entry.app_id, entry.action, entry.kind, entry.actor_id) == (
        APP,
        "order.refund",
        "admin",
        "u_1",
    )
    assert (entry.target_type, entry.target_id) == ("order", "o9")
    assert entry.id.startswith("evt_")
    assert prepare(APP, new_entry_id(), event, actor, ORIGIN, LIMIT).id != entry.id


ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]


@given(st.datetimes(datetime(1971, 1, 1), datetime(2200, 1, 1), timezones=st.sampled_from(ZONES)))
def test_format_time_is_rfc3339_utc_microseconds(moment: datetime) -> None:
    text = format_time(moment)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text)
    assert datetime.fromisoformat(text.replace("Z", "+00:00")) == moment


# --- changes and the actors of administration (DESIGN §5, §8) ---------------------------


def _stored(entry: PendingEntry, seq: int = 0) -> bytes:
    document = entry.canonical(seq, "2026-12-07T00:00:00.000000Z")
    return with_leaf_hash(document, hashlib.sha256(b"\x00" + document).digest())


def test_no_changes_hash_exactly_as_entries_always_did() -> None:
    entry_id = new_entry_id()
    event = EventWrite(action="a.b")
    plain = prepare(APP, entry_id, event, KEY_ACTOR, ORIGIN, LIMIT)
    empty = prepare(APP, entry_id, event, KEY_ACTOR, ORIGIN, LIMIT, changes=[])
    assert plain.canonical(3, "t") == empty.canonical(3, "t")
    assert b"changes" not in plain.canonical(3, "t")


@given(
    st.lists(
        st.fixed_dictionaries(
            {"path": st.text(max_size=20)},
            optional={
                "old": st.none() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
                "new": st.lists(st.text(max_size=5), max_size=3) | st.booleans(),
            },
        ),
        min_size=1,
        max_size=5,
    )
)
def test_changes_are_part_of_the_canonical_entry(changes: list[dict[str, Any]]) -> None:
    entry = prepare(APP, new_entry_id(), EventWrite(action="a"), KEY_ACTOR, ORIGIN, LIMIT,
                    changes=changes)  # fmt: skip
    document = entry.canonical(0, "2026-12-07T00:00:00.000000Z")
    parsed = orjson.loads(document)
    assert parsed["changes"] == changes
    assert rfc8785.dumps(parsed) == document  # JCS: the key sits where JCS puts it


def test_too_many_changes_are_refused() -> None:
    with pytest.raises(EntryError, match="changes"):
        prepare(APP, new_entry_id(), EventWrite(action="a"), KEY_ACTOR, ORIGIN, LIMIT,
                changes=[{"path": f"/{i}"} for i in range(101)])  # fmt: skip


@pytest.mark.parametrize(
    ("actor", "kind"),
    [
        (Actor(type="operator", id="ada@host"), "admin"),
        (Actor(type="system", id="retention"), "admin"),
        (Actor(type="user", id="u", role="auditor"), "user"),
        (Actor(type="user", id="u", role="owner"), "admin"),
        (Actor(type="api_key", id="k", manages=True), "admin"),
        (Actor(type="api_key", id="k"), "user"),
    ],
)
def test_operators_and_the_system_administer(actor: Actor, kind: str) -> None:
    assert actor.kind == kind


def test_an_entry_with_changes_verifies_in_its_app_and_not_in_another() -> None:
    from trailkeep.log.verify import VerifyError, verify_entries

    entries = [
        _stored(prepare(APP, new_entry_id(), EventWrite(action="a"), KEY_ACTOR, ORIGIN, LIMIT,
                        changes=[{"path": "/x", "old": 1, "new": 2}]), 0),
        _stored(prepare(APP, new_entry_id(), EventWrite(action="b"), KEY_ACTOR, ORIGIN, LIMIT), 1),
    ]  # fmt: skip
    assert verify_entries(entries, None, app_id=APP).size == 2
    with pytest.raises(VerifyError):
        verify_entries(entries, None, app_id="app_another")
