"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing and proofs.

Pure functions only: no file, network or database I/O. Node ``(level, index)`` covers leaves
``[index * 2**level, (index + 1) * 2**level)``. Storage keeps only complete nodes, so any proof for
any tree size needs O(log n) point lookups, all known up front from ``*_proof_nodes``; the proof
entries that are roots of incomplete (right-edge) subtrees are folded from their complete pieces.

Checkpoints and signed notes live in ``trailkeep.log.notes``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
NodeId = tuple[int, int]

_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof does not verify, or its arguments are out of range."""


def hash_leaf(data: bytes) -> bytes:
    """Return the RFC 9162 leaf hash SHA-256(0x00 || data)."""
    return _sha256(b"\x00" + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def _check_hashes(hashes: Sequence[bytes], what: str) -> None:
    for h in hashes:
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise ProofError(f"{what}: every hash must be {HASH_SIZE} bytes")


def _split(n: int) -> int:
    """Return the largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def frontier(size: int) -> list[NodeId]:
    """Return the complete subtrees that make up [0, size), largest (leftmost) first."""
    if size < 0:
        raise ProofError("tree size must be non-negative")
    return range_nodes(0, size)


def root_from_frontier(hashes: Sequence[bytes]) -> bytes:
    """Fold frontier hashes (in frontier() order) into the tree head; EMPTY_ROOT if empty."""
    if not hashes:
        return EMPTY_ROOT
    # MTH splits at the largest power of two, so the head is a right fold of the pieces.
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = _sha256(b"\x01" + h + acc).digest()
    return acc


def append_leaves(
    size: int, frontier_hashes: Sequence[bytes], leaf_hashes: Sequence[bytes]
) -> tuple[list[tuple[NodeId, bytes]], list[bytes]]:
    """Append leaf hashes to a tree of `size` leaves; return (new nodes, new frontier hashes)."""
    if size < 0 or len(frontier_hashes) != size.bit_count():
        raise ProofError(f"a tree of size {size} has {max(size, 0).bit_count()} frontier hashes")
    _check_hashes(frontier_hashes, "frontier")
    _check_hashes(leaf_hashes, "leaves")
    stack = list(frontier_hashes)
    written: list[tuple[NodeId, bytes]] = []
    sha = _sha256
    n = size
    for h in leaf_hashes:
        written.append(((0, n), h))
        level, index = 0, n
        # The trailing one-bits of n are exactly the frontier pieces this leaf completes.
        while index & 1:
            h = sha(b"\x01" + stack.pop() + h).digest()
            level += 1
            index >>= 1
            written.append(((level, index), h))
        stack.append(h)
        n += 1
    return written, stack


def perfect_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The root of a complete subtree: ``2**k`` leaf hashes (k ≥ 0), hashed level by level.

    The same as appending them to a TreeBuilder, in about half the time: one comprehension per
    level instead of Python's loop per leaf.
    """
    level = list(leaf_hashes)
    if not level or len(level) & (len(level) - 1):
        raise ProofError(f"a complete subtree has 2**k leaves, not {len(level)}")
    while len(level) > 1:
        pairs = zip(level[::2], level[1::2], strict=True)
        level = [_sha256(b"\x01" + left + right).digest() for left, right in pairs]
    return level[0]


class TreeBuilder:
    """Streaming tree head over leaf hashes in O(log n) memory."""

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        """Start an empty tree."""
        self._size = 0
        self._stack: list[bytes] = []

    @property
    def size(self) -> int:
        """Return the number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash: bytes) -> None:
        """Append one leaf hash."""
        if len(leaf_hash) != HASH_SIZE:
            raise ProofError(f"leaf hash must be {HASH_SIZE} bytes")
        h, n, stack = leaf_hash, self._size, self._stack
        while n & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            n >>= 1
        stack.append(h)
        self._size += 1

    def append_subtree(self, level: int, subtree_hash: bytes) -> None:
        """Append a complete subtree of ``2**level`` leaves by its hash (``size`` must be aligned).

        The same as appending its leaves one by one: how spans checked apart are joined.
        """
        if len(subtree_hash) != HASH_SIZE:
            raise ProofError(f"subtree hash must be {HASH_SIZE} bytes")
        if level < 0 or self._size & ((1 << level) - 1):
            raise ProofError(f"a subtree of 2**{level} leaves cannot start at leaf {self._size}")
        h, n, stack = subtree_hash, self._size >> level, self._stack
        while n & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            n >>= 1
        stack.append(h)
        self._size += 1 << level

    def frontier(self) -> list[bytes]:
        """The hashes of the complete subtrees of the leaves so far, largest first."""
        return list(self._stack)

    def root(self) -> bytes:
        """Return the tree head of the leaves appended so far."""
        return root_from_frontier(self._stack)

    @classmethod
    def resume(cls, size: int, frontier_hashes: Sequence[bytes]) -> TreeBuilder:
        """Continue a tree of ``size`` leaves known only by its frontier (see frontier())."""
        if size < 0 or len(frontier_hashes) != size.bit_count():
            raise ProofError(f"a tree of size {max(size, 0)} has {max(size, 0).bit_count()} "
                             "frontier hashes")  # fmt: skip
        _check_hashes(frontier_hashes, "frontier")
        builder = cls()
        builder._size, builder._stack = size, list(frontier_hashes)
        return builder


