"""One stored entry as an OCSF 1.x event, for SIEMs that read the Open Cybersecurity Schema.

The class comes from the action's words (docs/export.md "OCSF" has the table):

* **Account Change (3001)** when a word before the verb names an account (``user``,
  ``account``, ``password``, ``mfa``...) and the verb is not a read or a sign-in;
* **Entity Management (3004)** when the verb creates, changes, deletes, enables, disables or
  revokes something (``key.create``, ``key.revoke``, ``app.settings.change``);
* **API Activity (6003)** for everything else, reads included.

``activity_id`` is the verb's entry in the chosen class's own enumeration (Account Change
numbers its activities differently from the other two). Nothing here trusts the entry: every
string is copied as data, and what OCSF has no attribute for is kept under ``unmapped``.
A rendering, not a record: the leaf hash covers the entry as stored, never this event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

from trailkeep import __version__
from trailkeep.log.record import parse_time

#: The OCSF schema version the events claim (and the tests validate against).
OCSF_VERSION: Final = "1.8.0"

API_ACTIVITY: Final = 6003
ENTITY_MANAGEMENT: Final = 3004
ACCOUNT_CHANGE: Final = 3001

#: class_uid -> (class name, category_uid, category name).
CLASSES: Final[Mapping[int, tuple[str, int, str]]] = {
    API_ACTIVITY: ("API Activity", 6, "Application Activity"),
    ENTITY_MANAGEMENT: ("Entity Management", 3, "Identity & Access Management"),
    ACCOUNT_CHANGE: ("Account Change", 3, "Identity & Access Management"),
}

#: Words that, before the verb, say the action is about an account.
ACCOUNT_WORDS: Final = frozenset(
    {"user", "users", "account", "accounts", "password", "passwords", "mfa", "2fa", "totp"}
)
#: Verbs that never make an account change (reads and sign-ins stay API Activity).
_READ: Final = frozenset({"read", "view", "viewed", "get", "list", "search", "export"})
NOT_CHANGES: Final = _READ | {"login", "logout", "signin", "signout", "authenticate"}

_CREATE: Final = frozenset({"create", "created", "add", "added", "insert", "inserted"})
_UPDATE: Final = frozenset(
    {"update", "updated", "change", "changed", "edit", "edited", "set", "modify", "modified",
     "rename", "renamed", "rotate", "rotated"}
)  # fmt: skip
_DELETE: Final = frozenset(
    {"delete", "deleted", "remove", "removed", "destroy", "destroyed", "purge", "purged"}
)
_ENABLE: Final = frozenset({"enable", "enabled"})
_DISABLE: Final = frozenset({"disable", "disabled"})

#: Entity Management's activities beyond create, read, update and delete.
_ENTITY_EXTRA: Final[Mapping[str, tuple[int, str]]] = {
    **dict.fromkeys(_ENABLE, (8, "Enable")),
    **dict.fromkeys(_DISABLE, (9, "Disable")),
    "activate": (10, "Activate"),
    "activated": (10, "Activate"),
    "deactivate": (11, "Deactivate"),
    "deactivated": (11, "Deactivate"),
    "revoke": (11, "Deactivate"),  # a revoked key is kept, never to work again
    "revoked": (11, "Deactivate"),
    "suspend": (12, "Suspend"),
    "suspended": (12, "Suspend"),
    "resume": (13, "Resume"),
    "resumed": (13, "Resume"),
    "move": (5, "Move"),
    "moved": (5, "Move"),
}
_ACCOUNT_PLAIN: Final[Mapping[str, tuple[int, str]]] = {
    **dict.fromkeys(_CREATE, (1, "Create")),
    **dict.fromkeys(_ENABLE, (2, "Enable")),
    **dict.fromkeys(
        _DISABLE | {"suspend", "suspended", "deactivate", "deactivated"}, (5, "Disable")
    ),
    **dict.fromkeys(_DELETE, (6, "Delete")),
    "lock": (9, "Lock"),
    "locked": (9, "Lock"),
    "unlock": (12, "Unlock"),
    "unlocked": (12, "Unlock"),
}
_PASSWORD_WORDS: Final = frozenset({"password", "passwords"})
_MFA_WORDS: Final = frozenset({"mfa", "2fa", "totp"})

#: Trailkeep actor types -> OCSF user type_id and type.
_USER_TYPES: Final[Mapping[str, tuple[int, str]]] = {
    "user": (1, "User"),
    "operator": (2, "Admin"),
    "system": (3, "System"),
    "api_key": (4, "Service"),
}
_ADMIN_ROLES: Final = frozenset({"owner", "admin"})
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def classify(action: str) -> tuple[int, int, str]:
    """The (class_uid, activity_id, activity name) of an action: the module docstring's rule."""
    *words, verb = action.lower().split(".")  # a one-word action is all verb ("login")
    if ACCOUNT_WORDS.intersection(words) and verb not in NOT_CHANGES:
        return (ACCOUNT_CHANGE, *_account_activity(set(words), verb))
    crud = _crud(verb)
    if verb in _ENTITY_EXTRA:
        return (ENTITY_MANAGEMENT, *_ENTITY_EXTRA[verb])
    if crud is not None and crud[0] != 2:
        return (ENTITY_MANAGEMENT, *crud)
    return (API_ACTIVITY, *(crud or (99, "Other")))


