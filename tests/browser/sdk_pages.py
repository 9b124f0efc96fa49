"""SDK pages for the browser tests: the page server on another loopback origin, pages that load
the SDK, calls into it, and the fetches it made."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from playwright.sync_api import Browser, Page

from tests.servers import Server, Tenant, free_port

# Wraps window.fetch before any page script runs, to record each call the SDK makes.
RECORD_FETCHES: Final = """
window.__attempts = [];
const realFetch = window.fetch.bind(window);
window.fetch = async (input, init) => {
  const url = String(input instanceof Request ? input.url : input);
  const headers = (init && init.headers) || {};
  const record = {url, start: performance.now(), keepalive: Boolean(init && init.keepalive),
                  key: headers["Idempotency-Key"] || null};
  if (url.includes("/v1/apps/")) window.__attempts.push(record);
  try {
    const response = await realFetch(input, init);
    record.status = response.status;
    record.end = performance.now();
    record.retryAfter = response.headers.get("Retry-After");
    record.replayed = response.headers.get("Idempotent-Replayed");
    return response;
  } catch (error) {
    record.error = String(error);
    throw error;
  }
};
"""

# Calls trailkeep.audit.<method>(arg) in the page; returns the outcome as plain data.
CALL: Final = """async ([method, arg]) => {
  try {
    return {ok: true, value: await trailkeep.audit[method](arg)};
  } catch (e) {
    return {ok: false, name: e.name, code: e.code, status: e.status, detail: e.detail,
            message: e.message, isTrailkeepError: e instanceof trailkeep.TrailkeepError};
  }
}"""


class PageServer:
    """Serves test pages from its own loopback origin, plus `/session` (the app's 'backend')."""

    def __init__(self) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        # The same server under another name: another origin, for refusals.
        self.other_origin = f"http://localhost:{self.port}"
        self.pages: dict[str, str] = {}
        self.session = ""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/session":
                    self._answer(200, "text/plain", owner.session)
                elif path in owner.pages:
                    self._answer(200, "text/html; charset=utf-8", owner.pages[path])
                else:
                    self._answer(404, "text/plain", "not found")

            def _answer(self, status: int, media_type: str, text: str) -> None:
                body = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", media_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> PageServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def add(self, path: str, html: str, origin: str | None = None) -> str:
        """Serve ``html`` at ``path``; return its URL (on ``origin``, ours by default)."""
        self.pages[path] = html
        return (origin or self.origin) + path


def sdk_page_html(server: Server, module: bool = False) -> str:
    """A blank page that loads the SDK from the Trailkeep server (a classic script by default)."""
    if module:
        script = (
            f'<script type="module">import trailkeep from "{server.url}/sdk/trailkeep.mjs";'
            "window.trailkeep = trailkeep;</script>"
        )
    else:
        script = f'<script src="{server.url}/sdk/trailkeep.js"></script>'
    return f'<!doctype html><meta charset="utf-8"><title>SDK test</title>{script}'


@contextmanager
def sdk_page(
    browser: Browser,
    pages: PageServer,
    server: Server,
    tenant: Tenant,
    session: str,
    origin: str | None = None,
    **options: Any,
) -> Iterator[Page]:
    """A page on our origin (or ``origin``) with the SDK loaded and set up for ``tenant``."""
    context = browser.new_context()
    context.add_init_script(RECORD_FETCHES)
    try:
        page = context.new_page()
        page.goto(pages.add("/sdk.html", sdk_page_html(server), origin))
        page.wait_for_function("() => window.trailkeep !== undefined")
        init = {"endpoint": server.url, "app": tenant.app_id, "session": session, **options}
        page.evaluate("(o) => { trailkeep.init(o); }", init)
        yield page
    finally:
        context.close()


def sdk_call(page: Page, method: str, arg: Any) -> dict[str, Any]:
    """``trailkeep.audit.<method>(arg)`` in the page: {ok, value} or the error's fields."""
    outcome: dict[str, Any] = page.evaluate(CALL, [method, arg])
    return outcome


def sdk_call_json(page: Page, method: str, arg_json: str) -> dict[str, Any]:
    """Like :func:`sdk_call`, the argument given as JSON text (for values Python cannot pass)."""
    outcome: dict[str, Any] = page.evaluate(
        f"async (text) => ({CALL})([{json.dumps(method)}, JSON.parse(text)])", arg_json
    )
    return outcome


def recorded_fetches(page: Page) -> list[dict[str, Any]]:
    """The SDK's fetches to the API so far, as recorded by ``RECORD_FETCHES``."""
    recorded: list[dict[str, Any]] = page.evaluate("() => window.__attempts")
    return recorded
