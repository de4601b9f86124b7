"""The token service's edge: errors as OCI error bodies, never a traceback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError

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
    except (RedisConnectionError, RedisTimeoutError, OperationalError, InterfaceError) as exc:
        log.error("dependency_unavailable", error=str(exc)[:500], kind=type(exc).__name__)
        return render_oci(
            Unavailable(detail={"request_id": request.get(REQUEST_ID, "")}, headers={"Retry-After": "5"})
        )
    except Exception:
        log.exception("unhandled_error", method=request.method, path=request.path)
        return render_oci(Unknown(detail={"request_id": request.get(REQUEST_ID, "")}))
