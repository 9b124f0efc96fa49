"""Secrets that rotate: a second session secret during an overlap, and keys that expire.

An app's session secret is replaced without downtime: the new one is stored beside the old
(``next_session_secret``, sealed like it) and sessions signed with either verify until the old
one is retired. An API key may carry ``expires_at``, after which it is refused like a revoked
one. Re-sealing every stored secret under a new secret key (``trailkeep secrets rotate-key``)
rewrites the sealed columns, so the service role may update them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

ROLE = "trailkeep_service"  # 0002's restricted service role


def upgrade() -> None:
    """Add ``apps.next_session_secret`` and ``api_keys.expires_at``; grant what rotation needs."""
    op.add_column("apps", sa.Column("next_session_secret", sa.String(128), nullable=True))
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    if bind.execute(sa.text(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'")).first() is None:
        return  # 0002 warned: no role, nothing granted
    op.execute(f"GRANT UPDATE (session_secret, next_session_secret) ON apps TO {ROLE}")


def downgrade() -> None:
    """Refused: an audit log's schema is never taken back by a migration."""
    raise RuntimeError("trailkeep migrations do not go down")
