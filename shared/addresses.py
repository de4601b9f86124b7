"""Client addresses behind proxies: the peer, or what a trusted proxy says in `X-Forwarded-For`."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: web.Request, trusted: Sequence[Network]) -> str:
    """The client's address: the peer, or, when the peer is a trusted proxy, the nearest address
    in `X-Forwarded-For` that is not a trusted proxy itself."""
    peer = request.remote or "unknown"
    chain = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
    address = peer
    for hop in [*reversed(chain), None]:
        if not is_trusted(address, trusted) or hop is None:
            break
        address = hop
    return address


def is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def parse_networks(values: Sequence[str]) -> list[Network]:
    return [ipaddress.ip_network(v, strict=False) for v in values]
