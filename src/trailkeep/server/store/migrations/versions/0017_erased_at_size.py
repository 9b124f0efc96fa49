"""When each entry was erased, in the log's own terms: the app's log size at the time.

``erased_entries.at_size`` is the app's log size when the stub was written, read under the
app's lock, so no entry can commit between that read and the erasure's commit. A reader that
saw the log at size N and asks later for the stubs with ``at_size >= N`` therefore gets every
entry erased since, whatever the nodes and transactions: this is how ``trailkeep export`` finds
the rows it must rewrite in files it wrote before (DESIGN §5, "Erasure travels downstream").

Stubs written before this migration get 0: an exporter that never asked (``since_size=0``)
gets them all, and one that asked since can only have asked this version, which records it.
The index is in that order so that the question is a range scan, in the order it is answered.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``erased_entries.at_size`` (0 for the stubs already there) and its index."""
    # A constant default: SQLite adds the column in place and PostgreSQL (11+) without
    # rewriting the table, and no row is updated (the append-only triggers refuse updates).
    op.add_column(
        "erased_entries",
        sa.Column("at_size", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    )
    op.create_index(
        "erased_entries_by_size", "erased_entries", ["app_id", "at_size", "seq"], unique=False
    )


def downgrade() -> None:
    """Refused: an audit log's schema is never taken back by a migration."""
    raise RuntimeError("trailkeep migrations do not go down")
