"""The `/api/` edge: every failure in Harbor's error body with the status its code carries, an
unknown path a JSON 404, a wrong method a 405 with `Allow`, an unexpected failure a 500 with
the request id (503 with Retry-After when the database or Redis is down), and answers no cache
keeps (they depend on who asks)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from wharf_shared.errors import harbor
from wharf_shared.errors.domain import DomainError
from wharf_shared.errors.render import unexpected_failure
from wharf_shared.logging import get_logger
from wharf_ui.errors import to_harbor

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = get_logger(__name__)


def render(error: harbor.HarborError) -> web.Response:
    return web.Response(
        status=error.status, body=error.body(), content_type="application/json", headers=error.headers
    )


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except harbor.HarborError as exc:
        response = render(exc)
    except DomainError as exc:
        response = render(to_harbor(exc))
    except web.HTTPNotFound:
        response = render(harbor.NotFound(message=f"no such API path: {request.path[:200]}"))
    except web.HTTPMethodNotAllowed as exc:
        error = harbor.MethodNotAllowed(
            message=f"{request.method} is not allowed on {request.path[:200]}",
            headers={"Allow": ", ".join(sorted(exc.allowed_methods))},
        )
        response = render(error)
    except web.HTTPException:
        raise
    except Exception as exc:
        failure = unexpected_failure(request, exc)
        cls = harbor.Unavailable if failure.status == 503 else harbor.Unknown
        detail = failure.detail if isinstance(failure.detail, dict) else {}
        response = render(
            cls(
                message=f"{cls.message} (request id {detail.get('request_id', '')})",
                headers=failure.headers,
            )
        )
    if not response.prepared:
        response.headers.setdefault("Cache-Control", "no-store")
    return response
