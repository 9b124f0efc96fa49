"""The HTTP API: FastAPI routes, RFC 9457 errors, rate limits."""

from trailkeep.server.api.app import create_app

__all__ = ["create_app"]
