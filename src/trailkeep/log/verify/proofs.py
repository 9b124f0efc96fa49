"""Signed checkpoints, and the inclusion and consistency proofs that lead to them."""

from __future__ import annotations

from collections.abc import Sequence

from trailkeep.log import merkle
from trailkeep.log.notes import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from trailkeep.log.verify.entries import TreeHead, VerifyError


def open_signed(
    note: str, verifier: NoteVerifier, what: str = "checkpoint", origin: str | None = None
) -> Checkpoint:
    """Check a signed checkpoint's signature and parse it; ``VerifyError`` naming ``what``."""
    try:
        checkpoint = open_checkpoint(note, verifier)
    except NoteError as exc:
        raise VerifyError(f"{what}: {exc}", reason="signature") from None
    if origin is not None and checkpoint.origin != origin:
        raise VerifyError(f"{what} is of {checkpoint.origin!r}, not of {origin!r}", reason="origin")
    return checkpoint


def app_of(checkpoint: TreeHead) -> str:
    """The app id at the end of a checkpoint's origin line (``<origin>/<app_id>``)."""
    return checkpoint.origin.rsplit("/", 1)[-1]


def verify_inclusion(leaf: bytes, seq: int, head: TreeHead, path: Sequence[bytes]) -> None:
    """Check that the leaf at ``seq`` is in the tree ``head`` signs, by its audit path."""
    try:
        merkle.verify_inclusion(leaf, seq, head.size, path, head.root)
    except merkle.ProofError as exc:
        raise VerifyError(
            f"not in the signed tree of {head.size}: {exc}", seq, "inclusion"
        ) from None


def verify_consistency(old: TreeHead, new: TreeHead, proof: Sequence[bytes]) -> None:
    """Check that the older checkpoint's tree is a prefix of the newer one's."""
    if old.origin != new.origin:
        raise VerifyError(
            f"the checkpoints are of different logs: {old.origin} vs {new.origin}", reason="origin"
        )
    if old.size > new.size:
        raise VerifyError(
            f"the old checkpoint ({old.size}) is larger than the new ({new.size})",
            reason="consistency",
        )
    if old.size == 0:
        return
    try:
        merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
    except merkle.ProofError as exc:
        raise VerifyError(
            f"checkpoint {old.size} is not consistent with checkpoint {new.size}: {exc}",
            reason="consistency",
        ) from None
