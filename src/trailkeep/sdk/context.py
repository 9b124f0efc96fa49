"""The end user behind the current request, carried in a context variable.

The ASGI and WSGI middlewares bind it for each request; :meth:`Audit.log` and
:class:`AuditBuffer` read it, so a handler writes ``audit.log("order.refund", ...)`` and the
entry's actor, IP and user agent are the end user's. Code outside a web request can bind it
itself with :func:`bind`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a backend forwards for its end user: session token, IP address and user agent."""

    session: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    # The session was found in the incoming request by a middleware, not given by the app:
    # it may be the host app's own token, so a refusal of it must not fail the host's request.
    captured: bool = False

    def merged(
        self, session: str | None, client_ip: str | None, user_agent: str | None
    ) -> RequestContext:
        """This context, with the explicitly given values taking precedence."""
        return RequestContext(
            session=session if session is not None else self.session,
            client_ip=client_ip if client_ip is not None else self.client_ip,
            user_agent=user_agent if user_agent is not None else self.user_agent,
            captured=self.captured and session is None,
        )

    def without_session(self) -> RequestContext:
        """The same end user's address and agent, acting without a session."""
        return RequestContext(client_ip=self.client_ip, user_agent=self.user_agent)

    def headers(self) -> dict[str, str]:
        """The forwarding headers for a request made on the end user's behalf."""
        out: dict[str, str] = {}
        if self.session:
            out["Trailkeep-Session"] = self.session
        if self.client_ip:
            out["Trailkeep-Client-IP"] = self.client_ip
        if self.user_agent:
            out["Trailkeep-Client-User-Agent"] = _header_safe(self.user_agent)
        return out


def _header_safe(value: str) -> str:
    """A header value httpx can send: control characters dropped, non-Latin-1 replaced."""
    cleaned = "".join(c for c in value if c >= " " and c != "\x7f")
    return cleaned.encode("latin-1", "replace").decode("latin-1")


EMPTY = RequestContext()
_current: ContextVar[RequestContext] = ContextVar("trailkeep_request_context", default=EMPTY)


def current() -> RequestContext:
    """The end user of the request being handled (empty outside of one)."""
    return _current.get()


@contextmanager
def bind(
    session: str | None = None, client_ip: str | None = None, user_agent: str | None = None
) -> Iterator[RequestContext]:
    """Act for an end user inside the ``with`` block (what the middlewares do per request)."""
    with bound(
        RequestContext(session=session, client_ip=client_ip, user_agent=user_agent)
    ) as context:
        yield context


@contextmanager
def bound(context: RequestContext) -> Iterator[RequestContext]:
    """Make ``context`` the current end user inside the ``with`` block."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def set_current(context: RequestContext) -> None:
    """Bind ``context`` for the rest of the current context (used inside a copied context)."""
    _current.set(context)
