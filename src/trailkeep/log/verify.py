"""Offline verification: entries against their leaf hashes, roots against signed checkpoints.

Nothing here trusts the server: each entry's leaf hash is recomputed from its content, seqs
must run 0, 1, 2, … with no gap, the tree head is rebuilt from the leaves, and the checkpoint's
signature is checked with a key the user holds. The first problem found is reported with the
seq it concerns.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from trailkeep.log import jcs, merkle
from trailkeep.log.notes import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from trailkeep.log.tiles import TILE_HEIGHT


class VerifyError(Exception):
    """Verification failed; ``seq`` is the first entry concerned, when there is one."""

    def __init__(self, message: str, seq: int | None = None) -> None:
        super().__init__(message if seq is None else f"seq {seq}: {message}")
        self.detail, self.seq = message, seq


@dataclass(frozen=True, slots=True)
class Report:
    """A clean verification: how many entries, how many erased, and the verified root."""

    size: int
    root: bytes
    erased: int
    checkpoint: Checkpoint | None
    beyond_checkpoint: int = 0


_SUFFIX_AT = -(len(b',"leaf_hash":"') + 2 * merkle.HASH_SIZE + len(b'"}'))


def _fast_leaf(seq: int, line: bytes, app_id: str | None) -> bytes | None:
    """The leaf of a line exactly as the server writes it, or None (then take the slow path).

    A stored entry is its canonical bytes with ``,"leaf_hash":"…"`` spliced in before the last
    brace, so hashing the bytes without that splice is the full check: if they hash to the
    leaf, they are the committed bytes, and JCS of their parse is those same bytes again. The
    seq and app checks only let the slow path word the error; the tree root is what binds.
    """
    if line[_SUFFIX_AT : _SUFFIX_AT + 14] != b',"leaf_hash":"' or line[-2:] != b'"}':
        return None
    try:
        leaf = binascii.unhexlify(line[_SUFFIX_AT + 14 : -2])
    except (binascii.Error, ValueError):
        return None
    digest = hashlib.sha256(b"\x00")
    digest.update(memoryview(line)[:_SUFFIX_AT])  # no copy of the entry
    digest.update(b"}")
    if digest.digest() != leaf:
        return None
    # The last `,"seq":` is the top-level one: only `target` and `time` follow it.
    at = line.rfind(b',"seq":', 0, _SUFFIX_AT) + 7
    if line[at : line.find(b",", at)] != b"%d" % seq:
        return None
    if app_id is not None and line.find(b',"app_id":"%s","context":' % app_id.encode()) < 0:
        return None
    return leaf


def leaf_of(seq: int, line: bytes | str, app_id: str | None) -> tuple[bytes, bool]:
    """The leaf hash an exported line commits to, recomputed; (hash, was it an erased stub)."""
    raw = line.encode() if isinstance(line, str) else line
    fast = _fast_leaf(seq, raw.rstrip(b"\r\n"), app_id)
    if fast is not None:
        return fast, False
    try:
        entry: Any = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise VerifyError(f"not a JSON entry ({exc})", seq) from None
    if not isinstance(entry, dict):
        raise VerifyError("not a JSON object", seq)
    found = entry.get("seq")
    if found != seq:
        if isinstance(found, int) and found > seq:
            raise VerifyError(f"missing: the next entry present is seq {found}", seq)
        raise VerifyError(f"out of order: found seq {found!r} where {seq} belongs", seq)
    recorded = entry.pop("leaf_hash", None)
    try:
        leaf = bytes.fromhex(recorded) if isinstance(recorded, str) else b""
    except ValueError:
        leaf = b""
    if len(leaf) != merkle.HASH_SIZE:
        raise VerifyError("leaf_hash is missing or not 32 bytes of hex", seq)
    if entry.get("erased") is True:
        if set(entry) != {"seq", "erased"}:
            raise VerifyError("an erased stub may hold only seq, erased and leaf_hash", seq)
        return leaf, True
    if app_id is not None and entry.get("app_id") != app_id:
        raise VerifyError(f"belongs to app {entry.get('app_id')!r}, not {app_id!r}", seq)
    try:
        computed = merkle.hash_leaf(jcs.canonical(entry))
    except jcs.CanonicalizationError as exc:
        raise VerifyError(f"content cannot be canonicalised: {exc}", seq) from None
    if computed != leaf:
        raise VerifyError(
            f"content does not match its leaf_hash (recorded {leaf.hex()}, "
            f"content hashes to {computed.hex()})",
            seq,
        )
    return leaf, False


def verify_entries(
    lines: Iterable[bytes | str],
    checkpoint: Checkpoint | None,
    *,
    app_id: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Check exported entries (one JSON per line, seq order) and their root at the checkpoint."""
    tree = merkle.TreeBuilder()
    erased = 0
    root_at_checkpoint: bytes | None = (
        merkle.EMPTY_ROOT if checkpoint and not checkpoint.size else None
    )
    for seq, line in enumerate(lines):
        if not line.strip():
            raise VerifyError("blank line in the export", seq)
        leaf, stub = leaf_of(seq, line, app_id)
        erased += stub
        tree.append(leaf)
        if checkpoint is not None and tree.size == checkpoint.size:
            root_at_checkpoint = tree.root()
        if progress is not None and seq % 4096 == 4095:
            progress(4096)
    if progress is not None:
        progress(tree.size % 4096)
    if checkpoint is None:
        return Report(tree.size, tree.root(), erased, None)
    if tree.size < checkpoint.size:
        raise VerifyError(
            f"the export ends after {tree.size} entries, but the checkpoint covers "
            f"{checkpoint.size}: entries {tree.size}..{checkpoint.size - 1} are missing",
            tree.size,
        )
    assert root_at_checkpoint is not None
    check_head(root_at_checkpoint, checkpoint)
    return Report(checkpoint.size, checkpoint.root, erased, checkpoint, tree.size - checkpoint.size)


