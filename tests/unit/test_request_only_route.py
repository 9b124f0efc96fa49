"""``RequestOnlyRoute`` hands the request straight to its endpoint, and only to such endpoints."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import Response

from trailkeep.api.events import RequestOnlyRoute


def test_the_endpoint_gets_the_request_and_stays_in_the_openapi_document() -> None:
    router = APIRouter(prefix="/things/{thing}", route_class=RequestOnlyRoute)

    @router.post("/echo", summary="Echo the path parameter and a header")
    async def echo(request: Request) -> Response:
        said = f"{request.path_params['thing']} {request.headers.get('x-said')}"
        return Response(said, 201)

    app = FastAPI()
    app.include_router(router)

    async def call() -> tuple[httpx.Response, dict[str, Any]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post("/things/t1/echo?ignored=1", headers={"X-Said": "hi"})
            return response, (await client.get("/openapi.json")).json()

    response, schema = asyncio.run(call())
    assert (response.status_code, response.text) == (201, "t1 hi")
    assert schema["paths"]["/things/{thing}/echo"]["post"]["summary"] == (
        "Echo the path parameter and a header"
    )


def test_an_endpoint_with_other_parameters_is_refused_when_declared() -> None:
    router = APIRouter(route_class=RequestOnlyRoute)

    async def wants_more(request: Request, limit: int) -> Response:
        return Response(str(limit))

    with pytest.raises(TypeError, match="exactly one parameter"):
        router.add_api_route("/more", wants_more, methods=["POST"])
