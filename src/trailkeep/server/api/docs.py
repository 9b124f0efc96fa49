"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), with their assets served by the node itself.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a machine without internet (an
air-gapped deployment, a laptop on a plane) they were blank. The assets come from the
``fastapi-offline`` package, pinned in ``pyproject.toml``: a maintained copy of the same files,
updated by upgrading a pin rather than by copying files into this repository.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.resources import files
from typing import Final

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)

PREFIX: Final = "/docs/assets"
#: The files served under PREFIX, and their media types.
ASSETS: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
TITLE: Final = "Trailkeep API"
#: The pages may load from the server only. ReDoc shows its maker's logo from a CDN in its menu
#: (it has no option to leave it out): refused here, the image hides itself, and a page opened
#: on an isolated network asks nothing of the internet. Swagger UI's start-up is an inline
#: script, ReDoc's search runs in a blob: worker.
POLICY: Final = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = POLICY
    return page


@cache
def _asset(name: str) -> tuple[bytes, str]:
    """The bytes of one packaged asset and their ETag, read once per process."""
    body = files("fastapi_offline").joinpath("static", name).read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    """Swagger UI over ``/openapi.json``."""
    return _offline(
        get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=TITLE,
            swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{PREFIX}/favicon.png",
        )
    )


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    """ReDoc over ``/openapi.json``, without web fonts (they too would come from the internet)."""
    return _offline(
        get_redoc_html(
            openapi_url="/openapi.json",
            title=TITLE,
            redoc_js_url=f"{PREFIX}/redoc.standalone.js",
            redoc_favicon_url=f"{PREFIX}/favicon.png",
            with_google_fonts=False,
        )
    )


@router.get(PREFIX + "/{name}")
async def asset(request: Request, name: str) -> Response:
    """One of :data:`ASSETS`, with an ETag (a reload revalidates with a 304)."""
    media = ASSETS.get(name)
    if media is None:
        raise HTTPException(404, f"no docs asset {name!r}")
    body, etag = _asset(name)
    # The URLs carry no version: an upgraded package serves new bytes at the same URL, so a
    # browser revalidates (cheaply, by ETag) rather than keeping a copy for long.
    headers = {"ETag": etag, "Cache-Control": "public, max-age=3600",
               "X-Content-Type-Options": "nosniff"}  # fmt: skip
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, headers=headers, media_type=media)
