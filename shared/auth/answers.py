"""Reading a peer's HTTP answers (the OIDC and CAS clients, the http_auth backend): never without bound."""

from __future__ import annotations

import aiohttp


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or its first `limit + 1` bytes when it is longer (the caller refuses those): a
    peer's answer is read whole, never without bound. One `read(n)` may stop at a chunk's end."""
    body = bytearray()
    while len(body) <= limit and (chunk := await response.content.read(limit + 1 - len(body))):
        body += chunk
    return bytes(body)
