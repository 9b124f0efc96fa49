"""Webhooks (DESIGN §6): destinations, their delivery cursors and leases, attempts, notices.

``webhooks`` holds each destination: its URL and filter, its secret (sealed under the node's
secret key, never in clear), its cursor (the last seq delivered), the batch it is retrying
(so that a retry carries the same ``webhook-id``), and the lease a node holds while it
delivers, so that on several nodes exactly one delivers a destination at a time.
``webhook_deliveries`` keeps recent attempts; ``webhook_notices`` the ``audit.erased`` events
queued in an erasure's or a purge's own transaction, delivered before later batches.

On PostgreSQL the service role may read and write these three tables and nothing more.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

ROLE = "trailkeep_service"  # 0002's restricted service role


def upgrade() -> None:
    """Create the webhook tables; the service role may read and change them."""
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"

    def text(length: int) -> sa.String:
        return sa.String(length, collation="C") if postgres else sa.String(length)

    stamp = sa.DateTime(timezone=True)
    op.create_table(
        "webhooks",
        sa.Column("id", text(40), primary_key=True),
        sa.Column("app_id", text(64), nullable=False, index=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("filter", sa.Text, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("secret", sa.Text, nullable=False),  # sealed
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("disabled_reason", sa.Text, nullable=True),
        sa.Column("cursor", sa.BigInteger, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("batch_last", sa.BigInteger, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", stamp, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", stamp, nullable=True),
        sa.Column("created_at", stamp, nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", text(40), primary_key=True),
        sa.Column("webhook_id", text(40), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("first_seq", sa.BigInteger, nullable=True),
        sa.Column("last_seq", sa.BigInteger, nullable=True),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("at", stamp, nullable=False),
    )
    op.create_index("webhook_deliveries_by_hook", "webhook_deliveries", ["webhook_id", "at"])
    op.create_table(
        "webhook_notices",
        sa.Column("id", text(40), primary_key=True),
        sa.Column("webhook_id", text(40), nullable=False),
        sa.Column("app_id", text(64), nullable=False),
        sa.Column("seq_ranges", sa.Text, nullable=False),
        sa.Column("erased_by", sa.String(64), nullable=False),
        # The log's size when it was queued, then its id: the order notices go out in.
        sa.Column("at_size", sa.BigInteger, nullable=False),
        sa.Column("created_at", stamp, nullable=False),
    )
    op.create_index("webhook_notices_by_hook", "webhook_notices", ["webhook_id", "at_size"])
    if not postgres:
        return
    if bind.execute(sa.text(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'")).first() is None:
        return  # 0002 warned: no role, nothing granted
    op.execute(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON webhooks, webhook_deliveries, webhook_notices "
        f"TO {ROLE}"
    )


def downgrade() -> None:
    """Refused: an audit log's schema is never taken back by a migration."""
    raise RuntimeError("trailkeep migrations do not go down")
