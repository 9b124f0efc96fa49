"""RFC 9457 problem responses with Trailkeep's stable error codes; never a bare 500."""

from __future__ import annotations

import logging
import sqlite3
from http import HTTPStatus
from typing import Final

import orjson
import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from trailkeep.server.store.errors import StorageUnavailable, outage

log = logging.getLogger(__name__)

STATUS: Final[dict[str, int]] = {
    "invalid_request": 400,
    "actor_not_allowed": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "already_pending": 409,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "idempotency_conflict": 409,
    "held": 409,
    "already_done": 409,
    "already_approved": 409,
    "rotation_pending": 409,
    "nothing_to_retire": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "rate_limited": 429,
    "too_many_exports": 429,
    "too_many_streams": 429,
    "internal_error": 500,
    "unavailable": 503,
    "storage_unavailable": 503,
}
_BY_STATUS: Final = {
    400: "invalid_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 408: "request_timeout", 409: "idempotency_conflict",
    413: "payload_too_large", 415: "unsupported_media_type", 429: "rate_limited",
    503: "unavailable",
}  # fmt: skip


class Problem(Exception):
    """Raise to answer with an ``application/problem+json`` body."""

    def __init__(self, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.status = STATUS[code]
        self.detail = detail
        self.headers = headers or {}


def unavailable(reason: str) -> Problem:
    """The 503 for a write the writer could not take or answer; a retry is safe with a key."""
    # A writer that ended between its commit and its answer may have stored the write: an
    # Idempotency-Key makes the retry return it instead of storing it twice.
    return Problem(
        "unavailable",
        f"{reason}; retry shortly (with the same Idempotency-Key)",
        {"Retry-After": "1"},
    )


def storage_unavailable(reason: str) -> Problem:
    """The 503 for a request the database could not serve just now (disk full, restarting)."""
    # Nothing was acknowledged; the same request succeeds once space or the server is back,
    # and the writer tries again by itself (server/store/errors.py says which errors these are).
    # A connection lost during COMMIT may hide a commit: the Idempotency-Key finds it.
    return Problem(
        "storage_unavailable",
        f"{reason}; retry shortly (with the same Idempotency-Key)",
        {"Retry-After": "1"},
    )


#: What a storage error can be raised as: SQLAlchemy's wrapper, or the driver's own error from
#: a raw cursor (store/driver.py), or the file system's.
STORAGE_ERRORS: Final = (StorageUnavailable, DBAPIError, sqlite3.Error, psycopg.Error, OSError)


def problem_response(
    code: str, detail: str, instance: str, headers: dict[str, str] | None = None
) -> Response:
    """Build the problem document for ``code``."""
    status = STATUS[code]
    body = {
        "type": f"urn:trailkeep:problem:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "code": code,
        "detail": detail,
        "instance": instance,
    }
    return Response(
        orjson.dumps(body), status, headers=headers, media_type="application/problem+json"
    )


def _describe_validation(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "the request is not valid"
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "header")]
    return f"{'.'.join(loc) or 'request'}: {first.get('msg', 'is not valid')}"


def install(app: FastAPI) -> None:
    """Route every error through :func:`problem_response`."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        # Rate-limit headers set earlier in the request go out on its errors too.
        headers = {**getattr(request.state, "extra_headers", {}), **exc.headers}
        return problem_response(exc.code, exc.detail, request.url.path, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return problem_response("invalid_request", _describe_validation(exc), request.url.path)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        code = _BY_STATUS.get(exc.status_code, "invalid_request")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route for {request.method} {request.url.path}"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed here: the audit log is append-only"
        return problem_response(code, detail, request.url.path, dict(exc.headers or {}))

    async def _storage(request: Request, exc: Exception) -> Response:
        reason = outage(exc)
        if reason is None:
            return await _unexpected(request, exc)
        log.warning("storage unavailable on %s %s: %s", request.method, request.url.path, exc)
        return await _problem(request, storage_unavailable(reason))

    # Handlers of their own (not only inside the catch-all below): the write fast path answers
    # an exception by its class's handler and leaves `Exception` to the server-error middleware,
    # which would log an outage as a crash.
    for kind in STORAGE_ERRORS:
        app.add_exception_handler(kind, _storage)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        if outage(exc) is not None:
            return await _storage(request, exc)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response("internal_error", "an unexpected error; it was logged", "")
