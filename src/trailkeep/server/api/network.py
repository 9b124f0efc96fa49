"""Where a request came from: the TCP peer, unless a trusted proxy forwarded it."""

from __future__ import annotations

import ipaddress
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


def valid_ip(text: str) -> bool:
    """True for an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
