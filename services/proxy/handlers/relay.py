"""Any method on a path a pool owns: forwarded to an instance of that pool, the answer relayed."""

from __future__ import annotations

from aiohttp import web

from wharf_proxy import keys
from wharf_shared.request_ids import REQUEST_ID


async def relay(request: web.Request, pool_name: str) -> web.StreamResponse:
    app = request.app
    request[keys.POOL] = pool_name
    response, outcome = await app[keys.FORWARDER].forward(
        request, app[keys.POOLS][pool_name], request[REQUEST_ID]
    )
    request[keys.OUTCOME] = outcome
    return response


async def to_registry(request: web.Request) -> web.StreamResponse:
    return await relay(request, "registry")


async def to_token(request: web.Request) -> web.StreamResponse:
    return await relay(request, "token")


async def to_ui(request: web.Request) -> web.StreamResponse:
    return await relay(request, "ui")
