"""PostgreSQL in production: monthly partitions made ahead, and the restricted service role.

Nothing here applies to SQLite.

- ``trailkeep_ensure_partitions(months_ahead)`` creates the partitions of ``events`` for the
  current UTC month and the next ``months_ahead``, each with its own TRUNCATE guard. It is
  SECURITY DEFINER, so it runs as the owner who ran this migration: nodes connected as the
  restricted role call it on start and daily without owning the table.
- The role ``trailkeep_service`` (NOLOGIN: grant it to the nodes' login role) may read every
  table and INSERT into them, UPDATE only the columns the service changes, and DELETE only
  expired idempotency keys. It has no UPDATE, DELETE or TRUNCATE on entries, tree nodes or
  checkpoints at all, so the triggers of 0001 are a second wall, not the only one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ROLE = "trailkeep_service"
# pg_advisory_xact_lock(PARTITIONS_LOCK, 2): one partition maker at a time per database.
PARTITIONS_LOCK = 0x746B

_ENSURE_PARTITIONS = f"""
CREATE FUNCTION trailkeep_ensure_partitions(months_ahead integer DEFAULT 3)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
  first_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
  lo date;
  hi date;
  part text;
  made integer := 0;
BEGIN
  -- Nodes call this together on start: one at a time, and each then sees the others' tables.
  PERFORM pg_advisory_xact_lock({PARTITIONS_LOCK}, 2);
  FOR i IN 0 .. greatest(months_ahead, 0) LOOP
    lo := (first_month + make_interval(months => i))::date;
    hi := (lo + interval '1 month')::date;
    part := 'events_' || to_char(lo, 'YYYY_MM');
    CONTINUE WHEN to_regclass(part) IS NOT NULL;
    -- A month that already has rows in the default partition cannot get its own table
    -- without moving them; they stay where they are (still read and guarded), loudly.
    IF EXISTS (SELECT 1 FROM events_default
               WHERE time >= lo::timestamp AT TIME ZONE 'UTC'
                 AND time < hi::timestamp AT TIME ZONE 'UTC') THEN
      RAISE WARNING 'trailkeep: partition % not created: events_default holds rows of it', part;
      CONTINUE;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                   part, to_char(lo, 'YYYY-MM-DD') || ' 00:00:00+00',
                   to_char(hi, 'YYYY-MM-DD') || ' 00:00:00+00');
    EXECUTE format('CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON %I '
                   'FOR EACH STATEMENT EXECUTE FUNCTION trailkeep_refuse()', part);
    made := made + 1;
  END LOOP;
  RETURN made;
END $$
"""

_CREATE_ROLE = f"""
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
    CREATE ROLE {ROLE} NOLOGIN;
  END IF;
EXCEPTION
  -- Another database of the cluster is being migrated at the same moment.
  WHEN duplicate_object OR unique_violation THEN NULL;
  WHEN insufficient_privilege THEN
    RAISE WARNING 'trailkeep: no CREATEROLE, so role {ROLE} was not made and nothing was '
                  'granted: create it (NOLOGIN) before migrating a new database';
END $$
"""

TABLES = (
    "apps", "log_heads", "api_keys", "events", "tree_nodes", "checkpoints", "idempotency_keys",
)  # fmt: skip

_GRANTS = [
    f"GRANT SELECT ON alembic_version TO {ROLE}",
    f"GRANT SELECT, INSERT ON {', '.join(TABLES)} TO {ROLE}",
    # Only what the service changes: app settings, the log's head, key revocation.
    f"GRANT UPDATE (name, allowed_origins, retention_days, purge_horizon) ON apps TO {ROLE}",
    f"GRANT UPDATE (size, last_time) ON log_heads TO {ROLE}",
    f"GRANT UPDATE (name, revoked_at) ON api_keys TO {ROLE}",
    # Expired idempotency keys are swept; they are bookkeeping, not entries.
    f"GRANT DELETE ON idempotency_keys TO {ROLE}",
    "REVOKE ALL ON FUNCTION trailkeep_ensure_partitions(integer) FROM PUBLIC",
    f"GRANT EXECUTE ON FUNCTION trailkeep_ensure_partitions(integer) TO {ROLE}",
]


def upgrade() -> None:
    """Partition maker, this month's and the next three months' partitions, role and grants."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    schema = bind.dialect.identifier_preparer.quote(
        str(bind.execute(sa.text("SELECT current_schema()")).scalar())
    )
    op.execute(_ENSURE_PARTITIONS)
    # SECURITY DEFINER: never resolve a name through the caller's search_path.
    op.execute(
        f"ALTER FUNCTION trailkeep_ensure_partitions(integer) SET search_path = {schema}, pg_temp"
    )
    op.execute("SELECT trailkeep_ensure_partitions(3)")
    op.execute(_CREATE_ROLE)
    if bind.execute(sa.text(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'")).first() is None:
        return
    # A warning, not an error, when the migrating user does not own the schema.
    op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {ROLE}")
    for statement in _GRANTS:
        op.execute(statement)
    # Tables of later migrations are readable and appendable by default; anything more they
    # must grant themselves.
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT, INSERT ON TABLES TO {ROLE}"
    )


def downgrade() -> None:
    """Refused: an audit log's schema is never dropped by a migration."""
    raise RuntimeError("trailkeep migrations do not go down")
