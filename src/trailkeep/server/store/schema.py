"""The tables, as SQLAlchemy Core sees them (Alembic's migrations create them)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

apps = Table(
    "apps",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("session_secret", String(128), nullable=False),
    # Sealed too: the secret that replaces session_secret, both verifying until it is retired.
    Column("next_session_secret", String(128), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("retention_days", Integer, nullable=True),
    # Entries with seq below the horizon may have their content deleted; only retention raises it.
    Column("purge_horizon", BigInteger, nullable=False, server_default="0"),
    Column("allowed_origins", Text, nullable=False, server_default="[]"),
    # How many distinct owners approve an erasure or a shortened retention: 1 or 2.
    Column("erasure_approvals", SmallInteger, nullable=False, server_default="1"),
    # The app's own identity provider, as JSON (see server/identity.py); null when it has none.
    Column("session_issuer", Text, nullable=True),
)

# The per-app counter row: taken under lock in every appending transaction, so seqs are gapless.
log_heads = Table(
    "log_heads",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("last_time", DateTime(timezone=True), nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("app_id", String(64), nullable=False, index=True),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("scopes", String(200), nullable=False),
    Column("name", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),  # 0014
)

events = Table(
    "events",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("id", String(64), nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("action", String(128), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("actor_id", String(256), nullable=False),
    Column("target_type", String(64), nullable=True),
    Column("target_id", String(256), nullable=True),
    # The exact JSON every read returns: the canonical entry plus its leaf_hash.
    Column("entry", LargeBinary, nullable=False),
)
Index("events_by_id", events.c.app_id, events.c.id, unique=True)
Index("events_by_action", events.c.app_id, events.c.action, events.c.seq)
Index("events_by_actor", events.c.app_id, events.c.actor_id, events.c.seq)
Index("events_by_target_type", events.c.app_id, events.c.target_type, events.c.seq)
Index("events_by_target_id", events.c.app_id, events.c.target_id, events.c.seq)
Index("events_by_kind", events.c.app_id, events.c.kind, events.c.seq)
Index("events_by_time", events.c.app_id, events.c.time, events.c.seq)

# The paths an entry's `changes` names (DESIGN §8), one row per distinct path, written in the
# entry's own transaction: `changed_path` reads seek (app_id, path) and walk seq. Personal data
# can be in a path (/users/ada): the rows go with the entry's content (stubs.erase_rows), and the
# database lets them go only once the entry's stub is recorded (0013's triggers).
event_changes = Table(
    "event_changes",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("path", Text, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
)
Index("event_changes_by_seq", event_changes.c.app_id, event_changes.c.seq)

# The tree's hashes, C2SP tlog-tiles style: a tile holds up to 256 consecutive hashes of one tree
# level (tile level t holds tree level 8t; tile level 0 the leaf hashes), and every other node is
# computed from the tile below it. Kept apart from the entries' content, so content can be erased
# while every root and proof stays intact. A tile's rows only grow: the appending transaction
# writes the wider tile and deletes the partial one it extends, and the database refuses any
# other change (0005's triggers check that the deleted hashes are a prefix of the wider tile's).
tree_tiles = Table(
    "tree_tiles",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("level", SmallInteger, primary_key=True),
    Column("idx", BigInteger, primary_key=True),
    Column("width", SmallInteger, primary_key=True),
    Column("hashes", LargeBinary, nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("size", BigInteger, primary_key=True),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", LargeBinary(32), nullable=False),
    # The entries it appended: seqs [seq, seq + count), read back on a retry.
    Column("seq", BigInteger, nullable=False),
    Column("count", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
)

# What is left of an entry whose content was erased (by retention or an erasure): its stub.
# The row in `events` is deleted in the same transaction, which the database allows only once
# the stub is here (0009's triggers). The leaf hash is the tree's, kept beside the stub so that
# reads need not compute it from the tiles.
erased_entries = Table(
    "erased_entries",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("id", String(64), nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("erased_by", String(64), nullable=False),
    # The app's log size when the stub was written (0017): "erased since size N" is a range.
    Column("at_size", BigInteger, nullable=False, server_default=text("0")),
)
Index("erased_entries_by_id", erased_entries.c.app_id, erased_entries.c.id, unique=True)
Index(
    "erased_entries_by_size",
    erased_entries.c.app_id,
    erased_entries.c.at_size,
    erased_entries.c.seq,
)

# Legal holds: entries a hold covers survive retention and cannot be erased (DESIGN §5). A hold
# covers an actor's entries, a target's, or (neither given) the whole app.
holds = Table(
    "holds",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("app_id", String(64), nullable=False, index=True),
    Column("actor_id", String(256), nullable=True),
    Column("target_type", String(64), nullable=True),
    Column("target_id", String(256), nullable=True),
    Column("reason", Text, nullable=False),
    Column("placed_at", DateTime(timezone=True), nullable=False),
    Column("released_at", DateTime(timezone=True), nullable=True),
    # Set, and the subject's columns cleared, when a released hold's subject is erased (0012).
    Column("subject_hmac", String(64), nullable=True),
)

# Erasure requests of a data subject's entries: pending until enough owners approve, then done.
erasures = Table(
    "erasures",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("app_id", String(64), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("subject_hmac", String(64), nullable=False),
    Column("subject", Text, nullable=True),  # sealed; cleared once carried out
    Column("reason", Text, nullable=False),
    Column("approvals", Text, nullable=False),  # JSON list of who approved
    Column("required", SmallInteger, nullable=False),
    Column("matched", Integer, nullable=False),
    Column("erased", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("done_at", DateTime(timezone=True), nullable=True),
)

# A shortened retention requested over the API: it waits for its approvals and notice period.
retention_changes = Table(
    "retention_changes",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("app_id", String(64), nullable=False, index=True),
    Column("days", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # pending, done or cancelled
    Column("approvals", Text, nullable=False),  # JSON list of who approved
    Column("required", SmallInteger, nullable=False),
    Column("effective_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("done_at", DateTime(timezone=True), nullable=True),
)

# Webhook destinations (DESIGN §6, 0016): the secret sealed; the cursor is the last seq
# delivered; batch_* pin the batch being retried (same webhook-id, same entries); the lease is
# the node delivering it now.
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("app_id", String(64), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("filter", Text, nullable=False),
    Column("format", String(16), nullable=False),
    Column("secret", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("disabled_reason", Text, nullable=True),
    Column("cursor", BigInteger, nullable=False),
    Column("generation", Integer, nullable=False, server_default="0"),
    Column("batch_id", String(64), nullable=True),
    Column("batch_last", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("webhook_id", String(40), nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("type", String(32), nullable=False),
    Column("first_seq", BigInteger, nullable=True),
    Column("last_seq", BigInteger, nullable=True),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
)
Index("webhook_deliveries_by_hook", webhook_deliveries.c.webhook_id, webhook_deliveries.c.at)

# audit.erased events queued in an erasure's or purge's transaction, one per destination.
webhook_notices = Table(
    "webhook_notices",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("webhook_id", String(40), nullable=False),
    Column("app_id", String(64), nullable=False),
    Column("seq_ranges", Text, nullable=False),
    Column("erased_by", String(64), nullable=False),
    Column("at_size", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
Index("webhook_notices_by_hook", webhook_notices.c.webhook_id, webhook_notices.c.at_size)
