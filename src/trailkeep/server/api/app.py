"""Assemble the FastAPI application of one node."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trailkeep import __version__
from trailkeep.server.api import (
    actions,
    console,
    cors,
    docs,
    errors,
    events,
    integrity,
    live,
    manage,
    reads,
    rules,
    sdk_assets,
    subjects,
    system,
    webhooks,
)
from trailkeep.server.api.fastpath import WriteFastPath
from trailkeep.server.api.guard import RequestGuard
from trailkeep.server.api.schemas import BODY_SCHEMAS
from trailkeep.server.api.services import Services
from trailkeep.server.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """The Trailkeep HTTP app; its lifespan opens the database and starts the writer."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = Services.build(settings)
        app.state.services = svc
        await svc.start()
        # What exists once the server is up (modules, the app, pools, caches) lives as long as
        # the process. Frozen, the cyclic collector's full passes stop walking it again and
        # again under load, where each pass stalls the event loop: the write path's tail
        # latency and throughput pay for them.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await svc.stop()

    app = FastAPI(
        title="Trailkeep",
        version=__version__,
        summary="A verifiable, append-only audit log for your apps.",
        lifespan=lifespan,
        # FastAPI's own /docs and /redoc load their assets from a CDN: api/docs.py serves both
        # pages with the assets from the package, so they work offline.
        docs_url=None,
        redoc_url=None,
        # Trailkeep exports its own Prometheus metrics; FastAPI's OpenTelemetry wrapper on every
        # request would spend the write path's CPU on data nobody collects.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    errors.install(app)
    app.include_router(events.router)
    # Before reads: `/events/stream` would otherwise be taken for the entry id "stream".
    app.include_router(live.router)
    app.include_router(reads.router)
    app.include_router(actions.router)
    app.include_router(manage.router)
    app.include_router(subjects.router)
    app.include_router(webhooks.router)
    app.include_router(integrity.router)
    app.include_router(integrity.app_router)
    app.include_router(system.router)
    app.include_router(sdk_assets.router)
    app.include_router(docs.router)
    app.include_router(console.router)

    writes = [r for r in events.router.routes if isinstance(r, APIRoute)]
    app.add_middleware(rules.Rules)  # innermost: writes (no query, POST) never reach it
    app.add_middleware(WriteFastPath, routes=writes)  # innermost: after CORS and metrics
    app.add_middleware(cors.Cors)  # inside RequestMetrics, so refusals are counted too
    app.add_middleware(RequestMetrics)
    # Outermost of the app's own: a body's deadline covers every layer that reads it.
    app.add_middleware(RequestGuard, body_seconds=settings.body_timeout_seconds)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(BODY_SCHEMAS)
            app.openapi_schema = rules.finish(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


class RequestMetrics:
    """Count answered requests by route and status (pure ASGI: no body buffering).

    It also adds the rate-limit headers a request was given (``request.state.extra_headers``)
    to an answer that does not carry them yet: a read route's answer, whatever its type.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = scope.get("state", {}).get("extra_headers")
                if extra:
                    message = _with_headers(message, extra)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            svc: Services | None = getattr(scope["app"].state, "services", None)
            if svc is not None:
                route = getattr(scope.get("route"), "path", "unmatched")
                svc.metrics.requests.labels(scope["method"], route, str(status)).inc()


def _with_headers(message: Message, extra: Mapping[str, str]) -> Message:
    present = {name.lower() for name, _ in message.get("headers", ())}
    added = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in extra.items()
        if name.lower().encode("latin-1") not in present
    ]
    if not added:
        return message
    return {**message, "headers": [*message.get("headers", ()), *added]}
