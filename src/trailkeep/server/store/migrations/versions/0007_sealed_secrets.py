"""Session secrets sealed: no app's secret is left in the database in clear.

Whoever reads an app's session secret mints sessions for it, owners' included, so a dump or a
backup of the database must not hold it. Each stored secret is sealed with the node's secret key
(AES-256-GCM, bound to its app; ``trailkeep.server.secrets``). The migration needs that key when
a database holds apps made by an earlier version: ``trailkeep migrate`` and ``trailkeep serve``
pass it (the key file is made on first use), and without it the migration stops and says so
rather than leave the secrets as they are. On PostgreSQL the column becomes ``text``: a sealed
secret is longer than the secret.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from trailkeep.server.secrets import SecretBox, is_sealed
from trailkeep.server.store.records import session_secret_context

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Widen the column (PostgreSQL) and seal every secret stored in clear."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE apps ALTER COLUMN session_secret TYPE text")
    rows = bind.execute(sa.text("SELECT id, session_secret FROM apps")).all()
    clear = [(app_id, secret) for app_id, secret in rows if not is_sealed(secret)]
    if not clear:
        return
    secrets: SecretBox | None = context.config.attributes.get("secrets")
    if secrets is None:
        raise RuntimeError(
            f"{len(clear)} app(s) keep their session secret in clear, and sealing them needs "
            "the node's secret key: run `trailkeep migrate` (or start `trailkeep serve`) with "
            "the data directory or TRAILKEEP_SECRET_KEY_FILE of this deployment"
        )
    for app_id, secret in clear:
        bind.execute(
            sa.text("UPDATE apps SET session_secret = :sealed WHERE id = :id"),
            {"id": app_id, "sealed": secrets.seal(secret, session_secret_context(app_id))},
        )


def downgrade() -> None:
    """Refused: an audit log's schema is never taken back by a migration."""
    raise RuntimeError("trailkeep migrations do not go down")
