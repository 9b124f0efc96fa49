"""Plain records that the store hands out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    sealed_next: str | None = field(default=None, repr=False)

    @property
    def session_secret(self) -> str:
        """The HS256 secret to sign the app's sessions with: the newest, during a rotation."""
        return self.session_secrets[0]

    @property
    def session_secrets(self) -> tuple[str, ...]:
        """Every secret a session may be signed with, newest first (two during a rotation)."""
        if self.secrets is None:
            raise SecretsUnavailable("this store was opened without the node's secret key")
        current = self.secrets.open(self.sealed_secret, session_secret_context(self.id))
        if self.sealed_next is None:
            return (current,)
        return self.secrets.open(self.sealed_next, next_secret_context(self.id)), current


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
    expires_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        """The key as the API and the CLI show it: never its secret, nor the secret's hash."""
        return {
            "key_id": self.id, "name": self.name, "scopes": sorted(self.scopes),
            "created_at": self.created_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
        }  # fmt: skip

    def expired(self, now: datetime) -> bool:
        """Whether the key's time is up (a key without ``expires_at`` never expires)."""
        return self.expires_at is not None and self.expires_at <= now


def key_record(row: Any) -> KeyRecord:
    """A stored ``api_keys`` row as a record (SQLite hands back naive UTC times)."""
    return KeyRecord(
        id=row.id, app_id=row.app_id, secret_hash=bytes(row.secret_hash),
        scopes=frozenset(row.scopes.split()), name=row.name,
        created_at=_utc(row.created_at), revoked_at=_utc_or_none(row.revoked_at),
        expires_at=_utc_or_none(row.expires_at),
    )  # fmt: skip


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _utc_or_none(moment: datetime | None) -> datetime | None:
    return None if moment is None else _utc(moment)


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


def next_secret_context(app_id: str) -> str:
    """What the sealed secret that replaces an app's session secret is bound to."""
    return f"apps/{app_id}/next_session_secret"
