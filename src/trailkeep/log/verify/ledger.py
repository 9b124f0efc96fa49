"""Accounting for stubs: every erased entry must be explained by the record that erased it.

A stub proves its place in the tree but not why its content went. Retention records each chunk
it erases in a ``retention.purge`` entry (``from_seq``..``to_seq``), an erasure in an
``erasure.done`` entry (``seq_ranges``), both appended in the transaction that erased them, and
both ``kind: admin`` (callers cannot write these actions). A stub that no such record covers was
deleted by someone who went around Trailkeep, and verification names it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

#: The actions whose entries account for stubs, as an entry's canonical bytes begin.
ACCOUNTING_PREFIXES: Final = (b'{"action":"retention.purge",', b'{"action":"erasure.done",')


class Ledger:
    """The stubs seen and the ranges of seqs that records say were erased."""

    def __init__(self) -> None:
        self.stubs: list[list[int]] = []  # runs [first, last] in seq order
        self.accounted: list[tuple[int, int]] = []  # ranges [first, last] records name

    def stub(self, seq: int) -> None:
        """Note a stub at ``seq`` (seqs come in increasing order)."""
        if self.stubs and self.stubs[-1][1] == seq - 1:
            self.stubs[-1][1] = seq
        else:
            self.stubs.append([seq, seq])

    def entry(self, entry: bytes | Mapping[str, Any]) -> None:
        """Read an entry: if it is a record of erasure, note the seqs it accounts for."""
        if isinstance(entry, Mapping):
            document: Any = entry
            if document.get("action") not in ("retention.purge", "erasure.done"):
                return
        else:
            if not entry.startswith(ACCOUNTING_PREFIXES):
                return
            document = orjson.loads(entry)
        self.accounted.extend(_ranges(document))

    def merge(self, other: Ledger) -> None:
        """Take in another span's ledger (spans come in seq order)."""
        for first, last in other.stubs:
            if self.stubs and self.stubs[-1][1] == first - 1:
                self.stubs[-1][1] = last
            else:
                self.stubs.append([first, last])
        self.accounted.extend(other.accounted)

    def first_unaccounted(self) -> int | None:
        """The first stub that no record accounts for, or None when every one is."""
        merged: list[list[int]] = []
        for first, last in sorted(self.accounted):
            if merged and first <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], last)
            else:
                merged.append([first, last])
        starts = [first for first, _ in merged]
        for first, last in self.stubs:
            seq = first
            while seq <= last:
                at = bisect_right(starts, seq) - 1
                if at < 0 or merged[at][1] < seq:
                    return seq
                seq = merged[at][1] + 1
        return None


def _ranges(document: Mapping[str, Any]) -> Iterable[tuple[int, int]]:
    # Only the log's own records count: callers cannot write these actions, and the server
    # writes them as admin entries.
    if document.get("kind") != "admin":
        return []
    metadata = document.get("metadata")
    if not isinstance(metadata, Mapping):
        return []
    if document.get("action") == "retention.purge":
        pairs: Any = [[metadata.get("from_seq"), metadata.get("to_seq")]]
    else:
        pairs = metadata.get("seq_ranges")
    if not isinstance(pairs, list):
        return []
    return [
        (pair[0], pair[1])
        for pair in pairs
        if isinstance(pair, list) and len(pair) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in pair)
        and pair[0] <= pair[1]
    ]  # fmt: skip
