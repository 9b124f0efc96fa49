"""Entries and stubs against their leaf hashes, and a whole export against a signed checkpoint."""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import orjson

from trailkeep.log import jcs, merkle
from trailkeep.log.notes import Checkpoint
from trailkeep.log.verify.ledger import Ledger

Reason = Literal[
    "malformed",  # not an entry, a proof or a checkpoint at all
    "leaf_hash",  # content that does not hash to its leaf hash, or misplaced
    "missing",  # an entry absent where the log has one
    "origin",  # an entry or checkpoint of another app
    "signature",  # a checkpoint not signed by the trusted key
    "inclusion",  # an entry that is not in the signed tree
    "consistency",  # a checkpoint that does not extend an earlier one
    "tree",  # a stored tree node that is not the hash of its leaves
    "index",  # a column reads filter on that disagrees with the entry's content
    "unaccounted",  # a stub that no retention.purge or erasure.done entry accounts for
]

#: The fields an erased entry keeps: its place in the log, and the leaf hash that holds it there.
_AFTER_APP_ID: Final = (b'"changes":', b'"context":')
STUB_FIELDS: Final = frozenset({"seq", "erased", "leaf_hash"})
#: Fields a stub may also carry, none of them content.
STUB_OPTIONAL: Final = frozenset({"id", "time", "erased_by"})


class VerifyError(Exception):
    """Verification failed: ``seq`` is the first entry concerned, ``reason`` the kind of failure."""

    def __init__(self, message: str, seq: int | None = None, reason: Reason = "leaf_hash") -> None:
        super().__init__(message if seq is None else f"seq {seq}: {message}")
        self.detail, self.seq, self.reason = message, seq, reason


class TreeHead(Protocol):
    """A signed tree head: a parsed checkpoint, or the SDK's ``SignedCheckpoint``."""

    @property
    def origin(self) -> str:
        """``<origin>/<app_id>``."""

    @property
    def size(self) -> int:
        """How many entries the tree holds."""

    @property
    def root(self) -> bytes:
        """The RFC 9162 root hash."""


@dataclass(frozen=True, slots=True)
class Report:
    """A clean verification: how many entries, how many erased, and the verified root."""

    size: int
    root: bytes
    erased: int
    checkpoint: Checkpoint | None
    beyond_checkpoint: int = 0


LEAF_KEY: Final = b',"leaf_hash":"'
SUFFIX_AT: Final = -(len(LEAF_KEY) + 2 * merkle.HASH_SIZE + len(b'"}'))

Entry = bytes | str | Mapping[str, Any]


def stored_leaf(entry: bytes) -> bytes:
    """The leaf hash an entry as stored records: its last field (unchecked; see fast_leaf)."""
    return bytes.fromhex(entry[SUFFIX_AT + 14 : -2].decode())


def committed_leaf(line: bytes) -> bytes | None:
    """The leaf hash of a line that is exactly an entry as the server writes it, else None.

    A stored entry is its canonical bytes with ``,"leaf_hash":"…"`` spliced in before the last
    brace, so hashing the bytes without that splice is the full check: if they hash to the
    leaf, they are the committed bytes (RFC 8785: sorted keys, no whitespace), and JCS of their
    parse is those same bytes again. Only the tree root binds the leaf itself: a caller that
    relies on the form (the export's columns) must have the leaf checked against it too.
    Stubs are never in this form (their leaf hash is not their own bytes').
    """
    if line[SUFFIX_AT : SUFFIX_AT + 14] != LEAF_KEY or line[-2:] != b'"}':
        return None
    try:
        leaf = binascii.unhexlify(line[SUFFIX_AT + 14 : -2])
    except (binascii.Error, ValueError):
        return None
    digest = hashlib.sha256(b"\x00")
    digest.update(memoryview(line)[:SUFFIX_AT])  # no copy of the entry
    digest.update(b"}")
    return leaf if digest.digest() == leaf else None


