"""The front door's edge: a malformed target is refused before any route acts on it, every
failure leaves as an HTTP error body (the table in errors.py), and each request is one JSON
access line and one count of the status its client saw (`wharf_proxy_responses_total`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from wharf_proxy import keys, paths
from wharf_proxy.errors import FAILURES, to_http
from wharf_proxy.forward import ClientGone, Truncated
from wharf_proxy.metrics import NO_POOL
from wharf_shared.errors.http import HTTPError, MethodNotAllowed, NotFound
from wharf_shared.logging import get_logger
from wharf_shared.request_ids import REQUEST_ID

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = get_logger("wharf_proxy.access")

REGISTRY_API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.monotonic()
    try:
        paths.check(request.raw_path)
        response = await handler(request)
    except FAILURES as exc:
        error = to_http(exc, request[REQUEST_ID])
        _access(request, start, error.status, error=str(exc))
        return _render(request, error)
    except Truncated as exc:
        # The client got the head and part of the body, then the connection closed: a failed
        # answer, counted as the bad gateway it is, unless the client was the one that left.
        _access(request, start, 499 if isinstance(exc, ClientGone) else 502, error=str(exc))
        if request.transport is not None:
            request.transport.close()
        raise web.HTTPBadGateway() from None  # the connection is already closed: nothing is sent
    except ConnectionResetError:  # a write to the client failed: it left (nginx's 499), routine
        _access(request, start, 499)
        raise
    except web.HTTPNotFound:
        _access(request, start, 404)
        return _render(request, NotFound(detail={"request_id": request[REQUEST_ID]}))
    except web.HTTPMethodNotAllowed:
        _access(request, start, 405)
        return _render(request, MethodNotAllowed(detail={"request_id": request[REQUEST_ID]}))
    _access(request, start, response.status)
    return response


def _render(request: web.Request, error: HTTPError) -> web.Response:
    registry = request.path == "/v2" or request.path.startswith("/v2/")
    return error.response(REGISTRY_API_VERSION if registry else None)


def _access(request: web.Request, start: float, status: int, error: str | None = None) -> None:
    elapsed = time.monotonic() - start
    pool = request.get(keys.POOL)
    request.app[keys.PROXY_METRICS].responded(pool or NO_POOL, status)
    fields: dict[str, Any] = {
        "method": request.method,
        "path": request.path,
        "remote": request.remote,
        "pool": pool,
        "status": status,
        "ms": round(elapsed * 1000, 2),
    }
    outcome = request.get(keys.OUTCOME)
    if outcome is not None:
        metrics = request.app[keys.PROXY_METRICS]
        metrics.requests.labels(pool, outcome.upstream, str(outcome.status)).inc()
        metrics.latency.labels(pool, outcome.upstream).observe(elapsed)
        fields.update(upstream=outcome.upstream, attempts=outcome.attempts, bytes_in=outcome.sent_bytes)
        if outcome.local:
            fields["sendfile"] = True  # the body came from the storage root, not the upstream
        if outcome.continued:
            fields["continued"] = outcome.continued  # moved to another instance mid-transfer
    if error is not None:
        log.warning("access", **fields, error=error)
    else:
        log.info("access", **fields)
