"""Tests for trailkeep.log.merkle: RFC 9162 trees and proofs, against a naive reference."""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.trees import root_of
from trailkeep.log.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    NodeId,
    ProofError,
    TreeBuilder,
    append_leaves,
    consistency_proof,
    consistency_proof_nodes,
    frontier,
    hash_children,
    hash_leaf,
    inclusion_proof,
    inclusion_proof_nodes,
    left_subtrees,
    range_nodes,
    root_from_frontier,
    verify_consistency,
    verify_inclusion,
)

#: The RFC 6962 test vectors published with the Certificate Transparency reference code.
VECTORS = Path(__file__).resolve().parents[1] / "data" / "rfc6962.json"
FAST = settings(deadline=None, max_examples=150)

# --- A naive RFC 9162 implementation, straight from §2.1.1-2.1.4 ---------------------------

N = 300
DATA = [b"entry %d" % i for i in range(N)]


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@functools.cache
def naive_mth(lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) over DATA."""
    n = hi - lo
    if n == 0:
        return _sha256(b"")
    if n == 1:
        return _sha256(b"\x00" + DATA[lo])
    k = _k(n)
    return _sha256(b"\x01" + naive_mth(lo, lo + k) + naive_mth(lo + k, hi))


def naive_path(m: int, lo: int, hi: int) -> list[bytes]:
    """PATH(m, D[lo:hi])."""
    n = hi - lo
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*naive_path(m, lo, lo + k), naive_mth(lo + k, hi)]
    return [*naive_path(m - k, lo + k, hi), naive_mth(lo, lo + k)]


def naive_subproof(m: int, lo: int, hi: int, b: bool) -> list[bytes]:
    """SUBPROOF(m, D[lo:hi], b)."""
    n = hi - lo
    if m == n:
        return [] if b else [naive_mth(lo, hi)]
    k = _k(n)
    if m <= k:
        return [*naive_subproof(m, lo, lo + k, b), naive_mth(lo + k, hi)]
    return [*naive_subproof(m - k, lo + k, hi, False), naive_mth(lo, lo + k)]


def naive_root_of_hashes(leaves: list[bytes]) -> bytes:
    """MTH over leaves that are already hashed."""
    if not leaves:
        return _sha256(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = _k(len(leaves))
    return _sha256(b"\x01" + naive_root_of_hashes(leaves[:k]) + naive_root_of_hashes(leaves[k:]))


def path_shape(m: int, n: int) -> tuple[str, ...]:
    """Which side each PATH(m, D[n]) entry sits on: all a verifier's computation depends on."""
    if n == 1:
        return ()
    k = _k(n)
    return (*path_shape(m, k), "R") if m < k else (*path_shape(m - k, n - k), "L")


def subproof_shape(m: int, n: int, b: bool = True) -> tuple[str, ...]:
    """Same for SUBPROOF(m, D[n], b): a seed, left siblings (in both trees), right siblings."""
    if m == n:
        return () if b else ("seed",)
    k = _k(n)
    if m <= k:
        return (*subproof_shape(m, k, b), "R")
    return (*subproof_shape(m - k, n - k, False), "L")


def _complete(node: NodeId, size: int) -> bool:
    level, index = node
    return (index + 1) << level <= size


LEAF_HASHES = [naive_mth(i, i + 1) for i in range(N)]
NODES: dict[NodeId, bytes] = {
    (level, index): naive_mth(index << level, (index + 1) << level)
    for level in range(N.bit_length())
    for index in range(N >> level)
}


def _flip(data: bytes, position: int, mask: int) -> bytes:
    out = bytearray(data)
    out[position % len(out)] ^= mask
    return bytes(out)


# --- Hashing, roots, frontier, appends -----------------------------------------------------


