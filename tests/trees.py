"""Tree heads for tests: the RFC 9162 root of a list of leaf hashes, in one call."""

from __future__ import annotations

from collections.abc import Sequence

from trailkeep.log.merkle import TreeBuilder


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """The RFC 9162 tree head over already-hashed leaves (the empty tree's for [])."""
    builder = TreeBuilder()
    for leaf in leaf_hashes:
        builder.append(leaf)
    return builder.root()
