"""A released hold forgets its subject when that subject is erased.

A hold names its subject in clear: it must, to keep that subject's entries. Once released it
only records that the hold was there; when the subject is later erased, its id would outlive
the erasure in the hold's row. The erasure replaces it with the keyed hash that the log's
records use (``subject_hmac``), in the erasure's own transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

ROLE = "trailkeep_service"  # 0002's restricted service role


def upgrade() -> None:
    """Add ``holds.subject_hmac``; the service role may clear a released hold's subject."""
    op.add_column("holds", sa.Column("subject_hmac", sa.String(64), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    if bind.execute(sa.text(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'")).first() is None:
        return  # 0002 warned: no role, nothing granted
    op.execute(f"GRANT UPDATE (actor_id, target_type, target_id, subject_hmac) ON holds TO {ROLE}")


def downgrade() -> None:
    """Refused: an audit log's schema is never taken back by a migration."""
    raise RuntimeError("trailkeep migrations do not go down")
