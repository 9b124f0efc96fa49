"""Rules every route follows, in one place: one value per scalar query parameter, ``OPTIONS``
and 405 answers that name every method a path serves, and an OpenAPI document that says so.

The query rule reads the OpenAPI document itself: a parameter documented as a single value
(not an array) that arrives twice is refused, so the document and the server cannot disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trailkeep.server.api.errors import problem_response

PROBLEM_REF: Final = {"$ref": "#/components/schemas/ProblemOut"}
PROBLEM_TYPE: Final = "application/problem+json"


def _is_array(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "array" or any(_is_array(s) for s in schema.get("anyOf", []))


@dataclass(frozen=True, slots=True)
class PathRule:
    """One documented path: what it matches, and each method's single-valued query names."""

    pattern: re.Pattern[str]
    scalars: dict[str, frozenset[str]]  # method (upper case) -> query parameter names


def path_rules(schema: dict[str, Any]) -> list[PathRule]:
    """The documented paths as matchers (``{param}`` is one path segment, as routing has it)."""
    rules = []
    for path, operations in schema.get("paths", {}).items():
        parts = re.split(r"\{[^/{}]+\}", path)
        pattern = re.compile("^" + "[^/]+".join(re.escape(part) for part in parts) + "$")
        scalars = {
            method.upper(): frozenset(
                p["name"]
                for p in operation.get("parameters", [])
                if p["in"] == "query" and not _is_array(p.get("schema", {}))
            )
            for method, operation in operations.items()
        }
        rules.append(PathRule(pattern, scalars))
    return rules


class Rules:
    """Pure ASGI: repeated scalar parameters (400), ``OPTIONS`` (204), a full ``Allow`` on 405.

    What a path serves is read from the OpenAPI document, which lists every API route: the
    routes that serve a request's path are those whose documented path matches it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._rules: list[PathRule] | None = None

    def _matching(self, scope: Scope) -> list[PathRule]:
        if self._rules is None:
            self._rules = path_rules(scope["app"].openapi())
        return [rule for rule in self._rules if rule.pattern.match(scope["path"])]

    def allowed(self, scope: Scope) -> list[str]:
        """Every method served at the request's path (``OPTIONS`` included); empty if none."""
        methods = {method for rule in self._matching(scope) for method in rule.scalars}
        return sorted(methods | {"OPTIONS"}) if methods else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            methods = self.allowed(scope)
            if methods:
                headers = {"Allow": ", ".join(methods)}
                await Response(status_code=204, headers=headers)(scope, receive, send)
            else:
                await self.app(scope, receive, _options_answer(send))
            return
        repeated = self._repeated(scope)
        if repeated is not None:
            detail = (
                f"{repeated}: given more than once; it takes one value (only list parameters, "
                "such as `action`, repeat)"
            )
            await problem_response("invalid_request", detail, scope["path"])(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                # Starlette names the methods of the first route on the path only.
                allowed = self.allowed(scope)
                if allowed:
                    MutableHeaders(scope=message)["Allow"] = ", ".join(allowed)
            await send(message)

        await self.app(scope, receive, sending)

    def _repeated(self, scope: Scope) -> str | None:
        """The first single-valued query parameter given more than once, if any."""
        query = scope.get("query_string", b"")
        if not query:
            return None
        names = [name for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)]
        twice = {name for name in names if names.count(name) > 1}
        if not twice:
            return None
        scalars: set[str] = set()
        for rule in self._matching(scope):
            scalars |= rule.scalars.get(scope["method"], frozenset())
        return next((name for name in names if name in twice & scalars), None)


def _options_answer(send: Send) -> Send:
    """For a path outside the API (docs pages, the schema): the router's 405 becomes a 204.

    Each such path has one route, and its 405 names that route's methods in ``Allow``.
    """
    turned = False

    async def sending(message: Message) -> None:
        nonlocal turned
        if message["type"] == "http.response.start" and message["status"] == 405:
            served = MutableHeaders(scope=message).get("allow")
            if served:
                methods = sorted({m.strip() for m in served.split(",")} | {"OPTIONS"})
                headers = [(b"allow", ", ".join(methods).encode()), (b"content-length", b"0")]
                await send({"type": "http.response.start", "status": 204, "headers": headers})
                turned = True
                return
        if turned:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                await send({"type": "http.response.body", "body": b""})
            return
        await send(message)

    return sending


def finish(schema: dict[str, Any]) -> dict[str, Any]:
    """Make the generated document say what the server does.

    Errors are RFC 9457 problems (``application/problem+json``), never FastAPI's 422: a
    request that fails validation is answered 400 ``invalid_request``.
    """
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            invalid = responses.pop("422", None)
            if invalid is not None and "400" not in responses:
                responses["400"] = {"description": "invalid_request"}
            for status, response in responses.items():
                if status[0] in "45":
                    response["content"] = {PROBLEM_TYPE: {"schema": PROBLEM_REF}}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "HTTPValidationError" not in str(schema["paths"]):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
    return schema
