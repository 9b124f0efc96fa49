"""The long-lived parts of one server node, built at start-up and shared by every request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.requests import Request

from trailkeep.log.record import Origin
from trailkeep.server.api.metrics import Metrics
from trailkeep.server.api.ratelimit import RateLimiter
from trailkeep.server.api.streams import ExportSlots
from trailkeep.server.auth import Authenticator
from trailkeep.server.delivery import Deliverer
from trailkeep.server.governance import RETENTION, Administrator
from trailkeep.server.governance.retention import Retention
from trailkeep.server.governance.subjects import Subjects
from trailkeep.server.governance.webhooks import Webhooks
from trailkeep.server.ingest.checkpointer import Checkpointer, load_signer
from trailkeep.server.ingest.process import WriterProcess
from trailkeep.server.ingest.writer import Appender, Ingest, IngestStats
from trailkeep.server.jwks import URIS_MAX, JwksCache
from trailkeep.server.live import Hub
from trailkeep.server.secrets import SecretBox
from trailkeep.server.settings import Settings
from trailkeep.server.store import Store

log = logging.getLogger(__name__)

# Daily: partitions are made months ahead, so a node that was down for a while is still fine.
MAINTENANCE_INTERVAL_SECONDS = 24 * 3600


@dataclass
class Services:
    """Everything a request handler needs, owned by the app's lifespan."""

    settings: Settings
    store: Store
    ingest: Appender
    auth: Authenticator
    limiter: RateLimiter  # writes
    read_limiter: RateLimiter
    metrics: Metrics
    checkpointer: Checkpointer
    exports: ExportSlots
    admin: Administrator
    retention: Retention
    subjects: Subjects
    webhooks: Webhooks
    deliverer: Deliverer
    live: Hub
    live_slots: ExportSlots  # open live streams, per app and per client
    maintenance_task: asyncio.Task[None] | None = None
    retention_task: asyncio.Task[None] | None = None

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Open the store (migrating it) and wire the parts together."""
        secrets = SecretBox.load(
            settings.resolved_secret_key_file, settings.previous_secret_key_file
        )
        store = Store(settings.resolved_database_url, secrets=secrets)
        store.migrate()
        store.check_secrets()
        metrics = Metrics()
        signer = load_signer(settings.resolved_signing_key_file, settings.origin)
        checkpointer = Checkpointer(store, signer, settings.origin)
        ttl = timedelta(seconds=settings.idempotency_ttl_seconds)
        stats = IngestStats(on_commit=metrics.on_commit)
        live = Hub(store, settings.stream_queue_entries, settings.stream_poll_seconds)
        metrics.stream_subscribers.set_function(live.subscribers)
        deliverer = Deliverer(store, settings)

        def appended(app_ids: set[str]) -> None:
            checkpointer.mark(app_ids)
            live.wake(app_ids)  # this node's subscribers hear of its own appends at once
            deliverer.wake(app_ids)  # and so do its webhook deliveries

        ingest: Appender
        if settings.writer == "process":
            ingest = WriterProcess(
                settings.resolved_database_url,
                idempotency_ttl=ttl, stats=stats, on_appended=appended,
            )  # fmt: skip
        else:
            ingest = Ingest(store, idempotency_ttl=ttl, stats=stats, on_appended=appended)
        jwks = JwksCache(
            allow_private=settings.jwks_allow_private,
            max_entries=min(URIS_MAX, settings.auth_cache_entries),
        )
        auth = Authenticator(store, max_entries=settings.auth_cache_entries, jwks=jwks)
        metrics.track_caches(auth.cache_sizes)
        return cls(
            settings=settings,
            store=store,
            ingest=ingest,
            auth=auth,
            limiter=RateLimiter(
                settings.rate_limit,
                settings.redis_url,
                name="writes",
                on_failure=settings.rate_limit_on_redis_failure,
                on_redis_failure=metrics.on_redis_failure,
            ),
            read_limiter=RateLimiter(
                settings.read_rate_limit,
                settings.redis_url,
                name="reads",
                on_failure=settings.rate_limit_on_redis_failure,
                on_redis_failure=metrics.on_redis_failure,
            ),
            metrics=metrics,
            checkpointer=checkpointer,
            exports=ExportSlots(settings.exports_per_app, settings.exports_per_client),
            admin=Administrator(
                store,
                settings.metadata_max_bytes,
                timedelta(seconds=settings.retention_change_delay),
            ),
            retention=Retention(store, settings.metadata_max_bytes),
            subjects=Subjects(store, settings.metadata_max_bytes),
            webhooks=Webhooks(store, settings.metadata_max_bytes),
            deliverer=deliverer,
            live=live,
            live_slots=ExportSlots(
                settings.streams_per_app,
                settings.streams_per_client,
                code="too_many_streams",
                noun="live streams",
            ),
        )

    async def start(self) -> None:
        """Start the background tasks."""
        # This month's partition before the first write; then maintenance runs daily.
        await asyncio.to_thread(self._guarded, self._partitions)
        await self.ingest.start()
        await self.checkpointer.start()
        self.maintenance_task = asyncio.create_task(self._maintain(), name="trailkeep-maintain")
        self.retention_task = asyncio.create_task(self._retain(), name="trailkeep-retention")
        await self.deliverer.start()

    async def stop(self) -> None:
        """Drain the writer and close the database."""
        for task in (self.maintenance_task, self.retention_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.deliverer.stop()
        await self.live.stop()
        await self.ingest.stop()
        await self.checkpointer.stop()
        self.store.close()

    async def _maintain(self) -> None:
        while True:
            await asyncio.to_thread(self._guarded, self._partitions)
            await asyncio.to_thread(self._guarded, self._sweep)
            await asyncio.sleep(MAINTENANCE_INTERVAL_SECONDS)

    async def _retain(self) -> None:
        # Several nodes may run this at once: one of them purges an app while the others pass
        # it by (Store.purge_lease), and every chunk takes the app's lock, so a CLI purge
        # beside them takes turns with them and finds the horizon already raised.
        while True:
            await asyncio.sleep(self.settings.purge_interval)
            now, origin = datetime.now(UTC), Origin(ip=None, user_agent=None)
            # A shorter retention whose notice period is over applies before the purge.
            changed = await asyncio.to_thread(self.admin.apply_due, now, RETENTION, origin)
            reports = await asyncio.to_thread(self.retention.run, now, RETENTION, origin)
            grown = {report.app_id for report in reports if report.entries} | set(changed)
            if grown:
                self.checkpointer.mark(grown)
            for report in reports:
                if report.erased:
                    log.info("retention erased %d entries of %s", report.erased, report.app_id)

    def _partitions(self) -> None:
        made = self.store.ensure_partitions(self.settings.partition_months_ahead)
        if made:
            log.info("created %d partition(s) of events ahead", made)

    def _sweep(self) -> None:
        swept = self.store.sweep_idempotency(
            timedelta(seconds=self.settings.idempotency_ttl_seconds)
        )
        if swept:
            log.info("swept %d expired idempotency keys", swept)

    @staticmethod
    def _guarded(job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:
            # Appends go on: rows of a month with no partition land in the default one, and
            # expired idempotency keys are also refused when they are read.
            log.exception("storage maintenance failed; it runs again at the next interval")


def services(request: Request) -> Services:
    """The node's services, from a request."""
    found: Services = request.app.state.services
    return found
