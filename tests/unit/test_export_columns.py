"""The Parquet columns cut from entries' bytes, and the check that rebuilds entries from them."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings

from tests.unit.test_verify import ACTOR, APP, ORIGIN, TIME, metadata
from trailkeep.cli.exportcols import mismatches, python_rows, table_of
from trailkeep.cli.exportrun import tables
from trailkeep.log import merkle
from trailkeep.log.record import EventWrite, prepare, with_leaf_hash
from trailkeep.server.ids import new_entry_id

FORGED_METADATA = {
    "b": [1], "context": {"ip": None, "user_agent": None}, "id": "evt_forged", "kind": "user",
    "metadata": {},
}  # fmt: skip


def line(meta: dict[str, Any], seq: int = 0, **fields: Any) -> bytes:
    """An entry exactly as the server stores and exports it."""
    event = EventWrite(action="doc.share", metadata=meta, **fields)
    document = prepare(APP, new_entry_id(), event, ACTOR, ORIGIN, 10_240).canonical(seq, TIME)
    return with_leaf_hash(document, merkle.hash_leaf(document))


@settings(max_examples=60)
@given(metadata)
def test_cut_columns_are_the_parsed_ones(meta: dict[str, Any]) -> None:
    lines = [line(meta, 0), line(meta, 1, changes=[{"path": "/p", "old": 1, "new": meta}])]
    table = table_of(lines)
    assert table.to_pylist() == python_rows(lines)
    assert mismatches(table, APP) == []


def test_nested_copies_of_the_top_level_keys_do_not_move_the_cut() -> None:
    lines = [line(FORGED_METADATA, 0, changes=[{"path": "/x", "new": 1}])]
    row = table_of(lines).to_pylist()[0]
    assert row == python_rows(lines)[0]
    assert row["id"] != "evt_forged"


def _forged(table: pa.Table, **columns: Any) -> pa.Table:
    for name, value in columns.items():
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pa.array([value], table.schema.field(name).type))
    return table


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "user"},  # the actor is an admin
        {"actor_id": 'u1","name":"Ada'},  # a quote: stands for other JSON than its own
        {"erased": True},
        {"erased_by": "x"},
        {"project": None, "server": "web"},
    ],
)
def test_columns_that_do_not_say_what_the_entry_says_are_found(change: dict[str, Any]) -> None:
    lines = [line({"n": 1}, 0, project="p")]
    assert mismatches(_forged(table_of(lines), **change), APP) == [0]


def test_metadata_and_changes_shifted_around_a_nested_copy_are_found() -> None:
    # The columns a cut at the last `],"context":{` would give: they rebuild the same bytes.
    lines = [line(FORGED_METADATA, 0, changes=[{"path": "/x", "new": 1}])]
    entry = lines[0].decode()
    changes_at = entry.index('"changes":') + len('"changes":')
    forged_context = entry.rindex(',"context":{')
    shifted = {
        "changes": entry[changes_at:forged_context],
        "id": "evt_forged", "kind": "user", "ip": None, "user_agent": None, "project": None,
        "metadata": entry[entry.rindex('"metadata":') + 11 : entry.rindex(',"seq":')],
    }  # fmt: skip
    assert mismatches(_forged(table_of(lines), **shifted), APP) == [0]


def test_blocks_cut_on_other_processes_come_back_in_order_and_alike() -> None:
    lines = [line({"n": n}, n) for n in range(40)]
    blocks = [b"".join(x + b"\n" for x in lines[i : i + 7]) for i in range(0, 40, 7)]
    made = list(tables(iter(blocks), 2))
    assert [block for block, _ in made] == blocks
    for block, table in made:
        assert table.equals(table_of(block.split(b"\n")[:-1]))
