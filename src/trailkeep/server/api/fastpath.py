"""The two write routes, dispatched straight to their endpoints on the hot path.

A request to a FastAPI route passes through the exception middleware, FastAPI's exit-stack and
telemetry middleware, the router's linear match over every route, and the route's own
request/response wrapper: each a coroutine, most with a ``send`` wrapper of their own. On the
write path those layers take a large share of the event loop's time, and one interpreter's
event loop is what limits ``POST /events``. This middleware, the innermost of the app's own,
sends ``POST /v1/apps/{app_id}/events[/batch]`` to the same endpoint functions directly.

What the skipped layers did is kept: the matched route is put in the scope (the request metrics
label by it), the path parameter is set as the router sets it, and an exception is answered by
the app's own exception handler for its type, as the exception middleware would. Anything no
handler claims propagates to the server-error middleware outside, as it would without this
middleware. Every other request, and every other method on these paths, goes through the app
unchanged; the routes stay in the router, and so in the OpenAPI document.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from trailkeep.server.api.cors import WRITE_PATH

Handler = Callable[[Request, Exception], Awaitable[Response]]


class WriteFastPath:
    """Pure ASGI middleware: ``POST`` to the write routes goes straight to the endpoint."""

    def __init__(self, app: ASGIApp, routes: Iterable[APIRoute]) -> None:
        self.app = app
        posts = {r.path.rsplit("/", 1)[-1]: r for r in routes if "POST" in (r.methods or ())}
        self._single, self._batch = posts["events"], posts["batch"]
        for route in (self._single, self._batch):
            # The endpoint is called with the request alone: nothing is solved for it.
            if list(inspect.signature(route.endpoint).parameters) != ["request"]:
                name = route.endpoint.__name__
                raise TypeError(f"{name} must take exactly one parameter, `request`")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        match = WRITE_PATH.match(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        route = self._batch if scope["path"].endswith("/batch") else self._single
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {"app_id": match.group(1)}
        request = Request(scope, receive, send)
        try:
            response: Response = await route.endpoint(request)
        except Exception as exc:
            handler = _handler_for(scope["app"].exception_handlers, exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)


def _handler_for(handlers: dict[Any, Handler], exc: Exception) -> Handler | None:
    # The exception middleware's rule: the handler of the nearest class in the MRO. A handler
    # for `Exception` itself belongs to the server-error middleware, which is still outside.
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None
