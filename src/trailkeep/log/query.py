"""What a read asks for: filters, and the opaque cursor that pages through them. Pure."""

from __future__ import annotations

import hashlib
import hmac
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from trailkeep.log.record import format_time, parse_time

CURSOR_VERSION: Final = 1
_CURSOR_TAG: Final = 12  # bytes of HMAC-SHA256 kept: 96 bits is ample against forgery online
GroupBy = Literal["action", "actor", "target_type", "day", "hour"]


class QueryError(ValueError):
    """A read parameter that cannot be used; ``param`` names it."""

    def __init__(self, param: str, detail: str) -> None:
        super().__init__(f"{param}: {detail}")
        self.param = param


@dataclass(frozen=True, slots=True)
class Filters:
    """Filters of list, stats and export; all given ones must hold (AND), ``actions`` is an OR."""

    actions: tuple[str, ...] = ()
    action_prefix: str | None = None
    actor: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    kind: Literal["admin", "user"] | None = None
    since: datetime | None = None
    until: datetime | None = None
    changed_path: str | None = None  # an RFC 6901 pointer that the entry's `changes` names
    exclude_actions: tuple[str, ...] = ()  # none of these actions (NOT IN)

    def __post_init__(self) -> None:
        if self.since and self.until and self.since > self.until:
            raise QueryError("since", "is after `until`")

    def on_time_only(self) -> bool:
        """True when only ``since``/``until`` (or nothing) filter: erased entries' stubs match.

        A stub keeps its seq, id and time and nothing else, so a filter on what an entry said
        (its action, actor, target, kind or changes, or an action it must not be) matches no
        erased entry.
        """
        return not (
            self.actions or self.exclude_actions or self.action_prefix is not None
            or self.actor is not None
            or self.target_type is not None or self.target_id is not None
            or self.kind is not None or self.changed_path is not None
        )  # fmt: skip

    def matches(self, entry: Mapping[str, Any]) -> bool:
        """Whether a stored entry (or an erased entry's stub) passes, as a list's query decides.

        The live stream filters entries it has already read for every subscriber at once; this
        mirrors the SQL of a list (a stub has only its seq, id and time: see ``on_time_only``).
        """
        if self.since is not None or self.until is not None:
            moment = parse_time(entry["time"])
            if (self.since is not None and moment < self.since) or (
                self.until is not None and moment > self.until
            ):
                return False
        if entry.get("erased") is True:
            return self.on_time_only()
        action = entry["action"]
        if self.actions and action not in self.actions:
            return False
        if self.action_prefix is not None and not action.startswith(self.action_prefix):
            return False
        if action in self.exclude_actions:
            return False
        target = entry.get("target") or {}
        wanted = (
            (self.actor, entry["actor"]["id"]), (self.target_type, target.get("type")),
            (self.target_id, target.get("id")), (self.kind, entry["kind"]),
        )  # fmt: skip
        if any(want is not None and want != have for want, have in wanted):
            return False
        if self.changed_path is not None:
            paths = {change.get("path") for change in entry.get("changes") or ()}
            return self.changed_path in paths
        return True

    def describe(self) -> dict[str, Any]:
        """The filters that were used, as JSON (recorded in ``audit.read`` entries)."""
        out: dict[str, Any] = {}
        if self.actions:
            out["action"] = list(self.actions)
        if self.exclude_actions:
            out["exclude_action"] = list(self.exclude_actions)
        for name in ("action_prefix", "actor", "target_type", "target_id", "kind", "changed_path"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.since is not None:
            out["since"] = format_time(self.since)
        if self.until is not None:
            out["until"] = format_time(self.until)
        return out


def _cursor_key(secret: str) -> bytes:
    # Derived, so the app's session secret is never used directly for a second purpose.
    return hmac.new(secret.encode(), b"trailkeep cursor key v1", hashlib.sha256).digest()


def encode_cursor(app_id: str, secret: str, before_seq: int) -> str:
    """An opaque cursor for "entries with seq below ``before_seq``", bound to its app."""
    body = bytes([CURSOR_VERSION]) + before_seq.to_bytes(8, "big")
    tag = hmac.new(_cursor_key(secret), app_id.encode() + b"\0" + body, hashlib.sha256)
    return urlsafe_b64encode(body + tag.digest()[:_CURSOR_TAG]).decode().rstrip("=")


def decode_cursor(app_id: str, secret: str, cursor: str) -> int:
    """The position a cursor stands for; ``QueryError`` if it is malformed, foreign or altered."""
    try:
        raw = urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except ValueError:
        raw = b""
    if len(raw) != 9 + _CURSOR_TAG or raw[0] != CURSOR_VERSION:
        raise QueryError("cursor", "not a cursor this server issued")
    body, tag = raw[:9], raw[9:]
    expected = hmac.new(_cursor_key(secret), app_id.encode() + b"\0" + body, hashlib.sha256)
    if not hmac.compare_digest(tag, expected.digest()[:_CURSOR_TAG]):
        raise QueryError("cursor", "not a cursor this server issued for this app")
    return int.from_bytes(body[1:], "big")
