"""The entry: validation of what callers send, and the canonical form that is hashed.

Everything here is pure. The canonical form of an entry is RFC 8785 (JCS) JSON; because its
top-level keys are fixed and sorted, an entry's canonical bytes can be assembled from the
canonical bytes of its parts, so the writer canonicalises the caller's metadata once (for the
size check) and only formats ``seq`` and ``time`` once the order is known.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from trailkeep.log import jcs
from trailkeep.log.changes import PATH_MAX, POINTER_PATTERN, PointerError, diff, parse_pointer

ACTION_PATTERN: Final = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
ACTION_MAX: Final = 128
TARGET_TYPE_MAX: Final = 64
TARGET_ID_MAX: Final = 256
RELATED_MAX: Final = 128
METADATA_MAX_DEPTH: Final = 8
ADMIN_ROLES: Final = frozenset({"owner", "admin"})
#: The roles of a session that may read the log: an auditor reads and verifies, manages nothing.
READER_ROLES: Final = frozenset({"owner", "admin", "auditor"})
#: The most `changes` one entry carries (DESIGN §8).
CHANGES_MAX: Final = 100

# Fields the server sets. A body that carries one is refused rather than silently ignored, so
# that a caller who believes it can set them learns otherwise.
SERVER_OWNED: Final = frozenset(
    {
        "actor",
        "time",
        "kind",
        "seq",
        "id",
        "leaf_hash",
        "app_id",
        "context",
        "ip",
        "user_agent",
        "forwarded_by",
    }
)

#: Actions that only the log itself records (its reads and its own administration, DESIGN §5):
#: a caller writing one would forge a record that `verify` and readers trust.
RESERVED_ACTIONS: Final = frozenset(
    {"app.settings.change", "key.create", "key.revoke", "hold.place", "hold.release",
     "erasure.request", "erasure.approve", "erasure.done", "retention.purge",
     "retention.change.request", "retention.change.approve", "retention.change.cancel",
     "session_secret.rotate", "session_secret.retire", "secret_key.rotate",
     "webhook.create", "webhook.delete", "webhook.replay"}
)  # fmt: skip
RESERVED_PREFIX: Final = "audit."

_ACTION_RE: Final = re.compile(ACTION_PATTERN)
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"

Kind = Literal["admin", "user"]


class EntryError(ValueError):
    """A write that cannot be accepted; ``code`` is the API's stable error code."""

    def __init__(self, detail: str, code: str = "invalid_request") -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code


Action = Annotated[
    str, StringConstraints(min_length=1, max_length=ACTION_MAX, pattern=ACTION_PATTERN)
]
TargetType = Annotated[str, StringConstraints(min_length=1, max_length=TARGET_TYPE_MAX)]
TargetId = Annotated[str, StringConstraints(min_length=1, max_length=TARGET_ID_MAX)]
Related = Annotated[str, StringConstraints(min_length=1, max_length=RELATED_MAX)]


# The pattern is the schema's; the check is parse_pointer's, whose errors say what is wrong.
Pointer = Annotated[
    str,
    StringConstraints(min_length=1, max_length=PATH_MAX),
    Field(json_schema_extra={"pattern": POINTER_PATTERN}),
]


