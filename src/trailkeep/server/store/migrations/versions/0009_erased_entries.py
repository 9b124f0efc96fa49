"""Erased entries: what is left of an entry whose content was erased, and the guard on erasing.

An entry's content is erased by deleting its row from ``events``; its stub stays in
``erased_entries``: the seq, the id, the time, the leaf hash (which the tree holds anyway) and
what erased it (``retention``, or an erasure's id). The database allows the delete only for an
entry whose stub was written first (in the same transaction), and, for retention, only below the
app's purge horizon. Stubs are append-only, like entries: never updated, deleted or replaced.

On PostgreSQL the service role is granted DELETE on ``events`` for this, and nothing else
changes: the trigger, not the grant, decides which rows may go.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ROLE = "trailkeep_service"  # 0002's restricted service role

_STUB_EXISTS = """EXISTS (SELECT 1 FROM erased_entries AS s
           WHERE s.app_id = OLD.app_id AND s.seq = OLD.seq AND s.id = OLD.id
             AND (s.erased_by <> 'retention' OR OLD.seq <
                  COALESCE((SELECT purge_horizon FROM apps WHERE id = OLD.app_id), 0)))"""

_SQLITE = [
    "DROP TRIGGER events_no_early_delete",
    f"""CREATE TRIGGER events_erased_only BEFORE DELETE ON events
       WHEN NOT {_STUB_EXISTS}
       BEGIN SELECT RAISE(ABORT, 'trailkeep: an entry is erased only with its stub recorded');
       END""",
    """CREATE TRIGGER erased_entries_no_update BEFORE UPDATE ON erased_entries
       BEGIN SELECT RAISE(ABORT, 'trailkeep: erased entries are append-only'); END""",
    """CREATE TRIGGER erased_entries_no_delete BEFORE DELETE ON erased_entries
       BEGIN SELECT RAISE(ABORT, 'trailkeep: erased entries are append-only'); END""",
    """CREATE TRIGGER erased_entries_no_replace BEFORE INSERT ON erased_entries
       WHEN EXISTS (SELECT 1 FROM erased_entries AS o
                    WHERE o.app_id = NEW.app_id AND o.seq = NEW.seq)
       BEGIN SELECT RAISE(ABORT, 'trailkeep: an erased entry is never replaced'); END""",
]

_POSTGRES = [
    f"""CREATE OR REPLACE FUNCTION trailkeep_events_delete() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN
         IF NOT {_STUB_EXISTS} THEN
           RAISE EXCEPTION 'trailkeep: entry % of % is erased only with its stub recorded',
                 OLD.seq, OLD.app_id;
         END IF;
         RETURN OLD;
       END $$""",
    """CREATE TRIGGER erased_entries_append_only BEFORE UPDATE OR DELETE ON erased_entries
       FOR EACH ROW EXECUTE FUNCTION trailkeep_refuse()""",
    """CREATE TRIGGER erased_entries_no_truncate BEFORE TRUNCATE ON erased_entries
       FOR EACH STATEMENT EXECUTE FUNCTION trailkeep_refuse()""",
]


def upgrade() -> None:
    """Create ``erased_entries`` and its guards, and guard deletes of entries with it."""
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    text = sa.String(64, collation="C") if postgres else sa.String(64)
    op.create_table(
        "erased_entries",
        sa.Column("app_id", text, primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("id", text, nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("erased_by", text, nullable=False),
    )
    op.create_index("erased_entries_by_id", "erased_entries", ["app_id", "id"], unique=True)
    for statement in _POSTGRES if postgres else _SQLITE:
        op.execute(statement)
    if not postgres:
        return
    if bind.execute(sa.text(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'")).first() is None:
        return  # 0002 warned: no role, nothing granted
    op.execute(f"GRANT SELECT, INSERT ON erased_entries TO {ROLE}")
    op.execute(f"GRANT DELETE ON events TO {ROLE}")


def downgrade() -> None:
    """Refused: an audit log's guards are never dropped by a migration."""
    raise RuntimeError("trailkeep migrations do not go down")
