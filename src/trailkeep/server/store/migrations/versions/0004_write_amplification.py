"""Fewer B-tree pages written per append: one random-keyed index, and a clustered tree table.

A commit writes every page it touched, whole, to the WAL. An index keyed by a value that arrives
in no order (a target id) touches a different page for nearly every entry of a batch, so each
such index costs about a page per entry; an index keyed by a few values and then ``seq`` touches
only the last page of each value. Two indexes were random-keyed: ``events_by_target``
``(target_type, target_id, seq)`` and ``events_by_target_id`` ``(target_id, seq)``. The first is
replaced by ``events_by_target_type`` ``(target_type, seq)``, which appends; a filter on both
target fields now seeks ``events_by_target_id`` and checks the type on the few rows that share
the id. Fewer pages written per commit is fewer bytes written to the WAL and synced.

On SQLite ``tree_nodes`` becomes a ``WITHOUT ROWID`` table: its rows (a key and a 32-byte hash)
live in the primary key's own B-tree, so an append writes one B-tree instead of two, and a
proof's node lookup is one seek instead of an index seek plus a rowid lookup. The table is
rebuilt in place; its append-only triggers are re-created on the new table.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TREE_NODES_TRIGGERS = [
    """CREATE TRIGGER tree_nodes_no_update BEFORE UPDATE ON tree_nodes
       BEGIN SELECT RAISE(ABORT, 'trailkeep: tree nodes are append-only'); END""",
    """CREATE TRIGGER tree_nodes_no_delete BEFORE DELETE ON tree_nodes
       BEGIN SELECT RAISE(ABORT, 'trailkeep: tree nodes are append-only'); END""",
]


def upgrade() -> None:
    """Swap the target index; on SQLite, rebuild ``tree_nodes`` without a rowid."""
    op.create_index("events_by_target_type", "events", ["app_id", "target_type", "seq"])
    op.drop_index("events_by_target", table_name="events")
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(
        """CREATE TABLE tree_nodes_clustered (
             app_id VARCHAR(64) NOT NULL,
             level SMALLINT NOT NULL,
             idx BIGINT NOT NULL,
             hash BLOB NOT NULL,
             PRIMARY KEY (app_id, level, idx)
           ) WITHOUT ROWID"""
    )
    # In key order, so the new B-tree is filled page after page.
    op.execute(
        "INSERT INTO tree_nodes_clustered (app_id, level, idx, hash)"
        " SELECT app_id, level, idx, hash FROM tree_nodes ORDER BY app_id, level, idx"
    )
    # DROP TABLE drops the table's triggers first, so the append-only ones do not fire.
    op.execute("DROP TABLE tree_nodes")
    op.execute("ALTER TABLE tree_nodes_clustered RENAME TO tree_nodes")
    for statement in _TREE_NODES_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    """Refused: an audit log's schema is never dropped by a migration."""
    raise RuntimeError("trailkeep migrations do not go down")
