"""Where a request came from: the TCP peer, unless a trusted proxy forwarded it."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from trailkeep.server.settings import IPNetwork


def _trusted(address: str, proxies: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_ip(
    peer: str | None, forwarded_for: str | None, proxies: Sequence[IPNetwork]
) -> str | None:
    """The client's address: walk X-Forwarded-For from the right past trusted proxies only."""
    if peer is None or not proxies or not forwarded_for or not _trusted(peer, proxies):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return hop if valid_ip(hop) else peer
    return hops[0] if hops and valid_ip(hops[0]) else peer


# An IPv6 zone (RFC 4007: the interface of a link-local address) names an interface: a short
# token. Python's parser takes anything after the `%`, and the value lands in an entry as is.
_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def valid_ip(text: str) -> bool:
    """True for an IPv4 or IPv6 address (an IPv6 zone, if any, an interface-like name)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    zone = getattr(address, "scope_id", None)
    return zone is None or _ZONE.fullmatch(zone) is not None