class ChangeIn(BaseModel):
    """One changed field as a caller sends it: an added field has no ``old``, a removed one no
    ``new`` (``null`` is a value, so leaving a key out is how to say "none")."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        json_schema_extra={"anyOf": [{"required": ["old"]}, {"required": ["new"]}]},
    )

    path: Pointer = Field(description="RFC 6901 JSON pointer to the field, e.g. `/role`.")
    old: Any = Field(default=None, description="The value before; leave out if it was added.")
    new: Any = Field(default=None, description="The value after; leave out if it was removed.")

    def as_json(self) -> dict[str, Any]:
        """The change as the entry holds it: ``old``/``new`` only where the caller gave them."""
        out: dict[str, Any] = {"path": self.path}
        for name in ("old", "new"):
            if name in self.model_fields_set:
                out[name] = getattr(self, name)
        return out


class EventWrite(BaseModel):
    """The body of a write: flat, as the SDKs send it; the server nests it into the entry."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    action: Action = Field(description="What happened, e.g. `user.role.change`.")
    target_type: TargetType | None = Field(default=None, description="Type of the affected thing.")
    target_id: TargetId | None = Field(default=None, description="Id of the affected thing.")
    metadata: dict[str, Any] | None = Field(
        default=None,
        description="Free-form JSON object; canonical size ≤ 10,240 bytes (configurable), "
        "nesting ≤ 8.",
    )
    project: Related | None = Field(default=None, description="Where it happened: the project.")
    server: Related | None = Field(default=None, description="Where it happened: the server.")
    request_id: Related | None = Field(default=None, description="The caller's request id.")
    changes: list[ChangeIn] | None = Field(
        default=None,
        max_length=CHANGES_MAX,
        description="What changed, at most 100 items, counted within the metadata size limit. "
        "Not with `before`/`after`.",
    )
    before: dict[str, Any] | None = Field(
        default=None,
        description="The changed object before (with `after`): the server stores the fields "
        "that differ as `changes` (nested objects by pointer, lists as whole values).",
    )
    after: dict[str, Any] | None = Field(
        default=None, description="The changed object after (with `before`)."
    )


class BatchWrite(BaseModel):
    """The body of a batch write: 1 to 1,000 entries, appended all or none."""

    model_config = ConfigDict(extra="forbid", strict=True)

    events: list[EventWrite] = Field(min_length=1, max_length=1000)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted, as resolved from a verified credential, never from a body.

    ``operator`` is a person at the host's shell (the CLI, ``user@host``); ``system`` is the
    service itself (the retention scheduler). Both administer, so their entries are ``admin``.
    """

    type: Literal["user", "api_key", "operator", "system"]
    id: str
    name: str | None = None
    role: str | None = None
    manages: bool = False  # a key with the `manage` scope

    @property
    def kind(self) -> Kind:
        """``admin`` for owners, admins and management keys; ``user`` otherwise."""
        if self.type == "api_key":
            return "admin" if self.manages else "user"
        if self.type in ("operator", "system"):
            return "admin"
        return "admin" if self.role in ADMIN_ROLES else "user"

    def as_json(self) -> dict[str, str]:
        """The actor as it appears in an entry: unset name and role are left out."""
        out = {"type": self.type, "id": self.id}
        if self.name is not None:
            out["name"] = self.name
        if self.role is not None:
            out["role"] = self.role
        return out


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request came from, as the server saw it (or a trusted key forwarded it)."""

    ip: str | None
    user_agent: str | None
    forwarded_by: str | None = None


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """A validated entry waiting for its ``seq`` and ``time``; holds its canonical pieces."""

    app_id: str
    id: str
    action: str
    kind: Kind
    actor_id: str
    target_type: str | None
    target_id: str | None
    head: bytes  # canonical JSON up to and including '"seq":'
    tail: bytes  # canonical JSON from ',"target":' up to and including '"time":"'
    changed_paths: tuple[str, ...] = ()  # distinct `changes` paths, indexed for `changed_path`

    def canonical(self, seq: int, time: str) -> bytes:
        """The entry's RFC 8785 bytes once its position in the log is known."""
        return b"".join((self.head, str(seq).encode(), self.tail, time.encode(), b'"}'))


class IndexedFields(NamedTuple):
    """The fields of an entry that reads filter on, as a database indexes them beside it."""

    action: str
    kind: str
    actor_id: str
    target_type: str | None
    target_id: str | None
    time: str  # RFC 3339, as format_time writes it


def indexed_fields(entry: Mapping[str, Any]) -> IndexedFields:
    """The indexed fields of a parsed entry (``KeyError``/``TypeError`` if it is not one)."""
    target = entry["target"]
    return IndexedFields(
        action=entry["action"],
        kind=entry["kind"],
        actor_id=entry["actor"]["id"],
        target_type=None if target is None else target["type"],
        target_id=None if target is None else target["id"],
        time=entry["time"],
    )


