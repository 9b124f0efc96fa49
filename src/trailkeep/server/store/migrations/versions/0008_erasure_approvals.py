"""How many owners approve an erasure (or a shortened retention) of an app: 1 or 2.

A new column of ``apps``, changed only by governance (which logs the change in the app's own
log). On PostgreSQL the service role may update it, as it may the other settings.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ROLE = "trailkeep_service"  # 0002's restricted service role


def upgrade() -> None:
    """Add ``apps.erasure_approvals`` (default 1) and let the service role set it."""
    op.add_column(
        "apps",
        sa.Column("erasure_approvals", sa.SmallInteger, nullable=False, server_default="1"),
    )
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute(
            """CREATE TRIGGER apps_erasure_approvals_range BEFORE UPDATE OF erasure_approvals
               ON apps WHEN NEW.erasure_approvals NOT IN (1, 2)
               BEGIN SELECT RAISE(ABORT, 'trailkeep: erasure_approvals is 1 or 2'); END"""
        )
        return
    op.create_check_constraint(
        "apps_erasure_approvals_range", "apps", "erasure_approvals IN (1, 2)"
    )
    if bind.execute(sa.text(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'")).first() is None:
        return  # 0002 warned: no role, nothing granted
    op.execute(f"GRANT UPDATE (erasure_approvals) ON apps TO {ROLE}")


def downgrade() -> None:
    """Refused: an audit log's schema is never taken back by a migration."""
    raise RuntimeError("trailkeep migrations do not go down")
