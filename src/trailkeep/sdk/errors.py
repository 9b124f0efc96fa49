"""Typed exceptions of the Python SDK.

Every error the SDK raises is a :class:`TrailkeepError` carrying the server's stable ``code``,
the HTTP ``status`` (``None`` when nothing was answered) and a human ``detail``. Errors the
server answers with are RFC 9457 problem documents; the SDK raises the same codes for what it
refuses before sending (``local=True``), so a caller handles both in one ``except``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final


class TrailkeepError(Exception):
    """A request that did not succeed: ``code`` (stable), ``status`` (HTTP) and ``detail``."""

    def __init__(
        self,
        code: str,
        status: int | None,
        detail: str,
        *,
        instance: str | None = None,
        retry_after: float | None = None,
        local: bool = False,
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        """Build the error; ``local`` marks a refusal made by the SDK before any request."""
        super().__init__(f"{code}: {detail}" if status is None else f"{status} {code}: {detail}")
        self.code = code
        self.detail = detail
        self.status = status
        self.instance = instance
        self.retry_after = retry_after
        self.local = local
        self.problem: Mapping[str, Any] = dict(problem or {})


class InvalidRequest(TrailkeepError):
    """``invalid_request`` or ``actor_not_allowed`` (400): the request itself is wrong."""


class Unauthenticated(TrailkeepError):
    """``unauthenticated`` (401): no credential, or one the server does not accept."""


class Forbidden(TrailkeepError):
    """``forbidden`` (403): the credential is valid but may not do this."""


class NotFound(TrailkeepError):
    """``not_found`` (404): no such app, entry or route for this credential."""


class IdempotencyConflict(TrailkeepError):
    """``idempotency_conflict`` (409): the Idempotency-Key was used with another body."""


class PayloadTooLarge(TrailkeepError):
    """``payload_too_large`` (413): the body or the metadata is over the limit."""


class RateLimited(TrailkeepError):
    """``rate_limited`` (429) after every retry was spent; ``retry_after`` says how long to wait."""


class ServerError(TrailkeepError):
    """A 5xx answer that persisted through every retry."""


class ConnectionFailed(TrailkeepError):
    """The server could not be reached, or the connection broke, through every retry."""


class VerificationError(TrailkeepError):
    """An entry, proof or checkpoint that does not verify; ``reason`` says which check failed.

    Reasons: ``leaf_hash`` (the content does not hash to its leaf hash), ``inclusion`` (the
    proof does not lead to the checkpoint's root), ``signature`` (the checkpoint is not signed by
    the trusted key), ``origin`` (the checkpoint is of another log), ``consistency`` (the log
    was rewritten between two checkpoints this client saw), ``malformed``.
    """

    def __init__(self, reason: str, detail: str) -> None:
        """Build the error for the failed check ``reason``."""
        super().__init__("verification_failed", None, detail, local=True)
        self.reason = reason


class ConfigurationError(TrailkeepError):
    """The client is missing something this call needs (e.g. ``session_secret``)."""

    def __init__(self, detail: str) -> None:
        """Build the error."""
        super().__init__("configuration_error", None, detail, local=True)


BY_CODE: Final[dict[str, type[TrailkeepError]]] = {
    "invalid_request": InvalidRequest,
    "actor_not_allowed": InvalidRequest,
    "unauthenticated": Unauthenticated,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "idempotency_conflict": IdempotencyConflict,
    "payload_too_large": PayloadTooLarge,
    "rate_limited": RateLimited,
}

STATUS_OF: Final[dict[str, int]] = {
    "invalid_request": 400,
    "actor_not_allowed": 400,
    "payload_too_large": 413,
}


def error_for(
    code: str,
    status: int | None,
    detail: str,
    *,
    instance: str | None = None,
    retry_after: float | None = None,
    local: bool = False,
    problem: Mapping[str, Any] | None = None,
) -> TrailkeepError:
    """The most specific :class:`TrailkeepError` subclass for ``code`` (and ``status``)."""
    cls = BY_CODE.get(code)
    if cls is None:
        cls = ServerError if status is not None and status >= 500 else TrailkeepError
    return cls(
        code,
        status,
        detail,
        instance=instance,
        retry_after=retry_after,
        local=local,
        problem=problem,
    )


_CODE_OF_STATUS: Final[dict[int, str]] = {
    400: "invalid_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "idempotency_conflict", 413: "payload_too_large",
    429: "rate_limited", 503: "unavailable",
}  # fmt: skip


def from_response(
    status: int, content_type: str, body: bytes, *, retry_after: float | None = None
) -> TrailkeepError:
    """The error for a non-2xx answer: its problem document, or a guess from the status.

    A proxy in front of the server may answer with HTML or nothing at all; the error then
    carries a code derived from the status so callers can still branch on ``code``.
    """
    problem: Mapping[str, Any] = {}
    if "json" in content_type:
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = None
        if isinstance(decoded, Mapping):
            problem = decoded
    code = problem.get("code")
    if not isinstance(code, str) or not code:
        code = _CODE_OF_STATUS.get(status, "server_error" if status >= 500 else "http_error")
    detail = problem.get("detail")
    if not isinstance(detail, str) or not detail:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        snippet = body[:200].decode("utf-8", "replace").strip()
        detail = f"HTTP {status} {phrase}".rstrip() + (f": {snippet}" if snippet else "")
    instance = problem.get("instance")
    return error_for(
        code,
        status,
        detail,
        instance=instance if isinstance(instance, str) else None,
        retry_after=retry_after,
        problem=problem,
    )


def local_error(code: str, detail: str) -> TrailkeepError:
    """A refusal made by the SDK before sending, with the status the server would answer."""
    return error_for(code, STATUS_OF.get(code, 400), detail, local=True)
