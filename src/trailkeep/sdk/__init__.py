"""The Trailkeep Python SDK: record and read an app's audit log, and verify it locally.

    from trailkeep.sdk import Client

    client = Client("https://audit.example", app="app_...", key="tk_...")
    entry = client.audit.log("order.refund", target_type="order", target_id="ord_9")

:class:`Client` and :class:`AsyncClient` are twins; ``docs/sdk.md`` has complete examples.
"""

from __future__ import annotations

from .abuffer import AsyncAuditBuffer
from .aclient import AsyncAudit, AsyncClient
from .buffer import AuditBuffer, BufferStats
from .build import Filters, Page
from .client import Audit, Client
from .context import RequestContext, bind, current
from .errors import (
    ConfigurationError,
    ConnectionFailed,
    Forbidden,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    TrailkeepError,
    Unauthenticated,
    VerificationError,
)
from .middleware import TrailkeepASGIMiddleware, TrailkeepWSGIMiddleware
from .models import (
    Actor,
    Context,
    Entry,
    Erased,
    Event,
    GroupCount,
    InclusionProof,
    ProvenEntry,
    SignedCheckpoint,
    Stats,
    Target,
    Verified,
)
from .retry import RetryEvent, RetryPolicy
from .sessions import Sessions, mint_session

__all__ = [
    "Actor",
    "AsyncAudit",
    "AsyncAuditBuffer",
    "AsyncClient",
    "Audit",
    "AuditBuffer",
    "BufferStats",
    "Client",
    "ConfigurationError",
    "ConnectionFailed",
    "Context",
    "Entry",
    "Erased",
    "Event",
    "Filters",
    "Forbidden",
    "GroupCount",
    "IdempotencyConflict",
    "InclusionProof",
    "InvalidRequest",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "ProvenEntry",
    "RateLimited",
    "RequestContext",
    "RetryEvent",
    "RetryPolicy",
    "ServerError",
    "Sessions",
    "SignedCheckpoint",
    "Stats",
    "Target",
    "TrailkeepASGIMiddleware",
    "TrailkeepError",
    "TrailkeepWSGIMiddleware",
    "Unauthenticated",
    "VerificationError",
    "Verified",
    "bind",
    "current",
    "mint_session",
]
