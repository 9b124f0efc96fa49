"""Storage: the port that the rest of Trailkeep talks to, over SQLite or PostgreSQL."""

from trailkeep.store.records import AppRecord, CheckpointRecord, IdempotencyRecord, KeyRecord
from trailkeep.store.store import AppendTx, Store

__all__ = ["AppRecord", "AppendTx", "CheckpointRecord", "IdempotencyRecord", "KeyRecord", "Store"]
