"""Local verification of entries, inclusion proofs and signed checkpoints (no I/O here).

The checks are the verification core's (``trailkeep.log.verify``), the same that ``trailkeep
verify`` runs: nothing trusts the server, the leaf hash is recomputed from the entry's content
(RFC 8785 JSON, SHA-256 with the 0x00 leaf prefix), the audit path is folded up to the root that
the checkpoint states, and the checkpoint's Ed25519 signature is checked with the verifier key.
This module maps the core's failures to :class:`VerificationError` with the same ``reason``.
A client that verifies several checkpoints of one app also checks that each is consistent with
the last (the log was only appended to), through :class:`Witness`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from trailkeep.log import merkle
from trailkeep.log.notes import NoteError, NoteVerifier
from trailkeep.log.record import format_time
from trailkeep.log.verify import VerifyError, leaf_of, verify_consistency, verify_inclusion
from trailkeep.log.verify import open_signed as core_open_signed

from .errors import VerificationError
from .models import Entry, ProvenEntry, SignedCheckpoint

T = TypeVar("T")
_OPTIONAL_CONTEXT = ("project", "server", "request_id", "forwarded_by")


def parse_verifier_key(text: str) -> NoteVerifier:
    """Parse a note verifier key (``<name>+<key id>+<base64>``, as ``/v1/checkpoint-key``)."""
    try:
        return NoteVerifier.from_verifier_key(text.strip())
    except NoteError as exc:
        raise VerificationError("malformed", f"checkpoint key: {exc}") from None


def _put(target: dict[str, Any], name: str, value: Any, keep_none: bool = False) -> None:
    if value is None and not keep_none:
        target.pop(name, None)
    else:
        target[name] = value


def entry_document(entry: Entry) -> dict[str, Any]:
    """The JSON object the server hashed, rebuilt from the entry's typed fields.

    Keys the SDK does not model are carried over from ``entry.raw``, so an entry from a newer
    server still verifies; ``leaf_hash`` itself is left out.
    """
    raw = {k: v for k, v in entry.raw.items() if k != "leaf_hash"}
    raw_actor = raw.get("actor")
    actor: dict[str, Any] = dict(raw_actor) if isinstance(raw_actor, Mapping) else {}
    actor.update(type=entry.actor.type, id=entry.actor.id)
    _put(actor, "name", entry.actor.name)
    _put(actor, "role", entry.actor.role)
    raw_context = raw.get("context")
    context: dict[str, Any] = dict(raw_context) if isinstance(raw_context, Mapping) else {}
    context.update(ip=entry.context.ip, user_agent=entry.context.user_agent)
    for name in _OPTIONAL_CONTEXT:
        _put(context, name, getattr(entry.context, name))
    target: dict[str, Any] | None = None
    if entry.target is not None:
        raw_target = raw.get("target")
        target = dict(raw_target) if isinstance(raw_target, Mapping) else {}
        target.update(type=entry.target.type, id=entry.target.id)
    raw.update(
        id=entry.id, app_id=entry.app_id, seq=entry.seq, time=format_time(entry.time),
        action=entry.action, kind=entry.kind, actor=actor, target=target,
        metadata=dict(entry.metadata), context=context,
    )  # fmt: skip
    return raw


def _checked(check: Callable[[], T]) -> T:
    """Run a check of the verification core; its failure becomes a ``VerificationError``."""
    try:
        return check()
    except VerifyError as exc:
        raise VerificationError(exc.reason, str(exc)) from None


def _hex32(text: str, what: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except (ValueError, TypeError):
        value = b""
    if len(value) != merkle.HASH_SIZE:
        raise VerificationError("malformed", f"{what} is not 32 bytes of hex")
    return value


def check_leaf(entry: Entry) -> bytes:
    """Recompute the entry's leaf hash from its content; it must equal ``entry.leaf_hash``.

    Both what the caller reads (the typed fields) and what the server sent (``entry.raw``) must
    hash to it, so an entry whose typed fields were changed after it arrived fails too.
    """
    typed = {**entry_document(entry), "leaf_hash": entry.leaf_hash}
    leaf, _ = _checked(lambda: leaf_of(entry.seq, typed, entry.app_id))
    if entry.raw:
        _checked(lambda: leaf_of(entry.seq, entry.raw, entry.app_id))
    return leaf


def open_signed(checkpoint: SignedCheckpoint, verifier: NoteVerifier) -> None:
    """Check the checkpoint note's signature, and that its parsed body is the signed one."""
    body = _checked(lambda: core_open_signed(checkpoint.note, verifier))
    if (body.origin, body.size, body.root) != (
        checkpoint.origin,
        checkpoint.size,
        checkpoint.root,
    ):
        raise VerificationError("signature", "checkpoint fields differ from the signed note")


