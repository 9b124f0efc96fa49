"""ASGI and WSGI middlewares that bind the end user of each request for the SDK.

Wrap the web app once; then, in any handler, ``await audit.log("order.refund", ...)`` (or the
sync ``audit.log``) forwards the user's session token, IP address and user agent, so the entry's
actor and context are the end user's rather than the backend's. Both middlewares are framework
free: the ASGI one works with FastAPI, Starlette and any ASGI app; the WSGI one with Flask
(``app.wsgi_app = TrailkeepWSGIMiddleware(app.wsgi_app)``) and any WSGI app.
"""

from __future__ import annotations

import contextvars
import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from .context import RequestContext, bound, set_current

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Capture:
    """Where to find the end user in a request.

    ``session_header``: the header holding the user's Trailkeep session token
    (``authorization`` reads ``Bearer <token>``; ``None`` to skip headers).
    ``session_cookie``: a cookie holding it, used when the header has none.
    ``client_ip_header``: a header your own reverse proxy sets to the client's address (for a
    list such as ``X-Forwarded-For``, the last entry, the one your proxy added); by default the
    TCP peer, which servers like uvicorn already take from trusted proxies' headers.
    """

    session_header: str | None = "authorization"
    session_cookie: str | None = None
    client_ip_header: str | None = None

    def session(self, headers: Mapping[str, str]) -> str | None:
        """The session token in the request, if any."""
        if self.session_header is not None:
            value = headers.get(self.session_header.lower(), "").strip()
            if self.session_header.lower() == "authorization":
                scheme, _, token = value.partition(" ")
                value = token.strip() if scheme.lower() == "bearer" else ""
            if value:
                return value
        if self.session_cookie is not None and "cookie" in headers:
            try:
                morsel = SimpleCookie(headers["cookie"]).get(self.session_cookie)
            except CookieError:
                return None
            if morsel is not None and morsel.value:
                return morsel.value
        return None

    def client_ip(self, headers: Mapping[str, str], peer: str | None) -> str | None:
        """The end user's IP address (only a valid one: the server refuses anything else)."""
        candidate = peer
        if self.client_ip_header is not None:
            value = headers.get(self.client_ip_header.lower())
            if value:
                candidate = value.split(",")[-1].strip()
        if candidate is None:
            return None
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            return None

    def context(self, headers: Mapping[str, str], peer: str | None) -> RequestContext:
        """The request's end user: session token, IP address and user agent."""
        return RequestContext(
            session=self.session(headers),
            client_ip=self.client_ip(headers, peer),
            user_agent=headers.get("user-agent") or None,
            captured=True,
        )


class TrailkeepASGIMiddleware:
    """Pure ASGI middleware: binds each HTTP or WebSocket request's end user for the SDK."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        session_header: str | None = "authorization",
        session_cookie: str | None = None,
        client_ip_header: str | None = None,
    ) -> None:
        """Wrap ``app``; see :class:`Capture` for the options."""
        self.app = app
        self.capture = Capture(session_header, session_cookie, client_ip_header)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request with its end user bound."""
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", ()):
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            # Repeated headers are joined, as HTTP allows (cookies with "; ").
            if key in headers:
                headers[key] += ("; " if key == "cookie" else ", ") + text
            else:
                headers[key] = text
        client = scope.get("client")
        peer = str(client[0]) if client else None
        context = self.capture.context(headers, peer)
        with bound(context):
            await self.app(scope, receive, send)


class TrailkeepWSGIMiddleware:
    """WSGI middleware (Flask: ``app.wsgi_app = TrailkeepWSGIMiddleware(app.wsgi_app)``)."""

    def __init__(
        self,
        app: WSGIApplication,
        *,
        session_header: str | None = "authorization",
        session_cookie: str | None = None,
        client_ip_header: str | None = None,
    ) -> None:
        """Wrap ``app``; see :class:`Capture` for the options."""
        self.app = app
        self.capture = Capture(session_header, session_cookie, client_ip_header)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Run the request, and the iteration of its body, with its end user bound."""
        headers = {
            name[5:].replace("_", "-").lower(): str(value)
            for name, value in environ.items()
            if name.startswith("HTTP_")
        }
        peer = environ.get("REMOTE_ADDR")
        context = self.capture.context(headers, str(peer) if peer else None)
        # A copied context, entered for the call and for each step of the body: a streamed
        # body may log while it is produced, after the app has returned.
        run = contextvars.copy_context()
        run.run(set_current, context)
        return _ContextBody(run.run(self.app, environ, start_response), run)


class _ContextBody:
    """A WSGI body iterated inside the request's context; closes the app's body."""

    def __init__(self, body: Iterable[bytes], run: contextvars.Context) -> None:
        self._body = body
        self._iterator: Iterator[bytes] | None = None
        self._run = run

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self._run.run(iter, self._body)
        return self._run.run(next, self._iterator)

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            self._run.run(close)
