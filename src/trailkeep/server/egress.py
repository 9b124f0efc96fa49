"""The one egress guard: where this server may send requests of its own (JWKS, webhooks).

A URL an app gives (an identity provider's ``jwks_uri``, a webhook destination) makes the
server connect somewhere on the app's behalf. Unless the operator allows private destinations,
it must be https and every address its host resolves to must be public: no loopback, private,
link-local (cloud metadata) or otherwise reserved address. The check runs when the URL is given
and again before each connection, since a host's addresses may change (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit


class EgressError(ValueError):
    """A destination this server refuses to connect to; the message says why."""


def check_url(url: str, allow_private: bool, setting: str) -> None:
    """Refuse ``url`` unless https with only public addresses (``setting`` lifts both rules).

    ``setting`` names the environment variable that allows private destinations, for the
    message.
    """
    resolve(url, allow_private, setting)


def resolve(url: str, allow_private: bool, setting: str) -> list[str]:
    """The public addresses ``url``'s host resolves to, as :func:`check_url` checks them.

    Empty when private destinations are allowed (nothing was resolved): the caller connects
    by name. Otherwise connect to one of these (:func:`pinned`), not to whatever the name
    resolves to a moment later, so that a rebinding DNS cannot swap in a private address.
    """
    if not url.isprintable() or any(char.isspace() for char in url):
        raise EgressError("must be a URL without spaces or control characters")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # a malformed IPv6 host, a port out of range
        raise EgressError(f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("https", "http") or not host:
        raise EgressError("must be an https:// URL")
    if parts.username or parts.password:
        raise EgressError("must not carry a user name or password")
    if allow_private:
        return []
    if parts.scheme != "https":
        raise EgressError(f"must be an https:// URL (http only with {setting}=1)")
    try:
        infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        raise EgressError(f"its host cannot be resolved: {exc}") from None
    found: list[str] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global:
            raise EgressError(
                f"its host resolves to {address}, a private, loopback or link-local address "
                f"(allowed only with {setting}=1)"
            )
        found.append(str(address))
    return found


def pinned(url: str, address: str) -> tuple[str, str, str]:
    """``url`` aimed at ``address``: (the URL to connect to, its ``Host`` header, the TLS name).

    The certificate is still checked against the host's name (the TLS server name), and the
    request still names the host, so only the connection's address is fixed.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    aimed = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return aimed, parts.netloc, host