def fast_leaf(seq: int, line: bytes, app_id: str | None) -> bytes | None:
    """The leaf of a line exactly as the server writes it, or None (then take the slow path).

    The seq and app checks only let the slow path word the error; the tree root is what binds.
    """
    leaf = committed_leaf(line)
    if leaf is None:
        return None
    # The last `,"seq":` is the top-level one: only `target` and `time` follow it.
    at = line.rfind(b',"seq":', 0, SUFFIX_AT) + 7
    if line[at : line.find(b",", at)] != b"%d" % seq:
        return None
    if app_id is not None:
        # `changes` (governance, DESIGN §8) sorts between `app_id` and `context`.
        at = line.find(b',"app_id":"%s",' % app_id.encode())
        if at < 0 or line[at + len(app_id) + 13 : at + len(app_id) + 23] not in _AFTER_APP_ID:
            return None
    return leaf


def parsed(seq: int, entry: Entry) -> dict[str, Any]:
    if isinstance(entry, Mapping):
        return dict(entry)
    try:
        parsed: Any = orjson.loads(entry)
    except orjson.JSONDecodeError as exc:
        raise VerifyError(f"not a JSON entry ({exc})", seq, "malformed") from None
    if not isinstance(parsed, dict):
        raise VerifyError("not a JSON object", seq, "malformed")
    return parsed


def _recorded_leaf(seq: int, entry: dict[str, Any]) -> bytes:
    recorded = entry.pop("leaf_hash", None)
    try:
        leaf = bytes.fromhex(recorded) if isinstance(recorded, str) else b""
    except ValueError:
        leaf = b""
    if len(leaf) != merkle.HASH_SIZE:
        raise VerifyError("leaf_hash is missing or not 32 bytes of hex", seq, "malformed")
    return leaf


def leaf_of(seq: int, entry: Entry, app_id: str | None) -> tuple[bytes, bool]:
    """The leaf hash an entry (or a stub) at ``seq`` commits to: (hash, was it a stub).

    ``entry`` is a line as exported or stored (bytes or text), or a parsed JSON object. An entry's
    leaf hash is recomputed from its content and must equal the one it records; a stub of an
    erased entry is taken as the bare leaf it records.
    """
    if not isinstance(entry, Mapping):
        raw = entry.encode() if isinstance(entry, str) else entry
        fast = fast_leaf(seq, raw.rstrip(b"\r\n"), app_id)
        if fast is not None:
            return fast, False
    document = parsed(seq, entry)
    found = document.get("seq")
    if found != seq:
        if isinstance(found, int) and found > seq:
            raise VerifyError(f"missing: the next entry present is seq {found}", seq, "missing")
        raise VerifyError(f"out of order: found seq {found!r} where {seq} belongs", seq)
    leaf = _recorded_leaf(seq, document)
    if document.get("erased") is True:
        if not STUB_FIELDS - {"leaf_hash"} <= set(document) <= STUB_FIELDS | STUB_OPTIONAL:
            raise VerifyError(
                "an erased stub may hold only seq, id, time, erased, erased_by and leaf_hash", seq
            )
        return leaf, True
    if app_id is not None and document.get("app_id") != app_id:
        raise VerifyError(
            f"belongs to app {document.get('app_id')!r}, not {app_id!r}", seq, "origin"
        )
    try:
        computed = merkle.hash_leaf(jcs.canonical(document))
    except jcs.CanonicalizationError as exc:
        raise VerifyError(f"content cannot be canonicalised: {exc}", seq) from None
    if computed != leaf:
        raise VerifyError(
            f"content does not match its leaf_hash (recorded {leaf.hex()}, "
            f"content hashes to {computed.hex()})",
            seq,
        )
    return leaf, False


def check_ledger(ledger: Ledger) -> None:
    """Every stub must be accounted for by the record that erased it (verify/ledger.py)."""
    seq = ledger.first_unaccounted()
    if seq is not None:
        raise VerifyError(
            "erased, but no retention.purge or erasure.done entry of the log accounts for it: "
            "its content was deleted around Trailkeep",
            seq,
            "unaccounted",
        )


def check_head(root: bytes, checkpoint: TreeHead) -> None:
    """The recomputed head must be the one the signed checkpoint commits to."""
    if root != checkpoint.root:
        raise VerifyError(
            f"the root of entries 0..{checkpoint.size - 1} is {root.hex()}, but the signed "
            f"checkpoint says {checkpoint.root.hex()}: the log was rewritten",
            reason="consistency",
        )
