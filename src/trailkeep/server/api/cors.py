"""CORS for the write routes: each app lists the web origins whose pages may record entries.

A browser page on an allowed origin gets its preflight answered and its responses (errors too)
readable; any other origin is refused with a 403 problem that carries no
``Access-Control-Allow-Origin``, before the request is counted, authenticated or appended.
Requests without an ``Origin`` header (backends, curl) and same-origin requests pass untouched:
CORS protects browsers' users, and a non-browser client can send any headers it likes anyway.
"""

from __future__ import annotations

import asyncio
import re
from typing import Final

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trailkeep.server.api.errors import problem_response
from trailkeep.server.api.services import Services

WRITE_PATH: Final = re.compile(r"^/v1/apps/([^/]+)/events(?:/batch)?$")
ALLOW_METHODS: Final = "POST"
ALLOW_HEADERS: Final = "Authorization, Content-Type, Idempotency-Key"
EXPOSE_HEADERS: Final = (
    "Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Idempotent-Replayed"
)
PREFLIGHT_MAX_AGE: Final = "600"  # browsers cap it anyway (Chromium: 2 hours)
ORIGIN_SHOWN_MAX: Final = 200


def _same_origin(scope: Scope, headers: Headers, origin: str) -> bool:
    host = headers.get("host")
    return host is not None and origin == f"{scope['scheme']}://{host}"


def _refusal(scope: Scope, detail: str) -> ASGIApp:
    return problem_response("forbidden", detail, scope["path"], {"Vary": "Origin"})


def _not_allowed(scope: Scope, origin: str) -> ASGIApp:
    shown = origin if len(origin) <= ORIGIN_SHOWN_MAX else origin[:ORIGIN_SHOWN_MAX] + "…"
    return _refusal(
        scope,
        f"the origin {shown} may not write to this app from a browser; "
        "`trailkeep apps update APP --allow-origin ORIGIN` allows an origin",
    )


class Cors:
    """Pure ASGI middleware: per-app allowed origins on ``POST /v1/apps/{app}/events[/batch]``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        match = WRITE_PATH.match(scope["path"])
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        method = scope["method"]
        preflight = method == "OPTIONS" and "access-control-request-method" in headers
        if (
            match is None
            or origin is None
            or not (preflight or method == "POST")
            or _same_origin(scope, headers, origin)
        ):
            await self.app(scope, receive, send)
            return
        allowed = await self._allowed(scope, match.group(1), origin)
        if not allowed:
            await _not_allowed(scope, origin)(scope, receive, send)
            return
        if preflight:
            await self._preflight(scope, headers, origin)(scope, receive, send)
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["Access-Control-Allow-Origin"] = origin
                out["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
                out.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, with_cors)

    async def _allowed(self, scope: Scope, app_id: str, origin: str) -> bool:
        svc: Services = scope["app"].state.services
        # The authenticator's brief cache: a change of origins is seen within seconds.
        app = await asyncio.to_thread(svc.auth.app, app_id)
        return app is not None and origin in app.allowed_origins

    @staticmethod
    def _preflight(scope: Scope, headers: Headers, origin: str) -> ASGIApp:
        requested = headers["access-control-request-method"]
        if requested != ALLOW_METHODS:
            return _refusal(scope, f"only POST may be sent here cross-origin, not {requested}")
        return Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
                "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            },
        )
