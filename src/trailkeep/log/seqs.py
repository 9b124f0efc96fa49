"""Sets of seqs as runs: ``[first, last]`` pairs, inclusive, ascending and disjoint.

Erasures name the seqs they erased this way (in the log, to webhooks, in an export's manifest):
retention erases long runs, so a run is as short as one seq's worth of JSON.
"""

from __future__ import annotations

from collections.abc import Iterable

Runs = list[list[int]]


def runs(seqs: Iterable[int]) -> Runs:
    """Ascending ``seqs`` as ``[first, last]`` runs of consecutive seqs."""
    found: Runs = []
    for seq in seqs:
        if found and found[-1][1] == seq - 1:
            found[-1][1] = seq
        else:
            found.append([seq, seq])
    return found


def normalized(pairs: Iterable[Iterable[int]]) -> Runs:
    """Any ``[first, last]`` pairs (unordered, overlapping) as ascending, disjoint runs."""
    found: Runs = []
    for first, last in sorted((int(a), int(b)) for a, b in pairs):
        if found and first <= found[-1][1] + 1:
            found[-1][1] = max(found[-1][1], last)
        else:
            found.append([first, last])
    return found


def union(a: Runs, b: Runs) -> Runs:
    """The seqs in either."""
    return normalized([*a, *b])


def difference(a: Runs, b: Runs) -> Runs:
    """The seqs of ``a`` not in ``b`` (both normalized)."""
    found: Runs = []
    j = 0
    for first, last in a:
        start = first
        while j < len(b) and b[j][1] < start:
            j += 1
        k = j
        while k < len(b) and b[k][0] <= last:
            if b[k][0] > start:
                found.append([start, b[k][0] - 1])
            start = max(start, b[k][1] + 1)
            k += 1
        if start <= last:
            found.append([start, last])
    return found


def overlaps(a: Runs, first: int, last: int) -> bool:
    """Whether any seq of ``a`` lies in ``first..last``."""
    return any(lo <= last and first <= hi for lo, hi in a)


def count(a: Runs) -> int:
    """How many seqs."""
    return sum(hi - lo + 1 for lo, hi in a)