def test_hashing_primitives() -> None:
    assert HASH_SIZE == 32
    assert _sha256(b"") == EMPTY_ROOT
    assert hash_leaf(DATA[7]) == LEAF_HASHES[7]
    assert hash_children(LEAF_HASHES[0], LEAF_HASHES[1]) == naive_mth(0, 2)
    assert root_of([]) == EMPTY_ROOT
    assert root_from_frontier([]) == EMPTY_ROOT
    assert frontier(0) == []


def test_roots_frontiers_and_builder_match_naive_for_every_size() -> None:
    builder = TreeBuilder()
    for size in range(N + 1):
        want = naive_mth(0, size)
        assert builder.size == size
        assert builder.root() == want
        assert root_of(LEAF_HASHES[:size]) == want
        ids = frontier(size)
        assert ids == range_nodes(0, size)
        assert [level for level, _ in ids] == sorted((lv for lv, _ in ids), reverse=True)
        assert sum(1 << level for level, _ in ids) == size
        assert root_from_frontier([NODES[n] for n in ids]) == want
        if size < N:
            builder.append(LEAF_HASHES[size])


@FAST
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=80))
def test_tree_builder_equals_root_of(leaves: list[bytes]) -> None:
    builder = TreeBuilder()
    for leaf in leaves:
        builder.append(leaf)
    assert builder.size == len(leaves)
    assert builder.root() == root_of(leaves) == naive_root_of_hashes(leaves)


@FAST
@given(st.lists(st.integers(0, 70), max_size=12))
def test_append_leaves_in_any_chunking_writes_exactly_the_complete_nodes(
    chunks: list[int],
) -> None:
    size, written = 0, {}
    frontier_hashes: list[bytes] = []
    for chunk in [*chunks, N]:
        chunk = min(chunk, N - size)
        new, frontier_hashes = append_leaves(size, frontier_hashes, LEAF_HASHES[size:][:chunk])
        for node, h in new:
            assert node not in written
            written[node] = h
        size += chunk
        assert frontier_hashes == [NODES[n] for n in frontier(size)]
        assert root_from_frontier(frontier_hashes) == naive_mth(0, size)
        assert written == {n: h for n, h in NODES.items() if _complete(n, size)}
    assert size == N


def test_range_nodes_for_every_small_range() -> None:
    for start in range(70):
        for end in range(start, 70):
            check_range_nodes(start, end)


@FAST
@given(st.integers(0, 5000), st.integers(0, 5000))
def test_range_nodes_are_aligned_complete_and_contiguous(a: int, b: int) -> None:
    check_range_nodes(min(a, b), max(a, b))


def check_range_nodes(start: int, end: int) -> None:
    cursor = start
    nodes = range_nodes(start, end)
    for level, index in nodes:
        assert index << level == cursor
        cursor += 1 << level
    assert cursor == end
    # Maximal: no two neighbours are siblings that should have been one node.
    for (l1, i1), (l2, i2) in itertools.pairwise(nodes):
        assert not (l1 == l2 and i1 % 2 == 0 and i2 == i1 + 1)


# --- Proofs against the naive implementation, every pair of sizes up to N ------------------


def test_inclusion_proofs_for_every_index_and_size() -> None:
    for size in range(1, N + 1):
        root = naive_mth(0, size)
        for index in range(size):
            ids = inclusion_proof_nodes(index, size)
            assert len(ids) == len(set(ids)) <= 2 * size.bit_length()
            assert all(_complete(n, size) for n in ids)
            proof = inclusion_proof(index, size, {n: NODES[n] for n in ids})
            assert proof == naive_path(index, 0, size)
            verify_inclusion(LEAF_HASHES[index], index, size, proof, root)


def test_consistency_proofs_for_every_pair_of_sizes() -> None:
    for new in range(1, N + 1):
        new_root = naive_mth(0, new)
        for old in range(1, new + 1):
            ids = consistency_proof_nodes(old, new)
            assert len(ids) == len(set(ids)) <= 3 * new.bit_length()
            assert all(_complete(n, new) for n in ids)
            proof = consistency_proof(old, new, {n: NODES[n] for n in ids})
            assert proof == naive_subproof(old, 0, new, True)
            verify_consistency(old, new, naive_mth(0, old), new_root, proof)