def range_nodes(start: int, end: int) -> list[NodeId]:
    """Decompose [start, end) into maximal complete aligned subtrees, left to right."""
    if not 0 <= start <= end:
        raise ProofError(f"bad range [{start}, {end})")
    out: list[NodeId] = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        out.append((level, start >> level))
        start += 1 << level
    return out


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    out: list[tuple[int, int]] = []
    lo, n, m = 0, size, index
    while n > 1:  # RFC 9162 PATH(m, D[lo:lo+n]), unrolled top-down
        k = _split(n)
        if m < k:
            out.append((lo + k, lo + n))
            n = k
        else:
            out.append((lo, lo + k))
            lo, m, n = lo + k, m - k, n - k
    out.reverse()
    return out


def _consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    if not 0 < old <= new:
        raise ProofError(f"no consistency proof from size {old} to size {new}")
    out: list[tuple[int, int]] = []
    lo, n, m, whole = 0, new, old, True
    while m != n:  # RFC 9162 SUBPROOF(m, D[lo:lo+n], whole), unrolled top-down
        k = _split(n)
        if m <= k:
            out.append((lo + k, lo + n))
            n = k
        else:
            out.append((lo, lo + k))
            lo, m, n, whole = lo + k, m - k, n - k, False
    if not whole:
        out.append((lo, lo + n))
    out.reverse()
    return out


def _nodes_for(ranges: list[tuple[int, int]]) -> list[NodeId]:
    return [node for a, b in ranges for node in range_nodes(a, b)]


def _assemble(ranges: list[tuple[int, int]], nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    try:
        return [root_from_frontier([nodes[n] for n in range_nodes(a, b)]) for a, b in ranges]
    except KeyError as exc:
        raise ProofError(f"missing node {exc.args[0]!r}") from None


def left_subtrees(index: int, size: int, path: Sequence[bytes]) -> list[bytes]:
    """The frontier hashes of [0, index) (frontier() order), taken from leaf ``index``'s proof.

    The audit path's left siblings are exactly the complete subtrees left of the leaf; they are
    unchecked here, and bind only once a tree resumed from them reaches a signed root.
    """
    ranges = _inclusion_ranges(index, size)
    if len(path) != len(ranges):
        raise ProofError(f"an inclusion proof of leaf {index} in tree {size} has {len(ranges)} "
                         "hashes")  # fmt: skip
    _check_hashes(path, "proof")
    return [h for (_, end), h in zip(reversed(ranges), reversed(path), strict=True) if end <= index]


def inclusion_proof_nodes(index: int, size: int) -> list[NodeId]:
    """Return the stored nodes needed for the inclusion proof of leaf `index` in tree `size`."""
    return _nodes_for(_inclusion_ranges(index, size))


def consistency_proof_nodes(old: int, new: int) -> list[NodeId]:
    """Return the stored nodes needed for the consistency proof from tree `old` to tree `new`."""
    return _nodes_for(_consistency_ranges(old, new))


def inclusion_proof(index: int, size: int, nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    """Assemble the RFC 9162 inclusion proof from fetched node hashes."""
    return _assemble(_inclusion_ranges(index, size), nodes)


def consistency_proof(old: int, new: int, nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    """Assemble the RFC 9162 consistency proof from fetched node hashes."""
    return _assemble(_consistency_ranges(old, new), nodes)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an RFC 9162 §2.1.3.2 inclusion proof; raise ProofError if it fails."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    _check_hashes([leaf_hash, root, *proof], "inclusion proof")
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = hash_children(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    if r != root:
        raise ProofError("inclusion proof does not match the root")


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check an RFC 9162 §2.1.4.2 consistency proof; raise ProofError if it fails."""
    if not 0 < old <= new:
        raise ProofError(f"no consistency proof from size {old} to size {new}")
    _check_hashes([old_root, new_root, *proof], "consistency proof")
    if old == new:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("roots of equal tree sizes differ")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != old_root:
        raise ProofError("consistency proof does not match the old root")
    if sr != new_root:
        raise ProofError("consistency proof does not match the new root")
