"""Failures on portal pages as pages: the portal's own errors, the API's Harbor errors and domain
errors raised by the code pages share with the API, each with its status and a way on. Paths
outside the portal are left to the API's JSON edge (`wharf_ui.middleware`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from wharf_shared.errors import harbor
from wharf_shared.errors.domain import DomainError
from wharf_ui.errors import to_harbor
from wharf_ui.portal.render import page
from wharf_ui.portal.viewer import PortalError, current_viewer, sign_in_location

PORTAL_PREFIX = "/harbor"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HEADINGS = {
    400: "Something is wrong with this request",
    401: "Sign in first",
    403: "Not allowed",
    404: "Not found",
    409: "Already there",
    412: "Not possible yet",
    429: "Too many attempts",
}


async def error_page(
    request: web.Request, status: int, message: str, heading: str | None = None
) -> web.Response:
    await current_viewer(request)
    return await page(
        request,
        "error.html",
        title=heading or _HEADINGS.get(status, "Something went wrong"),
        status=status,
        message=message,
    )


@web.middleware
async def portal_errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(PORTAL_PREFIX):
        return await handler(request)
    try:
        return await handler(request)
    except PortalError as exc:
        return await error_page(request, exc.status, exc.message, exc.heading)
    except (harbor.HarborError, DomainError) as exc:
        error = exc if isinstance(exc, harbor.HarborError) else to_harbor(exc)
        if error.status == 401:
            raise web.HTTPSeeOther(sign_in_location(request)) from None
        return await error_page(request, error.status, error.text)
    except web.HTTPNotFound:
        return await error_page(request, 404, f"There is no page at {request.path[:200]}.")