def test_equal_sizes_have_an_empty_consistency_proof() -> None:
    root = naive_mth(0, 9)
    assert consistency_proof_nodes(9, 9) == []
    assert consistency_proof(9, 9, {}) == []
    verify_consistency(9, 9, root, root, [])
    with pytest.raises(ProofError):
        verify_consistency(9, 9, root, naive_mth(0, 8), [])
    with pytest.raises(ProofError):
        verify_consistency(9, 9, root, root, [root])


def test_verification_binds_the_path_shape_not_the_size() -> None:
    # An RFC 9162 verifier only sees the path's shape: index 0 of 3 and of 4 look the same.
    # Sizes are bound to roots by the signed checkpoint, not by the proof.
    proof = inclusion_proof(0, 3, NODES)
    verify_inclusion(LEAF_HASHES[0], 0, 4, proof, naive_mth(0, 3))


def test_a_proof_is_accepted_for_another_size_only_with_the_same_shape() -> None:
    # Covers proofs too short or too long for the claimed size, whose partial fold equals an
    # interior node: the claimed size must be used up exactly, not just the root matched.
    for index in range(48):
        for size in range(index + 1, 49):
            proof, root = inclusion_proof(index, size, NODES), naive_mth(0, size)
            for other in range(index + 1, 49):
                if path_shape(index, other) == path_shape(index, size):
                    verify_inclusion(LEAF_HASHES[index], index, other, proof, root)
                else:
                    with pytest.raises(ProofError):
                        verify_inclusion(LEAF_HASHES[index], index, other, proof, root)
    for old in range(1, 48):
        for new in range(old + 1, 49):
            proof, roots = (
                consistency_proof(old, new, NODES),
                (naive_mth(0, old), naive_mth(0, new)),
            )
            for other in range(old + 1, 49):
                if subproof_shape(old, other) == subproof_shape(old, new):
                    verify_consistency(old, other, *roots, proof)
                else:
                    with pytest.raises(ProofError):
                        verify_consistency(old, other, *roots, proof)


@st.composite
def inclusion_case(draw: st.DrawFn, min_size: int = 1) -> tuple[int, int, list[bytes]]:
    size = draw(st.integers(min_size, N))
    index = draw(st.integers(0, size - 1))
    return index, size, inclusion_proof(index, size, NODES)


@st.composite
def consistency_case(draw: st.DrawFn) -> tuple[int, int, list[bytes]]:
    new = draw(st.integers(2, N))
    old = draw(st.integers(1, new - 1))
    return old, new, consistency_proof(old, new, NODES)


