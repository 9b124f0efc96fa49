"""Plain records that the store hands out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class AppRecord:
    """An app: the tenant that owns entries, keys and settings."""

    id: str
    name: str
    session_secret: str
    created_at: datetime
    retention_days: int | None
    purge_horizon: int
    allowed_origins: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An API key as stored: only the hash of its secret."""

    id: str
    app_id: str
    secret_hash: bytes
    scopes: frozenset[str]
    name: str | None
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """A signed checkpoint as stored before it is published."""

    app_id: str
    size: int
    root: bytes
    note: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """What a write with an ``Idempotency-Key`` appended: seqs [seq, seq + count)."""

    fingerprint: bytes
    seq: int
    count: int
