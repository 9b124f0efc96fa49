"""Offline verification of exported lines: the fast path for the server's own bytes must agree
with the full recomputation, and every failure must name its seq."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import trailkeep.cli.verify as cli_verify
from tests.trees import root_of
from trailkeep.log import merkle
from trailkeep.log.notes import Checkpoint
from trailkeep.log.record import (
    Actor,
    EventWrite,
    IndexedFields,
    Origin,
    indexed_fields,
    prepare,
    with_leaf_hash,
)
from trailkeep.log.tiles import TILE_HEIGHT
from trailkeep.log.verify import Report, StoredTree, VerifyError, check_indexed, verify_entries
from trailkeep.log.verify.entries import fast_leaf
from trailkeep.log.verify.stored import _columns_match_exact
from trailkeep.server.ids import new_entry_id
from trailkeep.server.verify_app import spans

APP = "app_verifytest"
ACTOR = Actor(type="user", id="u1", name="Ada", role="admin")
ORIGIN = Origin(ip="127.0.0.1", user_agent="pytest")
TIME = "2026-11-23T08:15:30.000001Z"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
metadata = st.dictionaries(st.text(max_size=8), json_values, max_size=4)


def export(metadatas: list[dict[str, Any]]) -> tuple[list[bytes], Checkpoint]:
    """Lines as the server stores and exports them, and a checkpoint over them."""
    lines, leaves = [], []
    for seq, meta in enumerate(metadatas):
        event = EventWrite(action="doc.share", metadata=meta)
        document = prepare(APP, new_entry_id(), event, ACTOR, ORIGIN, 10_240).canonical(seq, TIME)
        leaf = merkle.hash_leaf(document)
        leaves.append(leaf)
        lines.append(with_leaf_hash(document, leaf))
    return lines, Checkpoint(f"trailkeep.local/{APP}", len(lines), root_of(leaves))


def reserialized(line: bytes) -> bytes:
    """The same entry written by another tool: other key order, other spacing."""
    entry = orjson.loads(line)
    return orjson.dumps(dict(reversed(list(entry.items()))), option=orjson.OPT_INDENT_2).replace(
        b"\n", b" "
    )


@given(st.lists(metadata, min_size=1, max_size=6))
def test_server_bytes_and_reserialized_lines_verify_alike(metas: list[dict[str, Any]]) -> None:
    lines, checkpoint = export(metas)
    fast = verify_entries(lines, checkpoint, app_id=APP)
    slow = verify_entries([reserialized(line) for line in lines], checkpoint, app_id=APP)
    assert fast.root == slow.root == checkpoint.root
    assert fast.size == slow.size == len(metas)


@pytest.mark.parametrize("rewrite", ["reserialize", "keep"])
def test_changed_content_names_its_seq(rewrite: str) -> None:
    lines, checkpoint = export([{"n": i, "seq": 99} for i in range(5)])
    changed = lines[3].replace(b'"n":3', b'"n":4')
    lines[3] = reserialized(changed) if rewrite == "reserialize" else changed
    with pytest.raises(VerifyError) as failure:
        verify_entries(lines, checkpoint, app_id=APP)
    assert failure.value.seq == 3


def test_a_committed_entry_moved_elsewhere_is_refused() -> None:
    # Its own bytes hash fine, but its seq is not the position it stands in.
    lines, checkpoint = export([{"n": i} for i in range(4)])
    lines[1], lines[2] = lines[2], lines[1]
    with pytest.raises(VerifyError) as failure:
        verify_entries(lines, checkpoint, app_id=APP)
    assert failure.value.seq == 1


def test_another_apps_entry_is_refused() -> None:
    lines, checkpoint = export([{}])
    with pytest.raises(VerifyError, match="belongs to app"):
        verify_entries(lines, checkpoint, app_id="app_other")


def test_a_metadata_key_named_seq_does_not_confuse_the_fast_path() -> None:
    lines, checkpoint = export([{"x": {"seq": 7}}, {"seq": 0}])
    assert verify_entries(lines, checkpoint, app_id=APP).size == 2


@given(st.lists(metadata, min_size=1, max_size=4))
def test_the_fast_path_takes_exactly_the_servers_own_bytes(metas: list[dict[str, Any]]) -> None:
    lines, _ = export(metas)
    for seq, line in enumerate(lines):
        leaf = bytes.fromhex(orjson.loads(line)["leaf_hash"])
        assert fast_leaf(seq, line, APP) == leaf
        assert fast_leaf(seq + 1, line, APP) is None  # another position: the slow path says so
        assert fast_leaf(seq, line, "app_other") is None
        assert fast_leaf(seq, reserialized(line), APP) is None


# --- The stored tree: one pass gives the head and checks every stored interior node ---------


def _tree(count: int) -> tuple[list[bytes], dict[merkle.NodeId, bytes]]:
    """``count`` leaf hashes and every complete node of their tree."""
    leaves = [merkle.hash_leaf(b"%d" % i) for i in range(count)]
    written, _ = merkle.append_leaves(0, [], leaves)
    return leaves, dict(written)


def _stored(node: merkle.NodeId) -> bool:
    """An interior node the database stores: one on a tile level (the rest are computed)."""
    return node[0] > 0 and node[0] % TILE_HEIGHT == 0


def _recording(
    nodes: dict[merkle.NodeId, bytes], asked: list[merkle.NodeId]
) -> Callable[[Sequence[merkle.NodeId]], dict[merkle.NodeId, bytes]]:
    """A node fetch from ``nodes`` that notes every node asked for in ``asked``."""

    def fetch(ids: Sequence[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
        asked.extend(ids)
        return {node: nodes[node] for node in ids}

    return fetch


@given(count=st.integers(0, 1_100), batch=st.integers(1, 300), at=st.integers(0, 1_100))
def test_stored_tree_gives_the_same_heads_as_the_tree_builder(
    count: int, batch: int, at: int
) -> None:
    leaves, nodes = _tree(count)
    fetched: list[merkle.NodeId] = []
    stored, built = StoredTree(_recording(nodes, fetched), batch=batch), merkle.TreeBuilder()
    for i, leaf in enumerate(leaves):
        stored.append(leaf)
        built.append(leaf)
        if i == at:  # a head mid-way (a checkpoint older than the log) flushes early
            assert stored.root() == built.root()
    assert stored.size == built.size == count
    assert stored.root() == built.root() == root_of(leaves)
    # Every stored interior node was checked, each once, and nothing else was asked for.
    assert sorted(fetched) == sorted(filter(_stored, nodes))


@given(count=st.integers(256, 1_100), data=st.data())
def test_stored_tree_names_the_first_entry_under_a_forged_node(
    count: int, data: st.DataObject
) -> None:
    leaves, nodes = _tree(count)
    level, index = data.draw(st.sampled_from(sorted(filter(_stored, nodes))))
    nodes[(level, index)] = bytes(32)
    tree = StoredTree(_recording(nodes, []), batch=100)

    def head() -> bytes:
        for leaf in leaves:
            tree.append(leaf)
        return tree.root()

    with pytest.raises(VerifyError) as failure:
        head()
    assert failure.value.seq == index << level
    assert f"level {level}, index {index}" in str(failure.value)


@given(size=st.integers(0, 2_000), bits=st.integers(1, 8))
def test_spans_are_aligned_and_cover_the_log_once(size: int, bits: int) -> None:
    parts = spans(size, bits)
    assert [i for start, end in parts for i in range(start, end)] == list(range(size))
    assert all(start % (1 << bits) == 0 and end - start <= 1 << bits for start, end in parts)


@given(count=st.integers(1, 2_100), bits=st.integers(8, 10))
def test_a_span_checks_the_stored_nodes_at_their_place_in_the_whole_tree(
    count: int, bits: int
) -> None:
    leaves, nodes = _tree(count)
    checked: list[merkle.NodeId] = []
    fetch = _recording(nodes, checked)
    heads = []
    for start, end in spans(count, bits):
        tree = StoredTree(fetch, batch=200, offset=start)
        for leaf in leaves[start:end]:
            tree.append(leaf)
        heads.append(tree.root())
        if end - start == 1 << bits:  # a full span's head is the stored node over it
            assert heads[-1] == nodes[(bits, start >> bits)]
    # Together the spans checked every stored interior node up to their own level, once.
    assert sorted(checked) == sorted(n for n in nodes if _stored(n) and n[0] <= bits)


@pytest.mark.parametrize(
    ("size", "erased", "beyond", "lines"),
    [
        (1, 0, 1, ["OK: 1 entry verified", "1 newer entry checked"]),
        (
            5,
            2,
            3,
            [
                "OK: 5 entries (2 erased) verified",
                "3 newer entries checked",
                "2 erased entries are stubs",
                "each accounted for by the retention.purge or erasure.done entry",
            ],
        ),
        (3, 1, 0, ["1 erased entry is a stub", "each accounted for"]),
    ],
)
def test_the_verify_report_counts_in_words(
    capsys: pytest.CaptureFixture[str], size: int, erased: int, beyond: int, lines: list[str]
) -> None:
    report = Report(size, root_of([bytes(32)] * size), erased, None, beyond)
    cli_verify._print_report(report)
    printed = capsys.readouterr().out
    for line in lines:
        assert line in printed, printed
    assert ("accounted for" in printed) == bool(erased)


# --- The columns reads filter on, against the entry's own fields -------------------------------

TARGETS = st.one_of(st.none(), st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=8)))


def _stored_row(seq: int, meta: dict[str, Any], target: tuple[str, str] | None) -> bytes:
    event = EventWrite(
        action="doc.share", metadata=meta,
        target_type=None if target is None else target[0],
        target_id=None if target is None else target[1] or "x",
    )  # fmt: skip
    document = prepare(APP, new_entry_id(), event, ACTOR, ORIGIN, 10_240).canonical(seq, TIME)
    return with_leaf_hash(document, merkle.hash_leaf(document))


@given(metadata, TARGETS, st.sampled_from(IndexedFields._fields), st.text(max_size=6))
def test_the_exact_column_check_agrees_with_the_parsed_one(
    meta: dict[str, Any], target: tuple[str, str] | None, column: str, other: str
) -> None:
    row = _stored_row(0, meta, target)
    own = indexed_fields(orjson.loads(row))
    assert _columns_match_exact(row, own)
    check_indexed(0, orjson.loads(row), own)
    changed = own._replace(**{column: other})
    if changed == own:
        return
    assert not _columns_match_exact(row, changed)
    with pytest.raises(VerifyError) as failure:
        check_indexed(0, orjson.loads(row), changed)
    assert (failure.value.seq, failure.value.reason) == (0, "index")
    assert f"indexed column {column}" in str(failure.value)