@FAST
@given(inclusion_case(min_size=2), st.integers(0, 10**6), st.integers(1, 255))
def test_inclusion_rejects_any_changed_proof_byte(
    case: tuple[int, int, list[bytes]], position: int, mask: int
) -> None:
    index, size, proof = case
    element = position % len(proof)
    proof[element] = _flip(proof[element], position // len(proof), mask)
    with pytest.raises(ProofError):
        verify_inclusion(LEAF_HASHES[index], index, size, proof, naive_mth(0, size))


@FAST
@given(inclusion_case(), st.integers(0, 10**6), st.booleans())
def test_inclusion_rejects_a_dropped_or_extra_element(
    case: tuple[int, int, list[bytes]], position: int, drop: bool
) -> None:
    index, size, proof = case
    if drop and proof:
        del proof[position % len(proof)]
    else:
        proof.insert(position % (len(proof) + 1), NODES[(0, position % N)])
    with pytest.raises(ProofError):
        verify_inclusion(LEAF_HASHES[index], index, size, proof, naive_mth(0, size))


def _nearby(data: st.DataObject, value: int) -> int:
    return data.draw(st.one_of(st.integers(-2, N + 2), st.integers(value - 3, value + 3)))


@FAST
@given(inclusion_case(), st.data())
def test_inclusion_with_another_index_or_size(
    case: tuple[int, int, list[bytes]], data: st.DataObject
) -> None:
    # Verification passes exactly when the RFC 9162 path has the same shape (see above).
    index, size, proof = case
    other_index, other_size = _nearby(data, index), _nearby(data, size)
    leaf, root = LEAF_HASHES[index], naive_mth(0, size)
    if 0 <= other_index < other_size and path_shape(other_index, other_size) == path_shape(
        index, size
    ):
        event("same shape")
        verify_inclusion(leaf, other_index, other_size, proof, root)
        assert other_size != size or other_index == index
    else:
        with pytest.raises(ProofError):
            verify_inclusion(leaf, other_index, other_size, proof, root)


@FAST
@given(inclusion_case(), st.integers(0, 31), st.integers(1, 255), st.booleans())
def test_inclusion_rejects_a_changed_leaf_or_root(
    case: tuple[int, int, list[bytes]], position: int, mask: int, change_root: bool
) -> None:
    index, size, proof = case
    leaf, root = LEAF_HASHES[index], naive_mth(0, size)
    if change_root:
        root = _flip(root, position, mask)
    else:
        leaf = _flip(leaf, position, mask)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, proof, root)


