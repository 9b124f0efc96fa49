"""Storage: the port that the rest of Trailkeep talks to, over SQLite or PostgreSQL."""

from trailkeep.server.store.admin import AdminTx
from trailkeep.server.store.append import EVENT_COLUMNS, AppendTx, ChangeRow, EventRow
from trailkeep.server.store.records import AppRecord, CheckpointRecord, IdempotencyRecord, KeyRecord
from trailkeep.server.store.store import Store
from trailkeep.server.store.stubs import Match
from trailkeep.server.store.subjects import Hold, Subject, SubjectTx

__all__ = [
    "EVENT_COLUMNS",
    "AdminTx",
    "AppRecord",
    "AppendTx",
    "ChangeRow",
    "CheckpointRecord",
    "EventRow",
    "Hold",
    "IdempotencyRecord",
    "KeyRecord",
    "Match",
    "Store",
    "Subject",
    "SubjectTx",
]
