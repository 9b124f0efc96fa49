"""The SDK's typed values: entries as the server returns them, proofs, checkpoints, stats.

All are frozen dataclasses. An :class:`Entry` also keeps ``raw``, the JSON object exactly as the
server sent it, so that :func:`trailkeep.sdk.verify.entry_document` can rebuild the bytes the
server hashed and check them against the leaf hash.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypedDict

from trailkeep.log.notes import Checkpoint, NoteError
from trailkeep.log.record import parse_time

from .errors import VerificationError

Kind = Literal["admin", "user"]
GroupBy = Literal["action", "actor", "target_type", "day", "hour"]


class EventFields(TypedDict, total=False):
    """The optional fields of an entry to write (keyword arguments of the buffers' ``log``)."""

    target_type: str | None
    target_id: str | None
    metadata: Mapping[str, Any] | None
    project: str | None
    server: str | None
    request_id: str | None
    changes: Sequence[Mapping[str, Any]] | None
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class Event:
    """One entry to write: what :meth:`Audit.log_many` and :class:`AuditBuffer` take."""

    action: str
    target_type: str | None = None
    target_id: str | None = None
    metadata: Mapping[str, Any] | None = None
    project: str | None = None
    server: str | None = None
    request_id: str | None = None
    #: What changed, ``[{"path": "/role", "old": ..., "new": ...}]`` (DESIGN §8); or give
    #: ``before`` and ``after`` and the server computes it.
    changes: Sequence[Mapping[str, Any]] | None = None
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        """The flat JSON body of the write (unset fields left out)."""
        out: dict[str, Any] = {"action": self.action}
        for name in ("target_type", "target_id", "project", "server", "request_id"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.metadata is not None:
            out["metadata"] = dict(self.metadata)
        if self.changes is not None:
            out["changes"] = [dict(change) for change in self.changes]
        for name in ("before", "after"):
            value = getattr(self, name)
            if value is not None:
                out[name] = dict(value)
        return out


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: an end user (from a session token) or an API key; set by the server."""

    type: str
    id: str
    name: str | None = None
    role: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """The affected user or resource."""

    type: str
    id: str


@dataclass(frozen=True, slots=True)
class Context:
    """Where the action came from (``ip``, ``user_agent``, ``forwarded_by``: set by the server)."""

    ip: str | None = None
    user_agent: str | None = None
    project: str | None = None
    server: str | None = None
    request_id: str | None = None
    forwarded_by: str | None = None


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise VerificationError("malformed", f"entry field {name!r} is not a string")
    return value


def _opt(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored entry of the log, as every read returns it."""

    id: str
    app_id: str
    seq: int
    time: datetime
    action: str
    kind: Kind
    actor: Actor
    target: Target | None
    metadata: Mapping[str, Any]
    context: Context
    leaf_hash: str
    #: ``[{path, old, new}]``: what a change changed (DESIGN §8); empty when absent.
    changes: tuple[Mapping[str, Any], ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Entry:
        """Build an entry from the JSON object the server returned (kept as ``raw``)."""
        if not isinstance(data, Mapping):
            raise VerificationError("malformed", "an entry must be a JSON object")
        if data.get("erased") is True:
            raise VerificationError(
                "malformed", f"entry seq {data.get('seq')} was erased: only its leaf hash remains"
            )
        actor = data.get("actor")
        context = data.get("context")
        target = data.get("target")
        seq = data.get("seq")
        if not isinstance(actor, Mapping) or not isinstance(context, Mapping):
            raise VerificationError("malformed", "an entry needs `actor` and `context` objects")
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise VerificationError("malformed", "an entry's `seq` must be an integer")
        kind = data.get("kind")
        metadata = data.get("metadata")
        changes = data.get("changes")
        try:
            moment = parse_time(_text(data, "time"))
        except ValueError as exc:
            raise VerificationError("malformed", f"entry time: {exc}") from None
        return cls(
            id=_text(data, "id"),
            app_id=_text(data, "app_id"),
            seq=seq,
            time=moment,
            action=_text(data, "action"),
            kind="admin" if kind == "admin" else "user",
            actor=Actor(
                type=_text(actor, "type"),
                id=_text(actor, "id"),
                name=_opt(actor, "name"),
                role=_opt(actor, "role"),
            ),
            target=(
                Target(type=_text(target, "type"), id=_text(target, "id"))
                if isinstance(target, Mapping)
                else None
            ),
            metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
            context=Context(
                **{
                    name: _opt(context, name)
                    for name in (
                        "ip",
                        "user_agent",
                        "project",
                        "server",
                        "request_id",
                        "forwarded_by",
                    )
                }
            ),
            leaf_hash=_text(data, "leaf_hash"),
            changes=tuple(c for c in changes if isinstance(c, Mapping))
            if isinstance(changes, list)
            else (),
            raw=dict(data),
        )


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """RFC 9162 audit path of leaf ``seq`` in the tree of ``tree_size`` entries."""

    seq: int
    tree_size: int
    leaf_hash: str
    path: tuple[str, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InclusionProof:
        """Parse the server's proof object."""
        try:
            return cls(
                seq=int(data["seq"]),
                tree_size=int(data["tree_size"]),
                leaf_hash=str(data["leaf_hash"]),
                path=tuple(str(h) for h in data["path"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise VerificationError("malformed", f"inclusion proof: {exc}") from None


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint as the server publishes it: the signed note, and its parsed body.

    ``origin``, ``size`` and ``root`` are read from the note text; they are only trustworthy
    after :meth:`Client.checkpoint` (or ``verify_entry``) checked the signature.
    """

    note: str
    origin: str
    size: int
    root: bytes

    @property
    def app_id(self) -> str:
        """The app whose log this is (the last part of the origin line)."""
        return self.origin.rsplit("/", 1)[-1]

    @property
    def root_hash(self) -> str:
        """The root hash, hex."""
        return self.root.hex()

    @classmethod
    def parse(cls, note: str) -> SignedCheckpoint:
        """Parse (without verifying) a signed checkpoint note."""
        body, sep, _ = note.rpartition("\n\n")
        try:
            parsed = Checkpoint.from_text(body + "\n" if sep else note)
        except NoteError as exc:
            raise VerificationError("malformed", f"checkpoint: {exc}") from None
        return cls(note=note, origin=parsed.origin, size=parsed.size, root=parsed.root)

    def __repr__(self) -> str:
        """Short form: origin, size and root."""
        root = base64.b64encode(self.root).decode()
        return f"SignedCheckpoint(origin={self.origin!r}, size={self.size}, root={root!r})"


@dataclass(frozen=True, slots=True)
class ProvenEntry:
    """An entry with its inclusion proof and the signed checkpoint the proof leads to."""

    entry: Entry
    proof: InclusionProof
    checkpoint: SignedCheckpoint


@dataclass(frozen=True, slots=True)
class Verified:
    """What :meth:`Client.verify_entry` established: this entry is in the signed log."""

    entry: Entry
    checkpoint: SignedCheckpoint
    key_name: str


@dataclass(frozen=True, slots=True)
class GroupCount:
    """One group of :meth:`Audit.stats`: its key (``None`` for entries without one) and count."""

    key: str | None
    count: int


@dataclass(frozen=True, slots=True)
class Erased:
    """What :meth:`Audit.erased` found: seq runs, and the log size to ask from next time."""

    size: int
    seq_ranges: list[list[int]]


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts per group, largest first (``day``: in date order)."""

    group_by: str
    groups: tuple[GroupCount, ...]

    def as_dict(self) -> dict[str | None, int]:
        """The counts as ``{key: count}``."""
        return {g.key: g.count for g in self.groups}