@FAST
@given(consistency_case(), st.integers(0, 10**6), st.integers(1, 255))
def test_consistency_rejects_any_changed_proof_byte(
    case: tuple[int, int, list[bytes]], position: int, mask: int
) -> None:
    old, new, proof = case
    element = position % len(proof)
    proof[element] = _flip(proof[element], position // len(proof), mask)
    with pytest.raises(ProofError):
        verify_consistency(old, new, naive_mth(0, old), naive_mth(0, new), proof)


@FAST
@given(consistency_case(), st.integers(0, 10**6), st.booleans())
def test_consistency_rejects_a_dropped_or_extra_element(
    case: tuple[int, int, list[bytes]], position: int, drop: bool
) -> None:
    old, new, proof = case
    if drop:
        del proof[position % len(proof)]
    else:
        proof.insert(position % (len(proof) + 1), NODES[(0, position % N)])
    with pytest.raises(ProofError):
        verify_consistency(old, new, naive_mth(0, old), naive_mth(0, new), proof)


@FAST
@given(consistency_case(), st.data())
def test_consistency_with_other_sizes(
    case: tuple[int, int, list[bytes]], data: st.DataObject
) -> None:
    old, new, proof = case
    other_old, other_new = _nearby(data, old), _nearby(data, new)
    old_root, new_root = naive_mth(0, old), naive_mth(0, new)
    if 0 < other_old <= other_new and subproof_shape(other_old, other_new) == subproof_shape(
        old, new
    ):
        event("same shape")
        verify_consistency(other_old, other_new, old_root, new_root, proof)
    else:
        with pytest.raises(ProofError):
            verify_consistency(other_old, other_new, old_root, new_root, proof)


@FAST
@given(consistency_case(), st.integers(0, 31), st.integers(1, 255), st.booleans())
def test_consistency_rejects_a_changed_root(
    case: tuple[int, int, list[bytes]], position: int, mask: int, change_old: bool
) -> None:
    old, new, proof = case
    old_root, new_root = naive_mth(0, old), naive_mth(0, new)
    if change_old:
        old_root = _flip(old_root, position, mask)
    else:
        new_root = _flip(new_root, position, mask)
    with pytest.raises(ProofError):
        verify_consistency(old, new, old_root, new_root, proof)


@pytest.mark.parametrize(
    "call",
    [
        lambda: frontier(-1),
        lambda: range_nodes(5, 4),
        lambda: range_nodes(-1, 2),
        lambda: inclusion_proof_nodes(-1, 5),
        lambda: inclusion_proof_nodes(5, 5),
        lambda: inclusion_proof_nodes(0, 0),
        lambda: consistency_proof_nodes(0, 5),
        lambda: consistency_proof_nodes(0, 0),
        lambda: consistency_proof_nodes(6, 5),
        lambda: consistency_proof_nodes(-1, 3),
        lambda: inclusion_proof(3, 7, {}),
        lambda: inclusion_proof(3, 7, {n: NODES[n] for n in inclusion_proof_nodes(3, 7)[1:]}),
        lambda: consistency_proof(3, 7, {}),
        lambda: append_leaves(3, [LEAF_HASHES[0]], [LEAF_HASHES[1]]),
        lambda: append_leaves(-1, [], []),
        lambda: append_leaves(0, [], [b"short"]),
        lambda: append_leaves(1, [b"\x00" * 33], []),
        lambda: TreeBuilder().append(b"\x00" * 31),
        lambda: verify_inclusion(LEAF_HASHES[0], 1, 1, [], LEAF_HASHES[0]),
        lambda: verify_inclusion(LEAF_HASHES[0], -1, 1, [], LEAF_HASHES[0]),
        lambda: verify_inclusion(b"x", 0, 1, [], b"x"),
        lambda: verify_inclusion(LEAF_HASHES[0], 0, 2, [b"\x00" * 31], naive_mth(0, 2)),
        lambda: verify_consistency(0, 3, EMPTY_ROOT, naive_mth(0, 3), []),
        lambda: verify_consistency(4, 3, naive_mth(0, 4), naive_mth(0, 3), []),
        lambda: verify_consistency(2, 3, naive_mth(0, 2), naive_mth(0, 3), []),
        lambda: verify_consistency(2, 3, b"", naive_mth(0, 3), [LEAF_HASHES[2]]),
    ],
)
def test_bad_arguments_raise_proof_error(call: object) -> None:
    assert callable(call)
    with pytest.raises(ProofError):
        call()


def test_published_rfc6962_vectors() -> None:
    vectors = json.loads(VECTORS.read_text())
    leaves = [hash_leaf(bytes.fromhex(x)) for x in vectors["leaf_inputs_hex"]]
    roots = [bytes.fromhex(x) for x in vectors["roots_by_size_hex"]]
    assert len(roots) == len(leaves) + 1
    assert vectors["inclusion"]
    assert vectors["consistency"]
    for size, root in enumerate(roots):
        assert root_of(leaves[:size]) == root
    new, _ = append_leaves(0, [], leaves)
    nodes = dict(new)
    for case in vectors["inclusion"]:
        index, size = case["index"], case["size"]
        path = [bytes.fromhex(x) for x in case["path"]]
        assert inclusion_proof(index, size, nodes) == path
        verify_inclusion(leaves[index], index, size, path, roots[size])
    for case in vectors["consistency"]:
        old, new_size = case["from"], case["to"]
        path = [bytes.fromhex(x) for x in case["path"]]
        assert consistency_proof(old, new_size, nodes) == path
        verify_consistency(old, new_size, roots[old], roots[new_size], path)


def test_left_subtrees_resume_a_tree_from_any_leaf() -> None:
    """An export from seq i verifies with the left siblings of leaf i's inclusion proof."""
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(37)]
    nodes = dict(append_leaves(0, [], leaves)[0])
    for index, size in itertools.combinations(range(38), 2):
        path = inclusion_proof(index, size, nodes)
        left = left_subtrees(index, size, path)
        assert left == [nodes[node] for node in frontier(index)]
        tree = TreeBuilder.resume(index, left)
        for leaf in leaves[index:size]:
            tree.append(leaf)
        assert tree.root() == root_of(leaves[:size])
    with pytest.raises(ProofError):
        TreeBuilder.resume(3, leaves[:1])  # a tree of 3 has two frontier hashes
    with pytest.raises(ProofError):
        left_subtrees(5, 9, leaves[:1])
