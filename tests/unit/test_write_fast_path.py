"""``WriteFastPath`` sends POSTs to the write routes straight to their endpoints, and keeps what
the skipped layers did: the route in the scope, the path parameter, the app's exception handlers,
the routes' place in the OpenAPI document. It takes only endpoints that take only the request.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from trailkeep.server.api import errors
from trailkeep.server.api.errors import Problem
from trailkeep.server.api.fastpath import WriteFastPath, _handler_for

CALLS: list[str] = []


class Teapot(Problem):
    """A Problem subclass: its handler is found through the class hierarchy."""


def _app() -> tuple[FastAPI, list[Scope]]:
    router = APIRouter(prefix="/v1/apps/{app_id}")

    @router.post("/events", summary="Append one")
    async def single(request: Request) -> Response:
        CALLS.append("single")
        app_id = request.path_params["app_id"]
        if app_id == "problem":
            raise Teapot("forbidden", "no writes here")
        if app_id == "crash":
            raise RuntimeError("a bug")
        return Response(f"single {app_id}", 201)

    @router.post("/events/batch")
    async def batch(request: Request) -> Response:
        CALLS.append("batch")
        return Response(f"batch {request.path_params['app_id']}", 201)

    @router.get("/events")
    async def listing(request: Request) -> Response:
        CALLS.append("list")
        return Response("list")

    app = FastAPI()
    errors.install(app)
    app.include_router(router)
    routes = [r for r in router.routes if isinstance(r, APIRoute)]
    app.add_middleware(WriteFastPath, routes=routes)
    seen: list[Scope] = []

    def spy(inner: ASGIApp) -> ASGIApp:
        async def call(scope: Scope, receive: Receive, send: Send) -> None:
            await inner(scope, receive, send)
            if scope["type"] == "http":
                seen.append(scope)

        return call

    app.add_middleware(spy)  # outside the fast path: sees the scope it leaves behind
    return app, seen


def _requests(app: FastAPI, *calls: tuple[str, str]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.request(method, path) for method, path in calls]

    return asyncio.run(run())


def test_both_write_routes_reach_their_endpoint_with_the_route_in_the_scope() -> None:
    app, seen = _app()
    CALLS.clear()
    one, many = _requests(app, ("POST", "/v1/apps/a1/events"), ("POST", "/v1/apps/a2/events/batch"))
    assert (one.status_code, one.text) == (201, "single a1")
    assert (many.status_code, many.text) == (201, "batch a2")
    assert CALLS == ["single", "batch"]
    assert [s["route"].path for s in seen] == [
        "/v1/apps/{app_id}/events",
        "/v1/apps/{app_id}/events/batch",
    ]
    assert [s["path_params"] for s in seen] == [{"app_id": "a1"}, {"app_id": "a2"}]


def test_a_problem_is_answered_by_the_apps_handler_and_a_bug_by_the_server_error_one() -> None:
    app, _ = _app()
    problem, crash = _requests(
        app, ("POST", "/v1/apps/problem/events"), ("POST", "/v1/apps/crash/events")
    )
    assert problem.status_code == 403
    assert problem.headers["content-type"] == "application/problem+json"
    assert problem.json()["detail"] == "no writes here"
    assert crash.status_code == 500
    assert crash.headers["content-type"] == "application/problem+json"
    assert "a bug" not in crash.text


def test_other_methods_and_paths_go_through_the_router_as_before() -> None:
    app, _ = _app()
    CALLS.clear()
    listing, slash, unknown = _requests(
        app,
        ("GET", "/v1/apps/a1/events"),
        ("POST", "/v1/apps/a1/events/"),
        ("POST", "/v1/apps/a1/events/other"),
    )
    assert (listing.status_code, listing.text) == (200, "list")
    assert slash.status_code == 307  # the router redirects to the route without the slash
    assert unknown.status_code == 404
    assert CALLS == ["list"]


def test_handlers_are_found_by_the_nearest_class_and_never_for_bare_exception() -> None:
    async def problem(_request: Request, _exc: Exception) -> Response:
        return Response("problem")

    async def anything(_request: Request, _exc: Exception) -> Response:
        return Response("anything")

    handlers: dict[Any, Any] = {Problem: problem, Exception: anything}
    assert _handler_for(handlers, Teapot("forbidden", "x")) is problem
    assert _handler_for(handlers, Problem("forbidden", "x")) is problem
    assert _handler_for(handlers, RuntimeError("x")) is None


def test_the_routes_stay_in_the_openapi_document() -> None:
    app, _ = _app()

    async def schema() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            document: dict[str, Any] = (await client.get("/openapi.json")).json()
            return document

    paths = asyncio.run(schema())["paths"]
    assert paths["/v1/apps/{app_id}/events"]["post"]["summary"] == "Append one"
    assert "post" in paths["/v1/apps/{app_id}/events/batch"]


def test_an_endpoint_with_other_parameters_is_refused() -> None:
    router = APIRouter(prefix="/v1/apps/{app_id}")

    @router.post("/events")
    async def wants_more(request: Request, limit: int) -> Response:
        return Response(str(limit))

    @router.post("/events/batch")
    async def batch(request: Request) -> Response:
        return Response("")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("never called")

    routes = [r for r in router.routes if isinstance(r, APIRoute)]
    with pytest.raises(TypeError, match="exactly one parameter"):
        WriteFastPath(app, routes)
