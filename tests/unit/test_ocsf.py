"""The OCSF rendering of an entry: the class rule, type_uid, stubs, and hostile strings as data.

Every event is validated against OCSF's own schema (the ocsf-json-schema package's export of
the version the events claim), so a misnamed attribute or a wrong enumeration value fails.
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema_rs
import orjson
import pytest
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

from trailkeep.log import ocsf


@functools.cache
def validator(class_uid: int) -> Any:
    """A JSON Schema validator for one OCSF class, from the packaged schema."""
    schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=ocsf.OCSF_VERSION))
    return jsonschema_rs.validator_for(
        schema.get_class_schema(schema.lookup_class_name_from_uid(class_uid))
    )


def assert_valid(event: dict[str, Any]) -> None:
    """The event is valid OCSF for its class (every error listed when it is not)."""
    errors = [f"{e.instance_path}: {e.message}" for e in validator(event["class_uid"])
              .iter_errors(event)]  # fmt: skip
    assert errors == [], errors


def entry(action: str, **fields: Any) -> dict[str, Any]:
    """A stored entry as the API returns it, with ``fields`` laid over a plain one."""
    base: dict[str, Any] = {
        "seq": 7, "id": "evt_01", "time": "2026-11-23T08:15:30.123456Z", "app_id": "app_1",
        "kind": "user", "action": action,
        "actor": {"type": "user", "id": "u_1", "name": "Ada"},
        "target": {"type": "doc", "id": "d_9"}, "metadata": {"k": "v"},
        "context": {"ip": "203.0.113.5", "user_agent": "curl/8"},
        "leaf_hash": "ab" * 32,
    }  # fmt: skip
    return {**base, **fields}


CASES = [
    ("doc.share", 6003, 99), ("audit.read", 6003, 2), ("audit.export", 6003, 2),
    ("user.login", 6003, 99), ("invoice.paid", 6003, 99), ("login", 6003, 99),
    ("user.read", 6003, 2),
    ("key.create", 3004, 1), ("key.revoke", 3004, 11), ("app.settings.change", 3004, 3),
    ("doc.update", 3004, 3), ("doc.delete", 3004, 4), ("project.enable", 3004, 8),
    ("session_secret.rotate", 3004, 3),
    ("user.create", 3001, 1), ("user.delete", 3001, 6), ("account.disable", 3001, 5),
    ("user.enable", 3001, 2), ("user.password.change", 3001, 3), ("password.reset", 3001, 4),
    ("user.mfa.enable", 3001, 10), ("mfa.disable", 3001, 11), ("account.lock", 3001, 9),
    ("account.unlock", 3001, 12), ("user.role.change", 3001, 99), ("User.Create", 3001, 1),
    ("account.deactivated", 3001, 5), ("user.revoke", 3001, 99), ("key.revoked", 3004, 11),
    ("doc.lock", 6003, 99), ("password.reset.request", 3001, 99), ("user.view", 6003, 2),
]  # fmt: skip


@pytest.mark.parametrize(("action", "class_uid", "activity_id"), CASES)
def test_each_class_and_activity_is_chosen_and_valid(
    action: str, class_uid: int, activity_id: int
) -> None:
    event = ocsf.event(entry(action))
    assert event is not None
    assert (event["class_uid"], event["activity_id"]) == (class_uid, activity_id)
    assert event["type_uid"] == class_uid * 100 + activity_id
    assert event["category_uid"] == {6003: 6, 3004: 3, 3001: 3}[class_uid]
    assert event["severity_id"] == 1
    assert event["metadata"]["event_code"] == action
    assert_valid(event)


def test_the_fields_land_where_ocsf_puts_them() -> None:
    stored = entry("doc.share", kind="admin", changes=[{"path": "/a", "old": 1, "new": 2}],
                   actor={"type": "user", "id": "u_1", "name": "Ada", "role": "owner"},
                   context={"ip": "2001:db8::7", "user_agent": "UA", "project": "p",
                            "server": "s", "request_id": "r", "forwarded_by": "key_1"})  # fmt: skip
    event = ocsf.event(stored)
    assert event is not None
    assert event["time"] == 1795421730123  # 2026-11-23T08:15:30.123Z in epoch ms
    late = ocsf.event(entry("doc.share", time="2026-11-23T08:15:30.999999Z"))
    assert late is not None
    assert late["time"] == 1795421730999  # truncated to the ms the entry is in, never rounded up
    meta = event["metadata"]
    assert (meta["uid"], meta["tenant_uid"], meta["version"]) == ("evt_01", "app_1", "1.8.0")
    assert meta["product"]["name"] == "Trailkeep"
    assert event["actor"] == {"user": {"uid": "u_1", "name": "Ada", "type_id": 2, "type": "Admin"}}
    assert event["src_endpoint"] == {"ip": "2001:db8::7"}
    assert event["http_request"] == {"user_agent": "UA"}
    assert event["api"] == {"operation": "doc.share"}
    assert event["resources"] == [{"type": "doc", "uid": "d_9"}]
    assert event["unmapped"] == {
        "seq": 7, "leaf_hash": "ab" * 32, "kind": "admin", "actor_type": "user",
        "actor_role": "owner", "metadata": {"k": "v"}, "changes": stored["changes"],
        "project": "p", "server": "s", "request_id": "r", "forwarded_by": "key_1",
    }  # fmt: skip
    assert_valid(event)


def test_entity_and_account_take_the_target_or_fall_back() -> None:
    managed = ocsf.event(entry("key.create", target={"type": "key", "id": "key_5"}))
    assert managed is not None
    assert managed["entity"] == {"type": "key", "uid": "key_5"}
    bare = ocsf.event(entry("app.settings.change", target=None))
    assert bare is not None
    assert bare["entity"] == {"name": "app"}
    changed = ocsf.event(entry("user.delete", target={"type": "user", "id": "u_2"}))
    assert changed is not None
    assert changed["user"] == {"uid": "u_2"}
    assert changed["unmapped"]["target"] == {"type": "user", "id": "u_2"}
    own = ocsf.event(entry("user.password.change", target=None))
    assert own is not None
    assert own["user"] == own["actor"]["user"]  # a person changing their own password
    no_id = ocsf.event(entry("doc.share", target={"type": "doc", "id": None}))
    assert no_id is not None
    assert no_id["resources"] == [{"type": "doc", "name": "doc"}]
    for event in (managed, bare, changed, own, no_id):
        assert_valid(event)


@pytest.mark.parametrize(
    ("actor", "type_id"),
    [({"type": "api_key", "id": "key_1"}, 4), ({"type": "system", "id": "retention"}, 3),
     ({"type": "operator", "id": "root@host"}, 2), ({"type": "user", "id": "u", "role": "x"}, 1)],
)  # fmt: skip
def test_service_entries_without_an_address_are_still_valid(
    actor: dict[str, str], type_id: int
) -> None:
    context = {"ip": None, "user_agent": None}
    event = ocsf.event(entry("retention.purge", actor=actor, context=context))
    assert event is not None
    assert event["actor"]["user"]["type_id"] == type_id
    assert event["src_endpoint"] == {"name": "unknown"}
    assert "http_request" not in event
    assert_valid(event)


def test_a_stub_is_left_out() -> None:
    stub = {"seq": 3, "id": "evt_3", "time": "2026-11-23T08:15:30.000000Z", "erased": True,
            "leaf_hash": "cd" * 32, "erased_by": "retention"}  # fmt: skip
    assert ocsf.event(stub) is None
    lines = ocsf.ndjson([orjson.dumps(stub), orjson.dumps(entry("doc.share")), orjson.dumps(stub)])
    assert lines.count(b"\n") == 1
    assert orjson.loads(lines)["metadata"]["uid"] == "evt_01"
    assert ocsf.ndjson([orjson.dumps(stub)]) == b""


def test_hostile_strings_are_kept_as_data() -> None:
    hostile = '\x1b]0;owned\x07 \u202etxt.exe =cmd|\' /C calc\'!A0 "}\n{"class_uid":1'
    stored = entry(
        "x.create",
        actor={"type": "user", "id": hostile, "name": hostile},
        target={"type": "doc", "id": hostile},
        metadata={hostile: [hostile]},
        context={"ip": "203.0.113.5", "user_agent": hostile, "project": hostile},
    )
    line = ocsf.ndjson([orjson.dumps(stored)])
    assert line.count(b"\n") == 1  # a newline in a value cannot split the line
    event = orjson.loads(line)
    assert event["class_uid"] == 3004
    assert event["actor"]["user"]["uid"] == event["actor"]["user"]["name"] == hostile
    assert event["entity"]["uid"] == event["http_request"]["user_agent"] == hostile
    assert event["unmapped"]["metadata"] == {hostile: [hostile]}
    assert event["unmapped"]["project"] == hostile
    assert_valid(event)


def test_the_validator_rejects_what_ocsf_does_not_define() -> None:
    # The schema check can fail: an unknown attribute and a type_uid outside the class are caught.
    event = ocsf.event(entry("doc.share"))
    assert event is not None
    for broken in ({**event, "seq": 7}, {**event, "type_uid": 300401}, {**event, "time": "now"}):
        assert list(validator(6003).iter_errors(broken)) != []
