"""A run of entries checked on its own (a span), and spans folded into one verified tree head.

A span ``[first, first + count)`` is summed up by the hashes of the maximal complete subtrees
that cover it (``merkle.range_nodes``), so spans checked apart, in other processes, fold into the
same root as the whole run checked in one pass: appending a complete subtree by its hash is
appending its leaves. A span is also cut at the checkpoint's size, so that the fold passes
through the tree head the checkpoint signs even when the entries go on beyond it.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import cast

from trailkeep.log import merkle
from trailkeep.log.notes import Checkpoint
from trailkeep.log.verify.entries import (
    Entry,
    Report,
    VerifyError,
    check_head,
    check_ledger,
    committed_leaf,
    fast_leaf,
    leaf_of,
)
from trailkeep.log.verify.ledger import ACCOUNTING_PREFIXES, Ledger

#: How many entries between two calls of a progress callback.
PROGRESS_STEP = 4096
#: The most leaves held before they are hashed into their subtree.
BLOCK = 1 << 12


@dataclass(frozen=True, slots=True)
class Span:
    """A checked run of entries: the subtrees that cover it, its stubs and records of erasure.

    ``parsed`` lists the offsets (from ``first``) of the entries whose leaf was not proved by
    their exact bytes, stubs included: only those differ from the server's canonical form, so
    anything derived from an entry's bytes must be checked again from its parse there.
    """

    first: int
    count: int
    nodes: tuple[bytes, ...]
    erased: int
    ledger: Ledger
    parsed: tuple[int, ...] = field(default=())


def _pieces(first: int, end: int, cuts: Sequence[int]) -> list[merkle.NodeId]:
    bounds = [first, *sorted(c for c in cuts if first < c < end), end]
    return [node for a, b in pairwise(bounds) for node in merkle.range_nodes(a, b)]


def _slow_leaf(
    seq: int, entry: Entry, app_id: str | None, ledger: Ledger
) -> tuple[bytes, bool, bool]:
    """(leaf, stub, proved by its exact bytes) of an entry the fast path did not take."""
    exact = False
    if isinstance(entry, Mapping):
        leaf, stub = leaf_of(seq, entry, app_id)
    else:
        if not entry.strip():
            raise VerifyError("blank line in the export", seq, "malformed")
        raw = entry.encode() if isinstance(entry, str) else entry
        fast = fast_leaf(seq, raw.rstrip(b"\r\n"), app_id)
        if fast is not None:
            leaf, stub, exact = fast, False, True
        else:
            leaf, stub = leaf_of(seq, raw, app_id)
    if stub:
        ledger.stub(seq)
    else:
        ledger.entry(entry.encode() if isinstance(entry, str) else entry)
    return leaf, stub, exact


def check_span(
    entries: Iterable[Entry],
    first: int = 0,
    *,
    app_id: str | None = None,
    cuts: Sequence[int] = (),
    progress: Callable[[int], None] | None = None,
    placed: Container[int] = (),
) -> Span:
    """Check entries (and stubs) in seq order from ``first``: each against its leaf hash.

    ``cuts``: sizes the fold must pass through (a checkpoint's); any number of entries may come.
    ``placed``: offsets (from ``first``) of entries the caller has already seen to hold their
    seq and ``app_id`` (``verify --export`` rebuilt them from columns it checked): an entry
    there in the server's form is only hashed. Those checks only word an error more exactly;
    the tree root is what binds an entry to its place.
    """
    ledger = Ledger()
    nodes: list[bytes] = []
    parsed: list[int] = []
    erased = since = 0
    seq = first
    # Subtrees are only known once the entries are counted: leaves gather in a builder until
    # the current one (the largest aligned run that still fits before the next cut) is full.
    cut_at = sorted(c for c in cuts if c > first)
    builder, want = merkle.TreeBuilder(), 0
    # Leaves wait in blocks of up to BLOCK (aligned, so each is a complete subtree) and are
    # hashed a level at a time: memory stays bounded, and Python loops once per level.
    pending: list[bytes] = []
    block = 0
    for entry in entries:
        if not want:
            limit = next((c for c in cut_at if c > seq), None)
            level = (seq & -seq).bit_length() - 1 if seq else 62
            if limit is not None:
                level = min(level, (limit - seq).bit_length() - 1)
            builder, want = merkle.TreeBuilder(), 1 << level
            block = min(want, BLOCK)
        # The server's own bytes first: the common case, checked by one hash and no parse.
        if not isinstance(entry, bytes):
            exact_leaf = None
        elif seq - first in placed:
            exact_leaf = committed_leaf(entry)
        else:
            exact_leaf = fast_leaf(seq, entry, app_id)
        if exact_leaf is not None:
            pending.append(exact_leaf)
            if cast(bytes, entry).startswith(ACCOUNTING_PREFIXES):
                ledger.entry(cast(bytes, entry))
        else:
            leaf, stub, exact = _slow_leaf(seq, entry, app_id, ledger)
            pending.append(leaf)
            erased += stub
            if not exact:
                parsed.append(seq - first)
        seq += 1
        if len(pending) == block:
            builder.append_subtree(block.bit_length() - 1, merkle.perfect_root(pending))
            pending = []
            if builder.size == want:
                nodes.append(builder.root())
                want = 0
        since += 1
        if progress is not None and since == PROGRESS_STEP:
            progress(since)
            since = 0
    if progress is not None and since:
        progress(since)
    # The run may stop inside a subtree: the builder's frontier (its complete subtrees, largest
    # first, at an aligned start) is then the rest of the range's decomposition.
    for leaf in pending:
        builder.append(leaf)
    if want:
        nodes.extend(builder.frontier())
    return Span(first, seq - first, tuple(nodes), erased, ledger, tuple(parsed))


def fold(
    spans: Iterable[Span],
    checkpoint: Checkpoint | None,
    *,
    first: int = 0,
    left: Sequence[bytes] = (),
    tail_proof: Sequence[bytes] | None = None,
) -> Report:
    """Join spans (in seq order, from ``first``) into the tree and check it against ``checkpoint``.

    An export that starts past seq 0 gives ``left``, the hashes of the complete subtrees of
    entries 0..first-1 (merkle.frontier order); one that ends before the checkpoint gives
    ``tail_proof``, the consistency proof from its own size to the checkpoint's.
    """
    try:
        tree = merkle.TreeBuilder.resume(first, left)
    except merkle.ProofError as exc:
        raise VerifyError(f"the subtrees left of seq {first}: {exc}", first, "malformed") from None
    ledger = Ledger()
    erased = 0
    at_checkpoint = tree.root() if checkpoint and checkpoint.size == first else None
    for span in spans:
        if span.first != tree.size:
            raise VerifyError(f"missing: entries {tree.size}..{span.first - 1}", tree.size,
                              "missing")  # fmt: skip
        for (level, _), node in zip(
            _pieces(span.first, span.first + span.count, _cut(checkpoint)), span.nodes, strict=True
        ):
            tree.append_subtree(level, node)
            if checkpoint is not None and tree.size == checkpoint.size:
                at_checkpoint = tree.root()
        ledger.merge(span.ledger)
        erased += span.erased
    check_ledger(ledger)
    if checkpoint is None:
        return Report(tree.size, tree.root(), erased, None)
    if tree.size < checkpoint.size:
        if tail_proof is not None:
            # The export stops short of the checkpoint: prove its tree a prefix of the signed one.
            # (Imported here: proofs.py builds on the entries module.)
            from trailkeep.log.verify.proofs import verify_consistency

            head = Checkpoint(checkpoint.origin, tree.size, tree.root())
            verify_consistency(head, checkpoint, tail_proof)
            return Report(tree.size, tree.root(), erased, checkpoint)
        raise VerifyError(
            f"the export ends after {tree.size} entries, but the checkpoint covers "
            f"{checkpoint.size}: entries {tree.size}..{checkpoint.size - 1} are missing",
            tree.size,
            "missing",
        )
    assert at_checkpoint is not None
    check_head(at_checkpoint, checkpoint)
    return Report(checkpoint.size, checkpoint.root, erased, checkpoint, tree.size - checkpoint.size)


def _cut(checkpoint: Checkpoint | None) -> tuple[int, ...]:
    return () if checkpoint is None else (checkpoint.size,)


def verify_entries(
    entries: Iterable[Entry],
    checkpoint: Checkpoint | None,
    *,
    app_id: str | None = None,
    progress: Callable[[int], None] | None = None,
    first: int = 0,
    left: Sequence[bytes] = (),
    tail_proof: Sequence[bytes] | None = None,
) -> Report:
    """Check entries (and stubs) in seq order from ``first`` and their root against ``checkpoint``.

    One span, folded: see :func:`check_span` and :func:`fold` for the arguments.
    """
    span = check_span(entries, first, app_id=app_id, cuts=_cut(checkpoint), progress=progress)
    return fold([span], checkpoint, first=first, left=left, tail_proof=tail_proof)