def verify_proven(proven: ProvenEntry, verifier: NoteVerifier) -> None:
    """Check an entry, its inclusion proof and the proof's checkpoint, all locally."""
    entry, proof, checkpoint = proven.entry, proven.proof, proven.checkpoint
    leaf = check_leaf(entry)
    open_signed(checkpoint, verifier)
    if checkpoint.app_id != entry.app_id:
        raise VerificationError(
            "origin",
            f"the checkpoint is of {checkpoint.origin!r}, not of the entry's app {entry.app_id!r}",
        )
    if proof.seq != entry.seq or proof.tree_size != checkpoint.size:
        raise VerificationError(
            "inclusion",
            f"the proof is for seq {proof.seq} in a tree of {proof.tree_size}, not for seq "
            f"{entry.seq} in the checkpoint's tree of {checkpoint.size}",
        )
    path = [_hex32(h, "proof hash") for h in proof.path]
    _checked(lambda: verify_inclusion(leaf, entry.seq, checkpoint, path))


class Witness:
    """The newest verified checkpoint per app, so each new one is checked to extend it."""

    def __init__(self) -> None:
        """Start having seen nothing."""
        self._lock = threading.Lock()
        self._latest: dict[str, SignedCheckpoint] = {}

    def latest(self, app_id: str) -> SignedCheckpoint | None:
        """The newest verified checkpoint of ``app_id`` seen so far."""
        with self._lock:
            return self._latest.get(app_id)

    def needs_proof(self, new: SignedCheckpoint) -> tuple[int, int] | None:
        """(from, to) sizes of the consistency proof needed to accept ``new``, if any.

        Raises at once when two checkpoints of the same size have different roots.
        """
        old = self.latest(new.app_id)
        if old is None or old.size == 0 or new.size == 0:
            return None
        if old.size == new.size:
            if old.root != new.root:
                raise VerificationError(
                    "consistency",
                    f"two signed checkpoints of size {new.size} have different roots: the "
                    "log was rewritten",
                )
            return None
        return (min(old.size, new.size), max(old.size, new.size))

    def accept(self, new: SignedCheckpoint, proof: list[str] | None) -> None:
        """Record ``new`` once its consistency proof (from :meth:`needs_proof`) checks out."""
        old = self.latest(new.app_id)
        sizes = self.needs_proof(new)
        if old is not None and sizes is not None:
            small, big = (old, new) if old.size < new.size else (new, old)
            hashes = [_hex32(h, "consistency proof hash") for h in proof or []]
            _checked(lambda: verify_consistency(small, big, hashes))
        with self._lock:
            current = self._latest.get(new.app_id)
            if current is None or new.size > current.size:
                self._latest[new.app_id] = new


def consistency_path(data: Any) -> list[str]:
    """The hex hashes of a ``/proofs/consistency`` answer."""
    path = data.get("path") if isinstance(data, Mapping) else None
    if not isinstance(path, list) or not all(isinstance(h, str) for h in path):
        raise VerificationError("malformed", "consistency proof: `path` must be a list of hex")
    return path


__all__ = [
    "Witness",
    "check_leaf",
    "consistency_path",
    "entry_document",
    "open_signed",
    "parse_verifier_key",
    "verify_proven",
]
