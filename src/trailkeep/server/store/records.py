"""Plain records that the store hands out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from trailkeep.server.secrets import SecretBox


class SecretsUnavailable(Exception):
    """A secret was needed from a store opened without the node's secret key."""


@dataclass(frozen=True, slots=True)
class AppRecord:
    """An app: the tenant that owns entries, keys and settings."""

    id: str
    name: str
    sealed_secret: str = field(repr=False)
    created_at: datetime
    retention_days: int | None
    purge_horizon: int
    allowed_origins: tuple[str, ...]
    erasure_approvals: int = 1
    session_issuer: str | None = None  # the identity provider's settings as JSON, or None
    secrets: SecretBox | None = field(default=None, repr=False, compare=False)

    @property
    def session_secret(self) -> str:
        """The HS256 secret the app's sessions are signed with, opened with the node's key."""
        if self.secrets is None:
            raise SecretsUnavailable("this store was opened without the node's secret key")
        return self.secrets.open(self.sealed_secret, session_secret_context(self.id))


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

    def public(self) -> dict[str, Any]:
        """The key as the API and the CLI show it: never its secret, nor the secret's hash."""
        return {
            "key_id": self.id, "name": self.name, "scopes": sorted(self.scopes),
            "created_at": self.created_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
        }  # fmt: skip


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


def session_secret_context(app_id: str) -> str:
    """What a sealed session secret is bound to: its app (another app's row does not open it)."""
    return f"apps/{app_id}/session_secret"
