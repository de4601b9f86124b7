"""Rendering protocol errors at a service's edge, and the one rule for failures nobody expected."""

from __future__ import annotations

import json

from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError

from wharf_shared.db.engine import is_unavailable
from wharf_shared.errors.oci import OCIError, Unavailable, Unknown
from wharf_shared.logging import get_logger
from wharf_shared.request_ids import REQUEST_ID

log = get_logger(__name__)


def render_oci(error: OCIError, headers: dict[str, str] | None = None) -> web.Response:
    """An OCI error body (`{"errors":[{"code","message","detail"}]}`) with the error's status."""
    body = json.dumps({"errors": [error.to_dict()]}).encode()
    return web.Response(
        status=error.status,
        body=body,
        content_type="application/json",
        headers={**(headers or {}), **error.headers},
    )


def unexpected_failure(request: web.Request, exc: Exception) -> OCIError:
    """The protocol error for an exception no handler turned into one:
    503 with Retry-After when Redis or the database is down or full (the client should retry),
    otherwise UNKNOWN (500) with the request id, and the traceback in the log."""
    request_id = request.get(REQUEST_ID, "")
    if isinstance(exc, RedisConnectionError | RedisTimeoutError) or (
        isinstance(exc, DBAPIError) and is_unavailable(exc)
    ):
        log.error("dependency_unavailable", error=str(exc)[:500], kind=type(exc).__name__)
        return Unavailable(detail={"request_id": request_id}, headers={"Retry-After": "5"})
    log.error("unhandled_error", method=request.method, path=request.path, exc_info=exc)
    return Unknown(detail={"request_id": request_id})
