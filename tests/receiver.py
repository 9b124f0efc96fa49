"""A real webhook receiver for the tests: a threaded HTTP server on loopback.

It records every request (headers and body) and answers as told: 2xx, 500, 410, 429 with a
``Retry-After``, or a stall longer than the server's timeout. It can be stopped and started
again on the same port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from standardwebhooks.webhooks import Webhook


@dataclass
class Received:
    """One request as it arrived, and when."""

    headers: dict[str, str]
    body: bytes
    at: float
    status: int

    def json(self) -> Any:
        """The body, parsed."""
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """Records requests; ``answers`` is a queue of (status, headers) to give, then ``default``."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    default: int = 204
    stall: float = 0.0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """Where to deliver."""
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        """Listen (on the same port as before, after a restart)."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if receiver.stall:
                    time.sleep(receiver.stall)
                with receiver._lock:
                    status, extra = (
                        receiver.answers.pop(0) if receiver.answers else (receiver.default, {})
                    )
                    receiver.requests.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body,
                                 time.monotonic(), status)
                    )  # fmt: skip
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are refused until ``start``)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ok(self) -> list[Received]:
        """The requests answered with 2xx."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def wait(self, predicate: Any, timeout: float = 30.0) -> None:
        """Wait until ``predicate(self)`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out; received {[r.json() for r in self.requests]}")

    def verified(self, secret: str) -> list[Any]:
        """Every 2xx-answered body, each checked by the standardwebhooks package's verifier."""
        hook = Webhook(secret)
        return [hook.verify(r.body, r.headers) for r in self.ok()]


@contextmanager
def receiver(**options: Any) -> Iterator[Receiver]:
    """A started receiver, stopped afterwards."""
    made = Receiver(**options).start()
    try:
        yield made
    finally:
        made.stop()
