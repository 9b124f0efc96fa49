"""The long-lived parts of one server node, built at start-up and shared by every request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from starlette.requests import Request

from trailkeep.api.metrics import Metrics
from trailkeep.api.ratelimit import WriteLimiter
from trailkeep.auth import Authenticator
from trailkeep.checkpointer import Checkpointer, load_signer
from trailkeep.ingest import Ingest, IngestStats
from trailkeep.settings import Settings
from trailkeep.store import Store


@dataclass
class Services:
    """Everything a request handler needs, owned by the app's lifespan."""

    settings: Settings
    store: Store
    ingest: Ingest
    auth: Authenticator
    limiter: WriteLimiter
    metrics: Metrics
    checkpointer: Checkpointer

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Open the store (migrating it) and wire the parts together."""
        store = Store(settings.resolved_database_url)
        store.migrate()
        metrics = Metrics()
        signer = load_signer(settings.resolved_signing_key_file, settings.origin)
        checkpointer = Checkpointer(store, signer, settings.origin)
        ingest = Ingest(
            store,
            idempotency_ttl=timedelta(seconds=settings.idempotency_ttl_seconds),
            stats=IngestStats(on_commit=metrics.on_commit),
            on_appended=checkpointer.mark,
        )
        return cls(
            settings=settings,
            store=store,
            ingest=ingest,
            auth=Authenticator(store),
            limiter=WriteLimiter(settings.rate_limit, settings.redis_url),
            metrics=metrics,
            checkpointer=checkpointer,
        )

    async def start(self) -> None:
        """Start the background tasks."""
        await self.ingest.start()
        await self.checkpointer.start()

    async def stop(self) -> None:
        """Drain the writer and close the database."""
        await self.ingest.stop()
        await self.checkpointer.stop()
        self.store.close()


def services(request: Request) -> Services:
    """The node's services, from a request."""
    found: Services = request.app.state.services
    return found
