"""The initial schema: apps, keys, entries, the tree, checkpoints, idempotency keys.

Append-only is enforced here, in the database, not only in the code that talks to it: an UPDATE
of an entry, tree node or checkpoint fails, and so does a DELETE of an entry newer than its app's
purge horizon, which itself can only rise. On PostgreSQL, `events` is partitioned by month of
`time`, and every text column compares code points (COLLATE "C"), as SQLite does.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SQLITE_TRIGGERS = [
    """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
       BEGIN SELECT RAISE(ABORT, 'trailkeep: entries are append-only'); END""",
    """CREATE TRIGGER events_no_early_delete BEFORE DELETE ON events
       WHEN OLD.seq >= COALESCE((SELECT purge_horizon FROM apps WHERE id = OLD.app_id), 0)
       BEGIN SELECT RAISE(ABORT, 'trailkeep: entry is newer than the purge horizon'); END""",
    """CREATE TRIGGER tree_nodes_no_update BEFORE UPDATE ON tree_nodes
       BEGIN SELECT RAISE(ABORT, 'trailkeep: tree nodes are append-only'); END""",
    """CREATE TRIGGER tree_nodes_no_delete BEFORE DELETE ON tree_nodes
       BEGIN SELECT RAISE(ABORT, 'trailkeep: tree nodes are append-only'); END""",
    """CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
       BEGIN SELECT RAISE(ABORT, 'trailkeep: checkpoints are append-only'); END""",
    """CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
       BEGIN SELECT RAISE(ABORT, 'trailkeep: checkpoints are append-only'); END""",
    """CREATE TRIGGER apps_horizon_only_rises BEFORE UPDATE OF purge_horizon ON apps
       WHEN NEW.purge_horizon < OLD.purge_horizon
       BEGIN SELECT RAISE(ABORT, 'trailkeep: the purge horizon only rises'); END""",
    """CREATE TRIGGER log_heads_only_grow BEFORE UPDATE ON log_heads
       WHEN NEW.size < OLD.size
       BEGIN SELECT RAISE(ABORT, 'trailkeep: a log never shrinks'); END""",
    """CREATE TRIGGER log_heads_no_delete BEFORE DELETE ON log_heads
       BEGIN SELECT RAISE(ABORT, 'trailkeep: a log never shrinks'); END""",
]

_POSTGRES_TRIGGERS = [
    """CREATE FUNCTION trailkeep_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'trailkeep: % on % is refused: the log is append-only',
             TG_OP, TG_TABLE_NAME; END $$""",
    """CREATE FUNCTION trailkeep_events_delete() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF OLD.seq >= COALESCE((SELECT purge_horizon FROM apps WHERE id = OLD.app_id), 0) THEN
           RAISE EXCEPTION 'trailkeep: entry % of % is newer than the purge horizon',
                 OLD.seq, OLD.app_id;
         END IF;
         RETURN OLD;
       END $$""",
    # One function per table: PL/pgSQL resolves every NEW.field of an expression against the
    # row type at hand, so a shared function naming both tables' columns fails on either.
    """CREATE FUNCTION trailkeep_horizon_only_rises() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.purge_horizon < OLD.purge_horizon THEN
           RAISE EXCEPTION 'trailkeep: the purge horizon only rises';
         END IF;
         RETURN NEW;
       END $$""",
    """CREATE FUNCTION trailkeep_log_only_grows() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.size < OLD.size THEN
           RAISE EXCEPTION 'trailkeep: a log never shrinks';
         END IF;
         RETURN NEW;
       END $$""",
    """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
       FOR EACH ROW EXECUTE FUNCTION trailkeep_refuse()""",
    """CREATE TRIGGER events_no_early_delete BEFORE DELETE ON events
       FOR EACH ROW EXECUTE FUNCTION trailkeep_events_delete()""",
    """CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
       FOR EACH STATEMENT EXECUTE FUNCTION trailkeep_refuse()""",
    # Statement triggers of a partitioned table do not fire for a TRUNCATE of one partition:
    # each partition gets its own (0002's partition maker adds it to every month it creates).
    """CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events_default
       FOR EACH STATEMENT EXECUTE FUNCTION trailkeep_refuse()""",
    """CREATE TRIGGER tree_nodes_append_only BEFORE UPDATE OR DELETE ON tree_nodes
       FOR EACH ROW EXECUTE FUNCTION trailkeep_refuse()""",
    """CREATE TRIGGER tree_nodes_no_truncate BEFORE TRUNCATE ON tree_nodes
       FOR EACH STATEMENT EXECUTE FUNCTION trailkeep_refuse()""",
    """CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
       FOR EACH ROW EXECUTE FUNCTION trailkeep_refuse()""",
    """CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
       FOR EACH STATEMENT EXECUTE FUNCTION trailkeep_refuse()""",
    """CREATE TRIGGER apps_horizon_only_rises BEFORE UPDATE ON apps
       FOR EACH ROW EXECUTE FUNCTION trailkeep_horizon_only_rises()""",
    """CREATE TRIGGER log_heads_only_grow BEFORE UPDATE ON log_heads
       FOR EACH ROW EXECUTE FUNCTION trailkeep_log_only_grows()""",
    """CREATE TRIGGER log_heads_no_delete BEFORE DELETE ON log_heads
       FOR EACH ROW EXECUTE FUNCTION trailkeep_refuse()""",
]


def upgrade() -> None:
    """Create every table, index and append-only guard."""
    dialect = op.get_bind().dialect.name
    postgres = dialect == "postgresql"

    def text(length: int) -> sa.String:
        # PostgreSQL compares with the database's collation (often ICU or glibc "en_US"), where
        # "user.a" < "user/" may not hold; "C" compares code points, like SQLite, so action
        # prefix ranges and every ORDER BY agree on both.
        return sa.String(length, collation="C") if postgres else sa.String(length)

    tz = sa.DateTime(timezone=True)
    op.create_table(
        "apps",
        sa.Column("id", text(64), primary_key=True),
        sa.Column("name", text(200), nullable=False),
        sa.Column("session_secret", text(128), nullable=False),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("retention_days", sa.Integer, nullable=True),
        sa.Column("purge_horizon", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("allowed_origins", sa.Text, nullable=False, server_default="[]"),
    )
    op.create_table(
        "log_heads",
        sa.Column("app_id", text(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("last_time", tz, nullable=True),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", text(64), primary_key=True),
        sa.Column("app_id", text(64), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("scopes", text(200), nullable=False),
        sa.Column("name", text(200), nullable=True),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("revoked_at", tz, nullable=True),
    )
    op.create_index("ix_api_keys_app_id", "api_keys", ["app_id"])
    # On PostgreSQL, entries are partitioned by month of `time` (0002 creates the months). A
    # partitioned table's keys must contain the partition key, so the primary key there is
    # (app_id, seq, time) and `events_by_id` is not unique. (app_id, seq) stays unique all the
    # same: seqs are handed out once each under the app's log_heads row lock, and every entry's
    # level-0 row in tree_nodes, whose primary key is (app_id, level, idx = seq), is inserted in
    # the same transaction. Ids carry 96+ random bits.
    partitioning: dict[str, Any] = {"postgresql_partition_by": "RANGE (time)"} if postgres else {}
    op.create_table(
        "events",
        sa.Column("app_id", text(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("id", text(64), nullable=False),
        sa.Column("time", tz, nullable=False, primary_key=postgres),
        sa.Column("action", text(128), nullable=False),
        sa.Column("kind", text(8), nullable=False),
        sa.Column("actor_id", text(256), nullable=False),
        sa.Column("target_type", text(64), nullable=True),
        sa.Column("target_id", text(256), nullable=True),
        sa.Column("entry", sa.LargeBinary, nullable=False),
        **partitioning,
    )
    if postgres:
        # Rows whose month has no partition yet land here instead of failing the append.
        op.execute("CREATE TABLE events_default PARTITION OF events DEFAULT")
    op.create_index("events_by_id", "events", ["app_id", "id"], unique=not postgres)
    op.create_index("events_by_action", "events", ["app_id", "action", "seq"])
    op.create_index("events_by_actor", "events", ["app_id", "actor_id", "seq"])
    op.create_index("events_by_target", "events", ["app_id", "target_type", "target_id", "seq"])
    op.create_index("events_by_kind", "events", ["app_id", "kind", "seq"])
    op.create_index("events_by_time", "events", ["app_id", "time", "seq"])
    op.create_table(
        "tree_nodes",
        sa.Column("app_id", text(64), primary_key=True),
        sa.Column("level", sa.SmallInteger, primary_key=True),
        sa.Column("idx", sa.BigInteger, primary_key=True),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "checkpoints",
        sa.Column("app_id", text(64), primary_key=True),
        sa.Column("size", sa.BigInteger, primary_key=True),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", tz, nullable=False),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("app_id", text(64), primary_key=True),
        sa.Column("key", text(255), primary_key=True),
        sa.Column("fingerprint", sa.LargeBinary(32), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("created_at", tz, nullable=False),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])
    for statement in _POSTGRES_TRIGGERS if postgres else _SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    """Refused: an audit log's schema is never dropped by a migration."""
    raise RuntimeError("trailkeep migrations do not go down")
