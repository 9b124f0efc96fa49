"""Storage: the port that the rest of Trailkeep talks to, over SQLite or PostgreSQL."""

from trailkeep.server.store.append import AppendTx
from trailkeep.server.store.records import AppRecord, CheckpointRecord, IdempotencyRecord, KeyRecord
from trailkeep.server.store.store import Store

__all__ = ["AppRecord", "AppendTx", "CheckpointRecord", "IdempotencyRecord", "KeyRecord", "Store"]
