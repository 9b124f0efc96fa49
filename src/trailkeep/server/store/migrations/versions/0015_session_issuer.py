"""An app's own identity provider: the issuer whose RS256/ES256/EdDSA sessions it accepts.

A new nullable column of ``apps`` holding the issuer's settings as JSON (issuer, its JWKS or
where to fetch it, audience, role claim and role map), changed only by governance, which logs
the change in the app's own log. On PostgreSQL the service role may update it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
# 0013 is made on another branch; this one is re-chained after it when both are merged.
down_revision = "0014"
branch_labels = None
depends_on = None

ROLE = "trailkeep_service"  # 0002's restricted service role


def upgrade() -> None:
    """Add ``apps.session_issuer`` (null: none) and let the service role set it."""
    op.add_column("apps", sa.Column("session_issuer", sa.Text, nullable=True))
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    if bind.execute(sa.text(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'")).first() is None:
        return  # 0002 warned: no role, nothing granted
    op.execute(f"GRANT UPDATE (session_issuer) ON apps TO {ROLE}")


def downgrade() -> None:
    """Refused: an audit log's schema is never taken back by a migration."""
    raise RuntimeError("trailkeep migrations do not go down")
