"""What changed: the index of the paths entries' ``changes`` name (DESIGN §8).

``event_changes`` holds one row per distinct path of an entry that carries ``changes``, written
in the entry's own transaction, so that ``changed_path`` reads seek ``(app_id, path)`` and walk
seq instead of scanning entries. A path can name a person (``/users/ada``), so the rows are
content: they go when the entry's content is erased, and only then. The database allows the
delete of a path row only once the entry's stub is recorded, refuses updates, and refuses the
delete of an entry whose path rows are still there, so the index cannot outlive the content.

On PostgreSQL the service role may read, insert and delete (the triggers decide which rows).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ROLE = "trailkeep_service"  # 0002's restricted service role

_STUB_EXISTS = """EXISTS (SELECT 1 FROM erased_entries AS s
           WHERE s.app_id = OLD.app_id AND s.seq = OLD.seq)"""
_PATHS_LEFT = """EXISTS (SELECT 1 FROM event_changes AS p
           WHERE p.app_id = OLD.app_id AND p.seq = OLD.seq)"""

_SQLITE = [
    f"""CREATE TRIGGER event_changes_erased_only BEFORE DELETE ON event_changes
       WHEN NOT {_STUB_EXISTS}
       BEGIN SELECT RAISE(ABORT, 'trailkeep: a changed path goes only with its entry''s content');
       END""",
    """CREATE TRIGGER event_changes_no_update BEFORE UPDATE ON event_changes
       BEGIN SELECT RAISE(ABORT, 'trailkeep: changed paths are append-only'); END""",
    f"""CREATE TRIGGER events_paths_first BEFORE DELETE ON events
       WHEN {_PATHS_LEFT}
       BEGIN SELECT RAISE(ABORT, 'trailkeep: an entry is erased only with its changed paths');
       END""",
]

_POSTGRES = [
    f"""CREATE FUNCTION trailkeep_event_changes_delete() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN
         IF NOT {_STUB_EXISTS} THEN
           RAISE EXCEPTION 'trailkeep: a changed path of entry % of % goes only with its content',
                 OLD.seq, OLD.app_id;
         END IF;
         RETURN OLD;
       END $$""",
    f"""CREATE FUNCTION trailkeep_events_paths_first() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN
         IF {_PATHS_LEFT} THEN
           RAISE EXCEPTION 'trailkeep: entry % of % is erased only with its changed paths',
                 OLD.seq, OLD.app_id;
         END IF;
         RETURN OLD;
       END $$""",
    """CREATE TRIGGER event_changes_erased_only BEFORE DELETE ON event_changes
       FOR EACH ROW EXECUTE FUNCTION trailkeep_event_changes_delete()""",
    """CREATE TRIGGER event_changes_no_update BEFORE UPDATE ON event_changes
       FOR EACH ROW EXECUTE FUNCTION trailkeep_refuse()""",
    """CREATE TRIGGER event_changes_no_truncate BEFORE TRUNCATE ON event_changes
       FOR EACH STATEMENT EXECUTE FUNCTION trailkeep_refuse()""",
    """CREATE TRIGGER events_paths_first BEFORE DELETE ON events
       FOR EACH ROW EXECUTE FUNCTION trailkeep_events_paths_first()""",
]


def upgrade() -> None:
    """Create ``event_changes`` and its guards; the service role may delete as they allow."""
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    app = sa.String(64, collation="C") if postgres else sa.String(64)
    # Exact matches only, compared by code point on PostgreSQL as on SQLite.
    path = sa.Text(collation="C") if postgres else sa.Text()
    op.create_table(
        "event_changes",
        sa.Column("app_id", app, primary_key=True),
        sa.Column("path", path, primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
    )
    # Erasure deletes an entry's rows by seq.
    op.create_index("event_changes_by_seq", "event_changes", ["app_id", "seq"])
    for statement in _POSTGRES if postgres else _SQLITE:
        op.execute(statement)
    if not postgres:
        return
    if bind.execute(sa.text(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'")).first() is None:
        return  # 0002 warned: no role, nothing granted
    op.execute(f"GRANT SELECT, INSERT, DELETE ON event_changes TO {ROLE}")


def downgrade() -> None:
    """Refused: an audit log's guards are never dropped by a migration."""
    raise RuntimeError("trailkeep migrations do not go down")
