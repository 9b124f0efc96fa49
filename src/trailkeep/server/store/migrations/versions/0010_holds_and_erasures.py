"""Legal holds and erasure requests: the governance state behind ``hold.*`` and ``erasure.*``.

Neither table is part of the log: the log's own entries record every change to them. An erasure
request keeps its subject sealed (with the node's secret key) only until it is carried out; the
entries name the subject by a keyed hash, never in clear.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ROLE = "trailkeep_service"  # 0002's restricted service role


def upgrade() -> None:
    """Create ``holds`` and ``erasures``; the service role may update what changes."""
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"

    def text(length: int) -> sa.String:
        return sa.String(length, collation="C") if postgres else sa.String(length)

    op.create_table(
        "holds",
        sa.Column("id", text(40), primary_key=True),
        sa.Column("app_id", text(64), nullable=False, index=True),
        sa.Column("actor_id", text(256), nullable=True),
        sa.Column("target_type", text(64), nullable=True),
        sa.Column("target_id", text(256), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "erasures",
        sa.Column("id", text(40), primary_key=True),
        sa.Column("app_id", text(64), nullable=False, index=True),
        sa.Column("status", text(16), nullable=False),
        sa.Column("subject_hmac", text(64), nullable=False),
        # The subject, sealed, while the request waits; cleared once it is carried out.
        sa.Column("subject", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("approvals", sa.Text, nullable=False),
        sa.Column("required", sa.SmallInteger, nullable=False),
        sa.Column("matched", sa.Integer, nullable=False),
        sa.Column("erased", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
    )
    if not postgres:
        return
    if bind.execute(sa.text(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'")).first() is None:
        return  # 0002 warned: no role, nothing granted
    op.execute(f"GRANT SELECT, INSERT ON holds, erasures TO {ROLE}")
    op.execute(f"GRANT UPDATE (released_at) ON holds TO {ROLE}")
    op.execute(
        f"GRANT UPDATE (status, subject, approvals, matched, erased, done_at) ON erasures TO {ROLE}"
    )


def downgrade() -> None:
    """Refused: an audit log's schema is never taken back by a migration."""
    raise RuntimeError("trailkeep migrations do not go down")
