"""A log as a database stores it: rows against the tree's leaves and the indexed columns, and
the stored tree's nodes against the hashes of their leaves."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import orjson

from trailkeep.log import merkle
from trailkeep.log.record import IndexedFields, indexed_fields
from trailkeep.log.tiles import TILE_HEIGHT
from trailkeep.log.verify.entries import SUFFIX_AT, VerifyError, fast_leaf, leaf_of, parsed
from trailkeep.log.verify.ledger import Ledger

#: (seq, the tree's leaf hash, the stored entry or None once erased, its indexed columns).
StoredRow = tuple[int, bytes, bytes | None, IndexedFields | None]


def stored_leaves(
    chunks: Iterable[Sequence[StoredRow]],
    purge_horizon: int,
    app_id: str,
    first: int = 0,
    ledger: Ledger | None = None,
) -> Iterator[tuple[bytes, bool]]:
    """Check a database's rows from seq ``first`` on; yield each leaf and whether it is a stub.

    Beyond :func:`leaf_of`, a stored entry's recorded leaf must be the tree's leaf at its seq, an
    erased one must have its stub (with the tree's leaf; ``ledger`` collects them for
    :func:`check_ledger`), and the columns that reads filter on must
    say what the entry says (a row whose index columns were edited would hide from searches).
    """
    expected = first
    for rows in chunks:
        for seq, tree_leaf, entry, columns in rows:
            if seq != expected:
                raise VerifyError(
                    f"missing: the tree has no leaf {expected} (next is {seq})", expected, "missing"
                )
            expected += 1
            if entry is None:
                # Retention and erasure leave a stub in place of every row they delete.
                where = "below" if seq < purge_horizon else "above"
                raise VerifyError(
                    f"missing: the entry's row was deleted and no stub records its erasure "
                    f"(it lies {where} the purge horizon)",
                    seq,
                    "missing",
                )
            raw = bytes(entry)
            if raw.startswith(b'{"erased":true'):
                # A stub: the bare leaf it records must be the tree's.
                leaf, _ = leaf_of(seq, raw, app_id)
                if leaf != bytes(tree_leaf):
                    raise VerifyError(
                        f"the stub's leaf_hash {leaf.hex()} differs from the tree's leaf "
                        f"{bytes(tree_leaf).hex()}",
                        seq,
                    )
                if ledger is not None:
                    ledger.stub(seq)
                yield leaf, True
                continue
            if ledger is not None:
                ledger.entry(raw)
            # The stored leaf must be the one the entry records (and the hash of its content):
            # a row rewritten with a matching leaf_hash would break the root instead.
            if raw[SUFFIX_AT + 14 : -2] != bytes(tree_leaf).hex().encode():
                recorded = raw[SUFFIX_AT + 14 : -2].decode(errors="replace")
                raise VerifyError(
                    f"the entry's leaf_hash {recorded} differs from the tree's leaf "
                    f"{bytes(tree_leaf).hex()}",
                    seq,
                )
            exact = fast_leaf(seq, raw, app_id)
            leaf, stub = (exact, False) if exact is not None else leaf_of(seq, raw, app_id)
            if columns is not None and (exact is None or not _columns_match_exact(raw, columns)):
                check_indexed(seq, parsed(seq, raw), columns)
            yield leaf, stub


def _json_text(value: str) -> bytes:
    # A column edited to hold what no entry can (a lone surrogate) matches no entry's bytes.
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return b"\x00"


def _columns_match_exact(entry: bytes, columns: IndexedFields) -> bool:
    """Whether the columns equal the fields of an entry in the server's own canonical bytes.

    Only for bytes that hashed to their leaf as they are: those are canonical JSON as the
    server wrote it, so each field stands at a known place (action and the actor's id first,
    kind before the caller's metadata, target and time last) and no key repeats.
    """
    prefix = b"".join(
        (b'{"action":', _json_text(columns.action), b',"actor":{"id":',
         _json_text(columns.actor_id), b",")
    )  # fmt: skip
    if not entry.startswith(prefix):
        return False
    kind = b"".join((b'","kind":', _json_text(columns.kind), b',"metadata":'))
    at = entry.find(b'","kind":"')
    if at < 0 or entry[at : at + len(kind)] != kind:
        return False
    if columns.target_type is None or columns.target_id is None:
        target = b"null" if columns.target_type is None and columns.target_id is None else b"?"
    else:
        target = b"".join(
            (b'{"id":', _json_text(columns.target_id), b',"type":',
             _json_text(columns.target_type), b"}")
        )  # fmt: skip
    tail = b"".join((b',"target":', target, b',"time":', _json_text(columns.time)))
    return entry[SUFFIX_AT - len(tail) : SUFFIX_AT] == tail


def check_indexed(seq: int, entry: Mapping[str, Any], columns: IndexedFields) -> None:
    """The indexed columns must equal the entry's own fields; name the first that does not."""
    try:
        own = indexed_fields(entry)
    except (KeyError, TypeError, AttributeError):
        raise VerifyError("the entry lacks the fields reads filter on", seq, "malformed") from None
    for name, stored, actual in zip(IndexedFields._fields, columns, own, strict=True):
        if stored != actual:
            raise VerifyError(
                f"the indexed column {name} holds {stored!r}, but the entry says {actual!r}: "
                "reads filtering on it would miss or misplace this entry",
                seq,
                "index",
            )


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
            "tree",
        )
