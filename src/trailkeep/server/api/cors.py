"""CORS for the API: each app lists the web origins whose pages may use it from a browser.

Those pages record entries (the browser SDK) and read the log (the embedded console,
``<trailkeep-log>``: reads still need a credential that may read, and each is recorded like any
person's read). A browser page on an allowed origin gets its preflight answered and its
responses (errors too) readable; any other origin is refused with a 403 problem that carries no
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
#: What the embedded viewer reads: the log, one entry (with its proof), the live stream,
#: counts, the known actions (completion), the checkpoint and proofs. Not export, not settings:
#: the embed is a viewer.
READ_PATH: Final = re.compile(
    r"^/v1/apps/([^/]+)/"
    r"(?:events(?:/[^/]+)?|stats|actions|checkpoint|proofs/(?:inclusion|consistency))$"
)
ALLOW_HEADERS: Final = {
    "POST": "Authorization, Content-Type, Idempotency-Key",
    "GET": "Authorization, Trailkeep-Reader",
}
EXPOSE_HEADERS: Final = {
    "POST": "Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, "
    "Idempotent-Replayed",
    "GET": "Link, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset",
}
PREFLIGHT_MAX_AGE: Final = "600"  # browsers cap it anyway (Chromium: 2 hours)
ORIGIN_SHOWN_MAX: Final = 200


def _same_origin(scope: Scope, headers: Headers, origin: str) -> bool:
    host = headers.get("host")
    return host is not None and origin == f"{scope['scheme']}://{host}"


def _refusal(scope: Scope, detail: str) -> ASGIApp:
    return problem_response("forbidden", detail, scope["path"], {"Vary": "Origin"})


def _not_allowed(scope: Scope, origin: str, method: str) -> ASGIApp:
    shown = origin if len(origin) <= ORIGIN_SHOWN_MAX else origin[:ORIGIN_SHOWN_MAX] + "…"
    verb = "read" if method == "GET" else "write to"
    return _refusal(
        scope,
        f"the origin {shown} may not {verb} this app from a browser; "
        "`trailkeep apps update APP --allow-origin ORIGIN` allows an origin",
    )


def _route(path: str) -> tuple[str, frozenset[str]] | None:
    """The app a CORS-enabled path names and the methods a page may use on it; else None."""
    methods: set[str] = set()
    app_id = None
    for pattern, method in ((WRITE_PATH, "POST"), (READ_PATH, "GET")):
        match = pattern.match(path)
        if match is not None:
            app_id = match.group(1)
            methods.add(method)
    return None if app_id is None else (app_id, frozenset(methods))


class Cors:
    """Pure ASGI middleware: per-app allowed origins on the app's event writes and reads."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = _route(scope["path"])
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        method = scope["method"]
        preflight = method == "OPTIONS" and "access-control-request-method" in headers
        if (
            route is None
            or origin is None
            or not (preflight or method in route[1])
            or _same_origin(scope, headers, origin)
        ):
            await self.app(scope, receive, send)
            return
        app_id, methods = route
        allowed = await self._allowed(scope, app_id, origin)
        if not allowed:
            asked = headers["access-control-request-method"] if preflight else method
            await _not_allowed(scope, origin, asked)(scope, receive, send)
            return
        if preflight:
            await self._preflight(scope, headers, origin, methods)(scope, receive, send)
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["Access-Control-Allow-Origin"] = origin
                out["Access-Control-Expose-Headers"] = EXPOSE_HEADERS[method]
                out.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, with_cors)

    async def _allowed(self, scope: Scope, app_id: str, origin: str) -> bool:
        svc: Services = scope["app"].state.services
        # The authenticator's brief cache: a change of origins is seen within seconds.
        app = await asyncio.to_thread(svc.auth.app, app_id)
        return app is not None and origin in app.allowed_origins

    @staticmethod
    def _preflight(scope: Scope, headers: Headers, origin: str, methods: frozenset[str]) -> ASGIApp:
        requested = headers["access-control-request-method"]
        if requested not in methods:
            shown = " or ".join(sorted(methods, reverse=True))
            return _refusal(scope, f"only {shown} may be sent here cross-origin, not {requested}")
        return Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": requested,
                "Access-Control-Allow-Headers": ALLOW_HEADERS[requested],
                "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
                "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            },
        )
