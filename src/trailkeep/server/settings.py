"""The one settings object, read from ``TRAILKEEP_*`` environment variables."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Settings(BaseSettings):
    """Every knob of a Trailkeep node; CLI options override the environment."""

    model_config = SettingsConfigDict(env_prefix="TRAILKEEP_", extra="ignore")

    data_dir: Path = Field(default=Path("./data"), description="Where SQLite and keys live.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite:///<data_dir>/trailkeep.db."
    )
    redis_url: str | None = Field(
        default=None, description="Redis for rate-limit counters shared by every node."
    )
    rate_limit: str = Field(default="200/minute", description="Write requests per client IP.")
    read_rate_limit: str = Field(
        default="600/minute",
        description="Read requests (list, get, stats, export, checkpoint, proofs) per client IP.",
    )
    rate_limit_on_redis_failure: Literal["open", "closed"] = Field(
        default="open",
        description="When Redis is unreachable: let requests through (open) or refuse them "
        "with 503 (closed).",
    )
    metadata_max_bytes: int = Field(default=10_240, ge=2, description="Canonical metadata size.")
    trusted_proxies: Annotated[list[IPNetwork], NoDecode] = Field(
        default_factory=list, description="CIDRs whose X-Forwarded-For is believed."
    )
    origin: str = Field(default="trailkeep.local", description="Checkpoint origin prefix.")
    signing_key_file: Path | None = Field(
        default=None, description="Ed25519 note signer key; default <data_dir>/signing.key."
    )
    secret_key_file: Path | None = Field(
        default=None,
        description="AES-256 key that seals the secrets the database keeps (session secrets); "
        "default <data_dir>/secret.key. Every node needs the same one.",
    )
    previous_secret_key_file: Path | None = Field(
        default=None,
        description="While the secret key itself rotates: the key it replaces, to open what "
        "it sealed until `trailkeep secrets rotate-key` seals everything again.",
    )
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60)
    retention_change_delay: float = Field(
        default=86_400.0,
        ge=0,
        description="Seconds a shorter retention requested over the API waits (with its "
        "owners' approvals) before it takes effect.",
    )
    purge_interval: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds between retention runs: each app's entries older than its "
        "retention_days lose their content (see docs/governance.md).",
    )
    max_batch_entries: int = Field(default=1_000, ge=1)
    writer: Literal["process", "thread"] = Field(
        default="process",
        description="Where the group-commit writer runs: a process of its own (its own GIL, "
        "so it works beside the server's event loop on a second core), or a server thread.",
    )
    partition_months_ahead: int = Field(
        default=3, ge=1, le=36, description="PostgreSQL: months of partitions kept made ahead."
    )
    auth_cache_entries: int = Field(
        default=10_000, ge=1, description="Entries kept per credential cache (apps, keys, answers)."
    )
    exports_per_app: int = Field(default=8, ge=1, description="Open exports per app, at most.")
    exports_per_client: int = Field(
        default=2, ge=1, description="Open exports per client IP, at most."
    )
    streams_per_app: int = Field(
        default=100, ge=1, description="Open live streams per app, at most (429 beyond)."
    )
    streams_per_client: int = Field(
        default=10, ge=1, description="Open live streams per client IP, at most (429 beyond)."
    )
    stream_queue_entries: int = Field(
        default=1_000,
        ge=1,
        description="Entries a live stream may have waiting; a subscriber further behind is "
        "told (`event: dropped`) and dropped, to resume with Last-Event-ID. New entries reach "
        "streams in pages of at most this many.",
    )
    stream_max_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="A live stream ends after this long; its client reconnects with "
        "Last-Event-ID, perhaps to another node, so long streams do not pin nodes.",
    )
    stream_heartbeat_seconds: float = Field(
        default=15.0, gt=0, description="A live stream sends a comment line this often."
    )
    stream_poll_seconds: float = Field(
        default=0.15,
        gt=0,
        le=5,
        description="How often an app with live subscribers checks its log for entries that "
        "other nodes appended (this node's own appends wake it at once).",
    )
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="A request body must arrive within this many seconds."
    )
    header_timeout_seconds: float = Field(
        default=10.0, gt=0, description="A request's headers must arrive within this many seconds."
    )
    send_stall_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A client that reads nothing of an answer for this "
        "long (its buffer full) is disconnected.",
    )
    header_max_bytes: int = Field(
        default=65_536, ge=4_096, description="Request line and headers, at most (else 431)."
    )
    jwks_allow_private: bool = Field(
        default=False,
        description="Let apps' identity providers publish their keys (jwks_uri) on private, "
        "loopback or link-local addresses, and over plain http: an IdP in your own network.",
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Let webhooks deliver to private, loopback or link-local addresses, and "
        "over plain http: a receiver in your own network.",
    )
    webhook_retry_base: float = Field(
        default=5.0,
        gt=0,
        description="Seconds before a failed webhook batch is first retried; each retry waits "
        "twice as long (with jitter, at most 12 h).",
    )
    webhook_retry_total: float = Field(
        default=259_200.0,
        gt=0,
        description="Seconds of retries (about three days) after which a destination that "
        "keeps failing is disabled, the reason shown.",
    )
    webhook_timeout: float = Field(
        default=10.0, gt=0, description="Seconds one webhook delivery may take, in all."
    )
    webhook_poll_interval: float = Field(
        default=1.0, gt=0, description="Seconds between looks for new entries to deliver."
    )
    webhook_concurrency: int = Field(
        default=16, ge=1, description="Webhook destinations one node delivers to at once."
    )
    webhook_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long a node's claim on a destination lasts unless renewed: another "
        "node takes over a dead node's destinations after this.",
    )
    demo_app: bool = Field(default=False, description="Create a demo app on first start.")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_cidrs(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'trailkeep.db').resolve()}"

    @cached_property
    def resolved_signing_key_file(self) -> Path:
        """Where the checkpoint signing key is kept (outside the database)."""
        return self.signing_key_file or self.data_dir / "signing.key"

    @cached_property
    def resolved_secret_key_file(self) -> Path:
        """Where the key that seals the database's secrets is kept (outside the database)."""
        return self.secret_key_file or self.data_dir / "secret.key"
