"""Bounded request bodies in time, and early answers that ordinary clients can read.

``RequestGuard`` is the app's outermost middleware. It does two things to every HTTP request:

- **A deadline for the body.** A client that sends its body too slowly (a slowloris) would
  hold a task and its buffers forever; once ``body_seconds`` have passed since the request's
  headers arrived, a read of the body fails with 408 ``request_timeout``.
- **Draining before closing.** An answer given before the body was read (a 413 from
  Content-Length, a 401, a 429) used to close the connection while the client was still
  sending: clients such as urllib, which read the answer only after sending the whole body,
  then saw "connection reset" instead of the answer. The answer's bytes go out first, then
  the rest of the body is read and dropped (up to ``drain_bytes``, within the deadline), then
  the answer is completed and the connection closed as the client asked.
"""

from __future__ import annotations

import asyncio
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trailkeep.server.api.errors import Problem

#: Beyond this the rest of a refused body is not read: the connection is closed instead.
DRAIN_BYTES: Final = 64 << 20


class BodyTimeout(Problem):
    """The request's body did not arrive within its deadline."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            "request_timeout",
            f"the request body did not arrive within {seconds:g} seconds",
            {"Connection": "close"},
        )


class RequestGuard:
    """Pure ASGI middleware: a deadline on the request body, and a drain before closing."""

    def __init__(self, app: ASGIApp, body_seconds: float, drain_bytes: int = DRAIN_BYTES) -> None:
        self.app = app
        self.body_seconds = body_seconds
        self.drain_bytes = drain_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await _Exchange(self, scope, receive, send).run()


class _Exchange:
    """One request and its answer, as the guard sees them."""

    def __init__(self, guard: RequestGuard, scope: Scope, receive: Receive, send: Send) -> None:
        self.guard = guard
        self.scope = scope
        self._receive = receive
        self._send = send
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.deadline = loop.time() + guard.body_seconds
        declared, chunked = None, False
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():
                declared = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        self.declared = declared
        # Whether the whole body has been received (a request without one has nothing left).
        self.body_done = not chunked and not declared
        self.received = 0

    async def run(self) -> None:
        if self.body_done:  # nothing to time out or drain: the request goes through untouched
            await self.guard.app(self.scope, self._receive, self._send)
            return
        await self.guard.app(self.scope, self.receive, self.send)

    async def receive(self) -> Message:
        if self.body_done:
            # Past the body, a read only waits for a disconnect (streaming answers listen so).
            return await self._receive()
        remaining = self.deadline - self.loop.time()
        try:
            async with asyncio.timeout(max(remaining, 0.0)):
                message = await self._receive()
        except TimeoutError:
            raise BodyTimeout(self.guard.body_seconds) from None
        self._note(message)
        return message

    def _note(self, message: Message) -> None:
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.body_done = True
        else:  # http.disconnect
            self.body_done = True

    async def send(self, message: Message) -> None:
        final = message["type"] == "http.response.body" and not message.get("more_body", False)
        if not final or self.body_done or not self._drainable():
            await self._send(message)
            return
        # The answer goes out before the body is read, so a client that reads while it sends
        # sees it at once; it is completed (and the connection closed) once the body is in.
        await self._send({**message, "more_body": True})
        await self._drain()
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    def _drainable(self) -> bool:
        if self.loop.time() >= self.deadline:
            return False  # a client too slow for its deadline is not waited for again
        if self.declared is not None:
            return self.declared - self.received <= self.guard.drain_bytes
        return True  # chunked: drained up to the same number of bytes, then closed

    async def _drain(self) -> None:
        start = self.received
        try:
            while not self.body_done and self.received - start <= self.guard.drain_bytes:
                await self.receive()
        except BodyTimeout:
            pass  # the answer is complete all the same; the connection closes after it
