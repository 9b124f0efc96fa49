"""``/console``: the admin console, static files from ``server/console/static``, nothing else.

The console is one more client of the API: it has no route of its own beyond these files. Every
answer carries a strict Content-Security-Policy (scripts, styles and requests from this origin
only, no inline script or style, never framed), ``nosniff`` and ``no-referrer``. The files are
read and hashed once per process; each is served with its content hash as ETag and
``no-cache``, so a browser revalidates (a cheap 304) and an upgraded server is never mixed with
a stale module.

The modules, the stylesheet and the icon (not the page) are also readable from any origin: an
app's page loads ``/console/embed.mjs`` cross-origin (``<trailkeep-log>``), and a module script
from another origin needs ``Access-Control-Allow-Origin`` on itself and on every module it
imports; the embed reads the stylesheet with ``fetch`` to adopt it into its shadow root. They
are public code, the same for everyone, sent without credentials. The page itself keeps
``frame-ancestors 'none'`` and gets no CORS header: the console is never framed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Final

from fastapi import APIRouter
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

router = APIRouter(prefix="/console", include_in_schema=False)

STATIC: Final = "server/console/static"
#: The data: images are the SVG icons a stylesheet may inline; nothing else needs an exception.
POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
MEDIA_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: A served name: one path segment, lower case, one of the media types' suffixes.
NAME: Final = re.compile(r"^[a-z0-9][a-z0-9-]*\.(html|mjs|css|svg)$")
HEADERS: Final = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    """One console file: its bytes, media type and ETag."""

    body: bytes
    media_type: str
    etag: str


@cache
def static_files() -> dict[str, StaticFile]:
    """Every console file by name, read and hashed once per process."""
    found: dict[str, StaticFile] = {}
    for item in files("trailkeep").joinpath(STATIC).iterdir():
        match = NAME.match(item.name)
        if match is None or not item.is_file():
            continue
        body = item.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        found[item.name] = StaticFile(body, MEDIA_TYPES["." + match.group(1)], etag)
    return found


#: What the files other than the page add (see the module's docstring).
SHARED: Final = {
    "Access-Control-Allow-Origin": "*",
    "Cross-Origin-Resource-Policy": "cross-origin",
}


def _serve(request: Request, name: str) -> Response:
    static = static_files().get(name)
    if static is None:
        raise HTTPException(404, "no such console file")
    shared = SHARED if not name.endswith(".html") else {}
    headers = {**HEADERS, **shared, "ETag": static.etag}
    condition = request.headers.get("if-none-match")
    if condition is not None and static.etag in {c.strip() for c in condition.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(static.body, headers=headers, media_type=static.media_type)


# One route for both methods (not a GET and a HEAD route): `OPTIONS` and 405 name the methods
# of the first route that matches a path outside the API document, so both must be on it.
@router.api_route("", methods=["GET", "HEAD"])
async def page(request: Request) -> Response:
    """The console's one page; the session or key arrives in the fragment or the form."""
    return _serve(request, "index.html")


@router.api_route("/{name}", methods=["GET", "HEAD"])
async def asset(request: Request, name: str) -> Response:
    """A module, stylesheet or icon of the console."""
    return _serve(request, name)
