"""Storage: the port that the rest of Trailkeep talks to, over SQLite or PostgreSQL."""

from trailkeep.store.append import AppendTx
from trailkeep.store.records import AppRecord, CheckpointRecord, IdempotencyRecord, KeyRecord
from trailkeep.store.store import Store

__all__ = ["AppRecord", "AppendTx", "CheckpointRecord", "IdempotencyRecord", "KeyRecord", "Store"]