def canonical(value: Any, where: str = "metadata") -> bytes:
    """RFC 8785 canonical JSON of a JSON value (``EntryError`` for what JCS cannot encode)."""
    try:
        return jcs.canonical(value)
    except jcs.CanonicalizationError as exc:
        raise EntryError(f"{where}: {exc}") from exc


def _string(text: str) -> bytes:
    # A JSON string's JCS form is what orjson writes (checked in tests/unit/test_jcs.py).
    try:
        return orjson.dumps(text)
    except orjson.JSONEncodeError as exc:
        raise EntryError(f"not valid Unicode: {exc}") from None


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds, the only time format entries use."""
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset; naive times are refused."""
    expected = "expected an RFC 3339 timestamp such as 2026-11-23T08:15:30Z"
    if not isinstance(text, str) or len(text) < 20 or text[10] not in "Tt":
        raise ValueError(expected)
    try:
        moment = datetime.fromisoformat(text.upper())
    except ValueError:
        raise ValueError(expected) from None
    if moment.tzinfo is None:
        raise ValueError("timestamp needs a timezone offset or Z")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp is outside the years 0001-9999 once converted to UTC") from None


def parse_body(raw: bytes) -> Any:
    """Decode a JSON request body strictly (no NaN, no lone surrogates)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EntryError(f"body is not valid JSON: {exc}") from exc


def _check_owned_fields(body: Mapping[str, Any], where: str) -> None:
    if "actor" in body:
        raise EntryError(
            f"{where}actor: the actor is taken from the verified credential, not from the body",
            code="actor_not_allowed",
        )
    owned = sorted(SERVER_OWNED.intersection(body))
    if owned:
        raise EntryError(f"{where}{owned[0]}: set by the server; remove it from the body")


def _describe(exc: ValidationError, where: str) -> str:
    first = exc.errors(include_url=False)[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
    if first["type"] == "extra_forbidden":
        return f"{where}{loc}: unknown field"
    return f"{where}{loc}: {first['msg']}" if loc else f"{where.rstrip('.: ')}: {first['msg']}"


def validate_write(body: Any, where: str = "") -> EventWrite:
    """Validate one write body; raise :class:`EntryError` with a message naming the field."""
    if not isinstance(body, dict):
        raise EntryError(f"{where or 'body'}: expected a JSON object")
    _check_owned_fields(body, where)
    try:
        event = EventWrite.model_validate(body)
    except ValidationError as exc:
        raise EntryError(_describe(exc, where)) from None
    if (event.target_type is None) != (event.target_id is None):
        raise EntryError(f"{where}target_type, target_id: give both or neither")
    if event.action in RESERVED_ACTIONS or event.action.startswith(RESERVED_PREFIX):
        raise EntryError(
            f"{where}action: {event.action!r} is reserved for the log's own records "
            f"(`{RESERVED_PREFIX}*` and governance actions)"
        )
    if event.changes is not None or event.before is not None or event.after is not None:
        _check_change_form(event, where)
    return event


def _check_change_form(event: EventWrite, where: str) -> None:
    if event.changes is not None and (event.before is not None or event.after is not None):
        raise EntryError(f"{where}changes: give `changes` or `before` and `after`, not both")
    if (event.before is None) != (event.after is None):
        missing = "after" if event.after is None else "before"
        raise EntryError(f"{where}{missing}: give `before` and `after` together")
    seen: dict[str, int] = {}
    for i, change in enumerate(event.changes or ()):
        name = f"{where}changes[{i}]"
        try:
            parse_pointer(change.path)
        except PointerError as exc:
            raise EntryError(f"{name}.path: {exc}") from None
        if not {"old", "new"} & change.model_fields_set:
            raise EntryError(f"{name}: give `old`, `new` or both (added: no `old`; removed: no "
                             "`new`)")  # fmt: skip
        if change.path in seen:
            raise EntryError(f"{name}.path: {change.path!r} repeats changes[{seen[change.path]}]")
        seen[change.path] = i


def validate_batch(body: Any, max_entries: int = 1000) -> list[EventWrite]:
    """Validate a batch body ``{"events": [...]}``; the error names the failing item."""
    if not isinstance(body, dict):
        raise EntryError("body: expected a JSON object with an `events` array")
    unknown = sorted(set(body) - {"events"})
    if unknown:
        raise EntryError(f"{unknown[0]}: unknown field")
    items = body.get("events")
    if not isinstance(items, list) or not 1 <= len(items) <= max_entries:
        raise EntryError(f"events: expected an array of 1 to {max_entries} entries")
    return [validate_write(item, f"events[{i}].") for i, item in enumerate(items)]


_EXACT_INT_LIMIT: Final = 2**53  # I-JSON (RFC 7493): integers beyond this are not exact


def _depth(value: Any, limit: int = METADATA_MAX_DEPTH, where: str = "metadata") -> int:
    """Nesting depth, walked without recursion (a body may nest past Python's recursion limit).

    The walk stops once ``limit`` is passed.

    Also refuses integral floats from 2**53 up to 1e21: JCS writes them as bare digits, which
    read back as integers outside the I-JSON range that JCS (and so `verify`) then refuses.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            if type(item) is float and _EXACT_INT_LIMIT <= abs(item) < 1e21 and item.is_integer():
                raise EntryError(
                    f"{where}: {item:.0f} is an integer beyond ±(2^53-1), which JSON cannot "
                    "carry exactly; send it as a string"
                )
            continue
        deepest = max(deepest, level + 1)
        if deepest > limit:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def canonical_metadata(
    metadata: Mapping[str, Any] | None, max_bytes: int, changes_bytes: int = 0
) -> bytes:
    """The metadata's canonical bytes, checked against the size and nesting limits.

    ``changes_bytes`` is the caller's ``changes``' canonical size, which counts within the limit.
    """
    if not metadata:
        return b"{}"
    if _depth(metadata) > METADATA_MAX_DEPTH:
        raise EntryError(f"metadata: nesting deeper than {METADATA_MAX_DEPTH} levels")
    encoded = canonical(metadata)
    if len(encoded) + changes_bytes > max_bytes:
        with_changes = f" (and changes {changes_bytes})" if changes_bytes else ""
        raise EntryError(
            f"metadata: canonical encoding is {len(encoded)} bytes{with_changes}; the limit is "
            f"{max_bytes}",
            code="payload_too_large",
        )
    return encoded


def caller_changes(event: EventWrite) -> list[dict[str, Any]]:
    """The ``changes`` a validated write carries: as given, or computed from before/after."""
    if event.changes is not None:
        found = [change.as_json() for change in event.changes]
        for i, change in enumerate(found):
            for name in ("old", "new"):
                if name in change and _depth(change[name], where=f"changes[{i}].{name}") > (
                    METADATA_MAX_DEPTH
                ):
                    raise EntryError(f"changes[{i}].{name}: nesting deeper than "
                                     f"{METADATA_MAX_DEPTH} levels")  # fmt: skip
        return found
    if event.before is None or event.after is None:
        return []
    for name, value in (("before", event.before), ("after", event.after)):
        # Bounded before diffing: the diff recurses once per level.
        if _depth(value, where=name) > METADATA_MAX_DEPTH:
            raise EntryError(f"{name}: nesting deeper than {METADATA_MAX_DEPTH} levels")
    found = diff(event.before, event.after)
    if len(found) > CHANGES_MAX:
        raise EntryError(
            f"after: {len(found)} fields differ from `before`; an entry carries at most "
            f"{CHANGES_MAX} changes"
        )
    for change in found:
        if len(change["path"]) > PATH_MAX:
            raise EntryError(f"after: the pointer {change['path'][:40]!r}... is longer than "
                             f"{PATH_MAX} characters")  # fmt: skip
    return found


@functools.lru_cache(maxsize=4096)
def _actor_json(actor: Actor) -> bytes:
    # Every entry of a batch (and of a busy key or session) has the same actor: encode it once.
    return canonical(actor.as_json())


@functools.lru_cache(maxsize=4096)
def _context_json(
    origin: Origin, project: str | None, server: str | None, request_id: str | None
) -> bytes:
    context: dict[str, str | None] = {"ip": origin.ip, "user_agent": origin.user_agent}
    if origin.forwarded_by is not None:
        context["forwarded_by"] = origin.forwarded_by
    for name, value in (("project", project), ("server", server), ("request_id", request_id)):
        if value is not None:
            context[name] = value
    return canonical(context)


def _target_json(target_type: str | None, target_id: str | None) -> bytes:
    if target_type is None:
        return b"null"
    # JCS order: "id" before "type"; strings are what orjson writes (see _string).
    shown = b"null" if target_id is None else _string(target_id)
    return b"".join((b'{"id":', shown, b',"type":', _string(target_type), b"}"))


def prepare(
    app_id: str,
    entry_id: str,
    event: EventWrite,
    actor: Actor,
    origin: Origin,
    metadata_max_bytes: int,
    *,
    kind: Kind | None = None,
    changes: Sequence[Mapping[str, Any]] = (),
) -> PendingEntry:
    """Turn a validated write into an entry whose only missing parts are ``seq`` and ``time``.

    ``entry_id`` is the server's to make (``trailkeep.server.ids``): this core has no clock and
    no randomness of its own.
    """
    kind = kind or actor.kind
    changes_json, changes_bytes = b"", 0
    if event.changes is not None or event.before is not None:
        # The caller's own changes count within the metadata limit; the log's own (settings
        # changes) do not, as the caller never chose them.
        changes = caller_changes(event)
        changes_json = _changes_json(changes)
        changes_bytes = max(0, len(changes_json) - len(_CHANGES_KEY))
        if changes_bytes > metadata_max_bytes:
            raise EntryError(
                f"changes: canonical encoding is {changes_bytes} bytes; the limit (with "
                f"metadata) is {metadata_max_bytes}",
                code="payload_too_large",
            )
    elif changes:
        changes_json = _changes_json(changes)
    # JCS orders keys by UTF-16 code units; these top-level keys are ASCII and listed sorted.
    head = b"".join((
        b'{"action":', _string(event.action),
        b',"actor":', _actor_json(actor),
        b',"app_id":', _string(app_id),
        changes_json,
        b',"context":', _context_json(origin, event.project, event.server, event.request_id),
        b',"id":"', entry_id.encode(),
        b'","kind":"', kind.encode(),
        b'","metadata":', canonical_metadata(event.metadata, metadata_max_bytes, changes_bytes),
        b',"seq":',
    ))  # fmt: skip
    tail = b',"target":' + _target_json(event.target_type, event.target_id) + b',"time":"'
    return PendingEntry(
        app_id=app_id,
        id=entry_id,
        action=event.action,
        kind=kind,
        actor_id=actor.id,
        target_type=event.target_type,
        target_id=event.target_id,
        head=head,
        tail=tail,
        changed_paths=tuple(dict.fromkeys(c["path"] for c in changes)) if changes else (),
    )


_CHANGES_KEY: Final = b',"changes":'


def _changes_json(changes: Sequence[Mapping[str, Any]]) -> bytes:
    # Absent when empty, so that entries without changes hash exactly as they always did.
    if not changes:
        return b""
    if len(changes) > CHANGES_MAX:
        raise EntryError(f"changes: at most {CHANGES_MAX} items")
    return _CHANGES_KEY + canonical(list(changes), "changes")


def with_leaf_hash(document: bytes, leaf_hash: bytes) -> bytes:
    """An entry as every read returns it: its canonical bytes plus ``leaf_hash``."""
    return b"".join((document[:-1], b',"leaf_hash":"', leaf_hash.hex().encode(), b'"}'))
