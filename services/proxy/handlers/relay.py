"""Any method on a path a pool owns: forwarded to an instance of that pool, the answer relayed."""

from __future__ import annotations

from aiohttp import web

from wharf_proxy import keys
from wharf_shared import keys as shared_keys
from wharf_shared.request_ids import REQUEST_ID


async def relay(request: web.Request, pool_name: str) -> web.StreamResponse:
    pool = request.app[keys.POOLS][pool_name]
    request[keys.POOL] = pool_name
    external = request.app[shared_keys.SETTINGS].external_url.rstrip("/")
    response, outcome = await request.app[keys.FORWARDER].forward(
        request, pool, request[REQUEST_ID], scheme=request.scheme, external=external
    )
    request[keys.OUTCOME] = outcome
    return response


async def to_registry(request: web.Request) -> web.StreamResponse:
    return await relay(request, "registry")


async def to_token(request: web.Request) -> web.StreamResponse:
    return await relay(request, "token")


async def to_ui(request: web.Request) -> web.StreamResponse:
    return await relay(request, "ui")
