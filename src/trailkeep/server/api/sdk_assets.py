"""The browser SDK, served by every node: ``/sdk/trailkeep.mjs`` and ``/sdk/trailkeep.js``.

``sdk/static/trailkeep.mjs`` is the only source. The classic script is made from it here, once
per process: its final ``export`` line is dropped and the rest wrapped in a function that sets
``window.trailkeep``. Both are served with an ETag that is their content hash.

Caching: the URLs carry no version, so an upgraded server serves new bytes at the same URL.
``immutable`` would pin browsers to a stale SDK for the whole max-age, so it is not used; instead a
day's ``max-age`` (the SDK speaks the stable ``/v1`` API, so a day-old copy still works), a week
of ``stale-while-revalidate``, and an ETag that makes every revalidation a cheap 304.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any, Final

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

router = APIRouter(prefix="/sdk", tags=["sdk"])

SOURCE: Final = "sdk/static/trailkeep.mjs"
MEDIA_TYPE: Final = "text/javascript; charset=utf-8"  # RFC 9239
CACHE_CONTROL: Final = "public, max-age=86400, stale-while-revalidate=604800"


@dataclass(frozen=True, slots=True)
class Asset:
    """One served file: its bytes and their ETag."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, text: str) -> Asset:
        """The asset for ``text``, its ETag the first 128 bits of its SHA-256."""
        body = text.encode()
        return cls(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def classic_script(module: str) -> str:
    """The classic-script form of the SDK module: no ``export``, sets ``globalThis.trailkeep``."""
    lines = module.rstrip("\n").split("\n")
    exports = [i for i, line in enumerate(lines) if line.startswith("export ")]
    if exports != [len(lines) - 1] or not lines[-1].startswith("export {"):
        raise RuntimeError(f"{SOURCE}: its only `export` must be an `export {{...}}` last line")
    if any(line.startswith("import ") for line in lines) or "import.meta" in module:
        raise RuntimeError(f"{SOURCE}: module-only syntax (import) cannot become a classic script")
    body = "\n".join(lines[:-1])
    return f'(function () {{\n"use strict";\n{body}\nglobalThis.trailkeep = trailkeep;\n}})();\n'


@cache
def assets() -> dict[str, Asset]:
    """Both forms of the SDK, read and hashed once per process."""
    module = files("trailkeep").joinpath(SOURCE).read_text(encoding="utf-8")
    return {"trailkeep.mjs": Asset.of(module), "trailkeep.js": Asset.of(classic_script(module))}


def _matches(if_none_match: str, etag: str) -> bool:
    # RFC 9110 §13.1.2: a weak comparison, "*" matches any current representation.
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def _serve(request: Request, name: str) -> Response:
    asset = assets()[name]
    headers = {
        "ETag": asset.etag,
        "Cache-Control": CACHE_CONTROL,
        # Module scripts are fetched with CORS; the SDK is public and needs no credentials.
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
        "X-Content-Type-Options": "nosniff",
    }
    condition = request.headers.get("if-none-match")
    if condition is not None and _matches(condition, asset.etag):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, headers=headers, media_type=MEDIA_TYPE)


#: What the OpenAPI document says the SDK routes answer: JavaScript, or 304 on a matching ETag.
RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "The script (`text/javascript`, RFC 9239), with its ETag.",
        "content": {"text/javascript": {"schema": {"type": "string"}}},
    },
    304: {"description": "Not modified: `If-None-Match` names the current ETag."},
}


# GET and HEAD are two routes (not one `api_route` with both methods), so that each has an
# operationId of its own in the OpenAPI document.
@router.get(
    "/trailkeep.js", summary="The browser SDK, as a classic script", response_class=Response,
    responses=RESPONSES,
)  # fmt: skip
@router.head(
    "/trailkeep.js", summary="The browser SDK's headers (classic script)",
    response_class=Response, responses=RESPONSES,
)  # fmt: skip
async def classic(request: Request) -> Response:
    """``<script src=".../sdk/trailkeep.js">`` defines ``window.trailkeep``."""
    return _serve(request, "trailkeep.js")


@router.get(
    "/trailkeep.mjs", summary="The browser SDK, as an ES module", response_class=Response,
    responses=RESPONSES,
)  # fmt: skip
@router.head(
    "/trailkeep.mjs", summary="The browser SDK's headers (ES module)", response_class=Response,
    responses=RESPONSES,
)  # fmt: skip
async def module(request: Request) -> Response:
    """``import trailkeep from ".../sdk/trailkeep.mjs"``."""
    return _serve(request, "trailkeep.mjs")
