"""Any method on a path a pool owns: forwarded to an instance of that pool, the answer relayed;
404 while the pool has no instance (the pools may change while the proxy runs)."""

from __future__ import annotations

from aiohttp import web

from wharf_proxy import keys
from wharf_proxy.local_blobs import Offer, Unavailable
from wharf_shared.logging import get_logger
from wharf_shared.request_ids import REQUEST_ID

log = get_logger(__name__)


async def relay(request: web.Request, pool_name: str, offer: Offer | None = None) -> web.StreamResponse:
    app = request.app
    pool = app[keys.POOLS][pool_name]
    if not pool.upstreams:
        raise web.HTTPNotFound()  # rendered by the edge, as for a path no pool owns
    request[keys.POOL] = pool_name
    response, outcome = await app[keys.FORWARDER].forward(request, pool, request[REQUEST_ID], offer)
    request[keys.OUTCOME] = outcome
    return response


async def to_registry(request: web.Request) -> web.StreamResponse:
    local = request.app[keys.LOCAL_BLOBS]
    offer = local.offer(request) if local is not None else None
    if offer is not None:
        try:
            return await relay(request, "registry", offer)
        except Unavailable as exc:
            # Nothing went to the client yet: ask again without the offer, the registry streams it.
            log.warning("local_blob_unavailable", path=request.path, reason=str(exc))
    return await relay(request, "registry")


async def to_token(request: web.Request) -> web.StreamResponse:
    return await relay(request, "token")


async def to_ui(request: web.Request) -> web.StreamResponse:
    return await relay(request, "ui")