def _crud(verb: str) -> tuple[int, str] | None:
    for verbs, activity in ((_CREATE, (1, "Create")), (_READ, (2, "Read")),
                            (_UPDATE, (3, "Update")), (_DELETE, (4, "Delete"))):  # fmt: skip
        if verb in verbs:
            return activity
    return None


def _account_activity(words: set[str], verb: str) -> tuple[int, str]:
    if words & _PASSWORD_WORDS:
        if verb in ("reset", "resetted", "recover", "recovered"):
            return 4, "Password Reset"
        if verb in _UPDATE or verb in _CREATE:
            return 3, "Password Change"
    if words & _MFA_WORDS:
        if verb in _ENABLE or verb in _CREATE:
            return 10, "MFA Factor Enable"
        if verb in _DISABLE or verb in _DELETE:
            return 11, "MFA Factor Disable"
    return _ACCOUNT_PLAIN.get(verb, (99, "Other"))


def event(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The OCSF event for one stored entry; None for an erased entry's stub (nothing to show)."""
    if entry.get("erased") is True:
        return None
    target: Mapping[str, Any] = entry.get("target") or {}
    class_uid, activity_id, activity = classify(entry["action"])
    class_name, category_uid, category_name = CLASSES[class_uid]
    actor, context = entry["actor"], entry.get("context") or {}
    user = _user(actor)
    out: dict[str, Any] = {
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{class_name}: {activity}",
        # The log records what happened, not how alarming it was: rating is the SIEM's part.
        "severity_id": 1,
        "severity": "Informational",
        "time": _epoch_ms(entry["time"]),
        "metadata": {
            "product": {"name": "Trailkeep", "vendor_name": "Trailkeep", "version": __version__},
            "version": OCSF_VERSION,
            "uid": entry["id"],
            "tenant_uid": entry["app_id"],
            "event_code": entry["action"],
            "log_name": entry["kind"],
        },
        "actor": {"user": user},
        # API Activity requires an endpoint; the service's own entries have no address.
        "src_endpoint": {"ip": context["ip"]} if context.get("ip") else {"name": "unknown"},
    }
    if context.get("user_agent"):
        out["http_request"] = {"user_agent": context["user_agent"]}
    named: dict[str, Any] | None = None
    if target:  # a target may name a type without an id: OCSF wants a uid or a name
        named = {
            "type": target["type"],
            **({"uid": target["id"]} if target.get("id") else {"name": target["type"]}),
        }
    unmapped: dict[str, Any] = {"seq": entry["seq"], "leaf_hash": entry["leaf_hash"],
                                "kind": entry["kind"], "actor_type": actor["type"]}  # fmt: skip
    if class_uid == API_ACTIVITY:
        out["api"] = {"operation": entry["action"]}
        if named is not None:
            out["resources"] = [named]
    elif class_uid == ENTITY_MANAGEMENT:
        out["entity"] = named or {"name": entry["action"].split(".")[0]}
    else:
        # The account changed: the target's when the entry names one, else the actor's own.
        out["user"] = {"uid": target["id"]} if target.get("id") else user
        if target:
            unmapped["target"] = dict(target)
    if actor.get("role") is not None:
        unmapped["actor_role"] = actor["role"]
    for key in ("metadata", "changes"):
        if entry.get(key):
            unmapped[key] = entry[key]
    for key in ("project", "server", "request_id", "forwarded_by"):
        if context.get(key) is not None:
            unmapped[key] = context[key]
    out["unmapped"] = unmapped
    return out


def _user(actor: Mapping[str, Any]) -> dict[str, Any]:
    type_id, type_name = _USER_TYPES.get(actor["type"], (99, "Other"))
    if actor["type"] == "user" and actor.get("role") in _ADMIN_ROLES:
        type_id, type_name = 2, "Admin"
    user: dict[str, Any] = {"uid": actor["id"], "type_id": type_id, "type": type_name}
    if actor.get("name") is not None:
        user["name"] = actor["name"]
    return user


def _epoch_ms(time: str) -> int:
    # Integer arithmetic: a float timestamp would round some microseconds into the next ms.
    return (parse_time(time) - _EPOCH) // timedelta(milliseconds=1)


def ndjson(entries: Iterable[bytes]) -> bytes:
    """Stored entries as NDJSON lines of OCSF events, stubs left out (``b""`` if none is left)."""
    lines = [orjson.dumps(e) for e in map(event, map(orjson.loads, entries)) if e is not None]
    return b"".join(line + b"\n" for line in lines)
