"""Verify an app's log in the local database, in aligned spans that run on every core.

A log of n entries is cut into spans of ``2**k`` leaves starting at multiples of ``2**k``.
Every complete tree node of level ≤ k lies inside one span, so each span is checked on its own,
in its own process: its entries against the tree's leaves, the leaves' hashes, and every stored
node inside it, recomputed. What is left for the parent is small: the stored nodes above level
k (recomputed from the spans' roots) and the tree head at the checkpoint, folded from stored
nodes that by then have all been checked.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial

from trailkeep.log import merkle
from trailkeep.log.notes import Checkpoint
from trailkeep.log.verify import (
    Ledger,
    Reason,
    Report,
    StoredTree,
    VerifyError,
    check_head,
    check_ledger,
    check_stored,
    stored_leaves,
)
from trailkeep.server.store import Store
from trailkeep.server.store.records import AppRecord

#: Leaves per span: large enough that a span's process start is a small part of its work.
SPAN_BITS = 17


@dataclass(frozen=True, slots=True)
class SpanResult:
    """A span's outcome: its subtree head and erased count, or the first problem in it."""

    start: int
    count: int
    root: bytes
    erased: int
    error: tuple[str, int | None, Reason] | None = None
    ledger: Ledger | None = None


def check_span(store: Store, app_id: str, start: int, end: int, purge_horizon: int) -> SpanResult:
    """Check leaves [start, end) of an app: entries, leaf hashes and every stored node inside."""
    tree = StoredTree(partial(store.nodes, app_id), offset=start)
    erased = 0
    ledger = Ledger()
    try:
        rows = store.leaves_with_entries(app_id, start=start, end=end)
        for leaf, stub in stored_leaves(rows, purge_horizon, app_id, first=start, ledger=ledger):
            erased += stub
            tree.append(leaf)
        if tree.size != end - start:
            raise VerifyError(
                f"missing: the tree has no leaf {start + tree.size} (its last leaf is "
                f"{start + tree.size - 1}, the log's size is {end})",
                start + tree.size,
                "missing",
            )
        return SpanResult(start, end - start, tree.root(), erased, ledger=ledger)
    except VerifyError as exc:
        return SpanResult(start, end - start, b"", erased, (exc.detail, exc.seq, exc.reason))


def _check_span_in_worker(
    url: str, app_id: str, start: int, end: int, purge_horizon: int
) -> SpanResult:
    store = Store(url)
    try:
        return check_span(store, app_id, start, end, purge_horizon)
    finally:
        store.close()


def spans(size: int, bits: int = SPAN_BITS) -> list[tuple[int, int]]:
    """[start, end) of each aligned span of ``2**bits`` leaves (the last may be shorter)."""
    step = 1 << bits
    return [(start, min(start + step, size)) for start in range(0, size, step)]


def verify_app(
    store: Store,
    url: str,
    app: AppRecord,
    checkpoint: Checkpoint,
    size: int,
    *,
    jobs: int | None = None,
    bits: int = SPAN_BITS,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Verify an app's first ``size`` stored entries against a signed checkpoint."""
    if size < checkpoint.size:
        raise VerifyError(
            f"the database holds {size} entries, but the checkpoint covers {checkpoint.size}: "
            f"entries {size}..{checkpoint.size - 1} are missing",
            size,
            "missing",
        )
    parts = spans(size, bits)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(parts)))
    results = _run_spans(store, url, app.id, app.purge_horizon, parts, jobs, progress)
    ledger = Ledger()
    for result in results:  # spans in seq order: the first problem is the earliest
        if result.error is not None:
            raise VerifyError(*result.error)
        assert result.ledger is not None
        ledger.merge(result.ledger)
    check_ledger(ledger)
    # Above the spans: the nodes over whole spans, recomputed from the full spans' heads.
    written, _ = merkle.append_leaves(0, [], [r.root for r in results if r.count == 1 << bits])
    fetch = partial(store.nodes, app.id)
    check_stored(fetch, {(lv + bits, i): h for (lv, i), h in written if lv})
    # Every stored node is checked by now, so the head folds from them.
    ids = merkle.frontier(checkpoint.size)
    stored = fetch(ids)
    root = merkle.root_from_frontier([stored[node] for node in ids])
    check_head(root, checkpoint)
    erased = sum(r.erased for r in results)
    return Report(checkpoint.size, root, erased, checkpoint, size - checkpoint.size)


def _run_spans(
    store: Store,
    url: str,
    app_id: str,
    purge_horizon: int,
    parts: Sequence[tuple[int, int]],
    jobs: int,
    progress: Callable[[int], None] | None,
) -> list[SpanResult]:
    def done(result: SpanResult) -> SpanResult:
        if progress is not None:
            progress(result.count)
        return result

    if jobs == 1:
        return [done(check_span(store, app_id, s, e, purge_horizon)) for s, e in parts]
    # spawn, not fork: the parent holds database connections and Rich's refresh thread.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = [
            pool.submit(_check_span_in_worker, url, app_id, s, e, purge_horizon) for s, e in parts
        ]
        return [done(future.result()) for future in futures]
