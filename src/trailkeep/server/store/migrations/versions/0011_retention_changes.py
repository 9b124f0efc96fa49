"""Shortened retention waits: a change requested over the API, its approvals and notice period.

A shorter retention destroys history as surely as an erasure, so over the API it is a request
that takes effect only after a notice period and the owners' approvals (DESIGN §5); the app's
log records the request, each approval, a cancellation, and the change once applied.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ROLE = "trailkeep_service"  # 0002's restricted service role


def upgrade() -> None:
    """Create ``retention_changes``; the service role may move a change along."""
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    text = sa.String(64, collation="C") if postgres else sa.String(64)
    op.create_table(
        "retention_changes",
        sa.Column("id", text, primary_key=True),
        sa.Column("app_id", text, nullable=False, index=True),
        sa.Column("days", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("approvals", sa.Text, nullable=False),
        sa.Column("required", sa.SmallInteger, nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
    )
    if not postgres:
        return
    if bind.execute(sa.text(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'")).first() is None:
        return  # 0002 warned: no role, nothing granted
    op.execute(f"GRANT SELECT, INSERT ON retention_changes TO {ROLE}")
    op.execute(f"GRANT UPDATE (status, approvals, done_at) ON retention_changes TO {ROLE}")


def downgrade() -> None:
    """Refused: an audit log's schema is never taken back by a migration."""
    raise RuntimeError("trailkeep migrations do not go down")
