"""No REPLACE: SQLite's conflict resolution may not rewrite a row of the log's tables.

``INSERT OR REPLACE``, ``REPLACE INTO`` and ``UPDATE OR REPLACE`` resolve a uniqueness conflict
by deleting the row in the way, and that delete fires no delete trigger (unless the connection
enabled ``recursive_triggers``, which no other client of the file need do). Through it an entry
could be rewritten, a checkpoint or a tree tile replaced, a log head shrunk, an app's purge
horizon lowered. So every table whose rows only grow refuses an INSERT of a key it already
holds (a plain INSERT of one fails on the constraint anyway; this makes REPLACE fail too), and
refuses an UPDATE that changes a key, which could make another row give way.

API keys are guarded as well: a key's secret, scopes and app never change, and a revocation is
final, on SQLite and PostgreSQL alike (PostgreSQL has no REPLACE; its ``ON CONFLICT DO UPDATE``
fires the update triggers that refused these changes already, except a cleared revocation).
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _no_replace(table: str, key: str, what: str) -> str:
    return f"""CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table}
       WHEN EXISTS (SELECT 1 FROM {table} AS o WHERE {key})
       BEGIN SELECT RAISE(ABORT, 'trailkeep: {what} is never replaced'); END"""


def _same(*columns: str) -> str:
    return " AND ".join(f"o.{column} = NEW.{column}" for column in columns)


_SQLITE_TRIGGERS = [
    # Both of an entry's unique keys: its place in the log and its id.
    _no_replace("events", f"({_same('app_id', 'seq')}) OR ({_same('app_id', 'id')})", "an entry"),
    _no_replace("tree_tiles", _same("app_id", "level", "idx", "width"), "a tree tile"),
    _no_replace("checkpoints", _same("app_id", "size"), "a checkpoint"),
    _no_replace("log_heads", _same("app_id"), "the head of a log"),
    _no_replace("apps", _same("id"), "an app"),
    _no_replace("api_keys", _same("id"), "an API key"),
    """CREATE TRIGGER apps_id_fixed BEFORE UPDATE OF id ON apps
       WHEN NEW.id IS NOT OLD.id
       BEGIN SELECT RAISE(ABORT, 'trailkeep: an app keeps its id'); END""",
    """CREATE TRIGGER log_heads_app_fixed BEFORE UPDATE OF app_id ON log_heads
       WHEN NEW.app_id IS NOT OLD.app_id
       BEGIN SELECT RAISE(ABORT, 'trailkeep: a log head keeps its app'); END""",
    """CREATE TRIGGER api_keys_fixed BEFORE UPDATE ON api_keys
       WHEN NEW.id IS NOT OLD.id OR NEW.app_id IS NOT OLD.app_id
         OR NEW.secret_hash IS NOT OLD.secret_hash OR NEW.scopes IS NOT OLD.scopes
         OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS NOT OLD.revoked_at)
       BEGIN SELECT RAISE(ABORT, 'trailkeep: a key keeps its secret, scopes and app for good');
       END""",
]

_POSTGRES_TRIGGERS = [
    """CREATE FUNCTION trailkeep_key_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.id IS DISTINCT FROM OLD.id OR NEW.app_id IS DISTINCT FROM OLD.app_id
            OR NEW.secret_hash IS DISTINCT FROM OLD.secret_hash
            OR NEW.scopes IS DISTINCT FROM OLD.scopes
            OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at)
         THEN
           RAISE EXCEPTION 'trailkeep: key % keeps its secret, scopes and app, and a '
                           'revocation is final', OLD.id;
         END IF;
         RETURN NEW;
       END $$""",
    """CREATE TRIGGER api_keys_fixed BEFORE UPDATE ON api_keys
       FOR EACH ROW EXECUTE FUNCTION trailkeep_key_fixed()""",
]


def upgrade() -> None:
    """Create the guards of this dialect."""
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in _POSTGRES_TRIGGERS if postgres else _SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    """Refused: an audit log's guards are never dropped by a migration."""
    raise RuntimeError("trailkeep migrations do not go down")