def open_signed(note: str, verifier: NoteVerifier, what: str) -> Checkpoint:
    """Check a signed checkpoint's signature and parse it; ``VerifyError`` naming ``what``."""
    try:
        return open_checkpoint(note, verifier)
    except NoteError as exc:
        raise VerifyError(f"{what}: {exc}") from None


def app_of(checkpoint: Checkpoint) -> str:
    """The app id at the end of a checkpoint's origin line (``<origin>/<app_id>``)."""
    return checkpoint.origin.rsplit("/", 1)[-1]


def verify_consistency(old: Checkpoint, new: Checkpoint, proof: list[bytes]) -> None:
    """Check that the older checkpoint's tree is a prefix of the newer one's."""
    if old.origin != new.origin:
        raise VerifyError(f"the checkpoints are of different logs: {old.origin} vs {new.origin}")
    if old.size > new.size:
        raise VerifyError(f"the old checkpoint ({old.size}) is larger than the new ({new.size})")
    if old.size == 0:
        return
    try:
        merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
    except merkle.ProofError as exc:
        raise VerifyError(
            f"checkpoint {old.size} is not consistent with checkpoint {new.size}: {exc}"
        ) from None


NodeFetch = Callable[[Sequence[merkle.NodeId]], Mapping[merkle.NodeId, bytes]]


class StoredTree:
    """A streaming tree that also checks every complete interior node the database stores.

    The leaves are hashed up once: the same pass yields the head and checks the stored nodes
    that proofs are served from.
    """

    def __init__(self, fetch: NodeFetch, batch: int = 4096, offset: int = 0) -> None:
        """Check nodes through ``fetch``; the first leaf is leaf ``offset`` of the log.

        A nonzero ``offset`` must be a multiple of a power of two at least as large as the
        number of leaves taken, so that every node completed here lies inside them.
        """
        self._fetch, self._batch, self._size, self._offset = fetch, batch, 0, offset
        self._frontier: list[bytes] = []
        self._leaves: list[bytes] = []

    @property
    def size(self) -> int:
        """Leaves taken so far."""
        return self._size + len(self._leaves)

    def append(self, leaf_hash: bytes) -> None:
        """Take the next leaf; check a batch of interior nodes once it is full."""
        self._leaves.append(leaf_hash)
        if len(self._leaves) >= self._batch:
            self.flush()

    def root(self) -> bytes:
        """The tree head over the leaves taken so far (their nodes checked first)."""
        self.flush()
        return merkle.root_from_frontier(self._frontier)

    def flush(self) -> None:
        """Check the interior nodes that the leaves taken so far complete."""
        if not self._leaves:
            return
        written, self._frontier = merkle.append_leaves(self._size, self._frontier, self._leaves)
        self._size += len(self._leaves)
        self._leaves = []
        offset = self._offset
        check_stored(self._fetch, {(lv, i + (offset >> lv)): h for (lv, i), h in written if lv})


def check_stored(fetch: NodeFetch, computed: Mapping[merkle.NodeId, bytes]) -> None:
    """Compare recomputed interior nodes with the stored ones; name the earliest that differs."""
    # The database stores the tile levels' hashes and computes every other node from them:
    # comparing those would only hash the same leaves twice.
    computed = {node: h for node, h in computed.items() if node[0] % TILE_HEIGHT == 0}
    if not computed:
        return
    stored = fetch(list(computed))
    bad = [(i << lv, lv, i) for (lv, i), h in computed.items() if stored.get((lv, i)) != h]
    if bad:
        first, level, index = min(bad)
        raise VerifyError(
            f"the stored tree node at level {level}, index {index} (over entries "
            f"{first}..{first + (1 << level) - 1}) differs from the hash of its leaves",
            first,
        )


def check_head(root: bytes, checkpoint: Checkpoint) -> None:
    """The recomputed head must be the one the signed checkpoint commits to."""
    if root != checkpoint.root:
        raise VerifyError(
            f"the root of entries 0..{checkpoint.size - 1} is {root.hex()}, but the signed "
            f"checkpoint says {checkpoint.root.hex()}: the log was rewritten"
        )


def local_lines(
    chunks: Iterable[Sequence[tuple[int, bytes, bytes | None]]], purge_horizon: int, first: int = 0
) -> Iterable[bytes]:
    """Entries of a local database as export lines, each checked against the tree's leaf.

    ``chunks`` hold (seq, the tree's leaf hash, the stored entry or None) in seq order, from
    seq ``first`` on.
    """
    expected = first
    for rows in chunks:
        for seq, leaf, entry in rows:
            if seq != expected:
                raise VerifyError(
                    f"missing: the tree has no leaf {expected} (next is {seq})", expected
                )
            expected += 1
            if entry is None:
                if seq >= purge_horizon:
                    raise VerifyError("missing: the entry was deleted but was never purged", seq)
                yield orjson.dumps({"seq": seq, "erased": True, "leaf_hash": bytes(leaf).hex()})
                continue
            # The stored leaf must be the one the entry records (and, in verify_entries, the
            # hash of its content): a row rewritten with a matching leaf_hash breaks the root.
            if entry[-66:-2] != bytes(leaf).hex().encode():
                recorded = bytes(entry[-66:-2]).decode(errors="replace")
                raise VerifyError(
                    f"the entry's leaf_hash {recorded} differs from the tree's leaf "
                    f"{bytes(leaf).hex()}",
                    seq,
                )
            yield bytes(entry)
