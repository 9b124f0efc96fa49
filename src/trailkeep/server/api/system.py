"""Liveness and metrics."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from trailkeep import __version__
from trailkeep.server.api.services import services

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="Liveness")
async def healthz(request: Request) -> dict[str, str]:
    """Answers while the node is up; ``rate_limiter`` says when Redis is out of reach."""
    svc = services(request)
    degraded = svc.limiter.degraded or svc.read_limiter.degraded
    return {
        "status": "ok",
        "version": __version__,
        "rate_limiter": f"degraded ({svc.settings.rate_limit_on_redis_failure})"
        if degraded
        else "ok",
    }


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Requests, entries appended, batch sizes and commit latency, in Prometheus text."""
    return Response(services(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)
