"""The token service's edge: errors as OCI error bodies, never a traceback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from wharf_shared.errors.oci import OCIError, RouteUnknown, Unsupported
from wharf_shared.errors.render import render_oci, unexpected_failure

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
    except Exception as exc:
        return render_oci(unexpected_failure(request, exc))
