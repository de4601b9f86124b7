"""The token service's edge: errors as OCI error bodies, never a traceback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError

from wharf_shared.db.engine import is_unavailable
from wharf_shared.errors.oci import OCIError, RouteUnknown, Unavailable, Unknown, Unsupported
from wharf_shared.logging import get_logger
from wharf_shared.web import REQUEST_ID, render_oci

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = get_logger(__name__)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OCIError as exc:
        return render_oci(exc)
    except web.HTTPNotFound:
        return render_oci(RouteUnknown(detail={"path": request.path}))
    except web.HTTPMethodNotAllowed:
        return render_oci(Unsupported(detail={"method": request.method, "path": request.path}))
    except web.HTTPException:
        raise
    except (RedisConnectionError, RedisTimeoutError, DBAPIError) as exc:
        if isinstance(exc, DBAPIError) and not is_unavailable(exc):
            log.exception("unhandled_error", method=request.method, path=request.path)
            return render_oci(Unknown(detail={"request_id": request.get(REQUEST_ID, "")}))
        log.error("dependency_unavailable", error=str(exc)[:500], kind=type(exc).__name__)
        return render_oci(
            Unavailable(detail={"request_id": request.get(REQUEST_ID, "")}, headers={"Retry-After": "5"})
        )
    except Exception:
        log.exception("unhandled_error", method=request.method, path=request.path)
        return render_oci(Unknown(detail={"request_id": request.get(REQUEST_ID, "")}))
