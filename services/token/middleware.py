"""The token service's edge: every refusal in its protocol's words (`errors.py`), never a
traceback, and no answer stored by any cache (RFC 6749 §5.1)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from wharf_shared.errors import oci
from wharf_shared.errors.domain import DomainError
from wharf_shared.errors.render import render_oci, unexpected_failure
from wharf_token.errors import ServerError, TokenRequestError, to_protocol

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
OAUTH2_ROUTE = "token_oauth2"


def render(request: web.Request, error: TokenRequestError) -> web.Response:
    """GET: the Docker token spec's OCI error body. POST: RFC 6749's `error` and
    `error_description` beside the same `errors` list, with the OAuth2 status."""
    as_oci = error.as_oci()
    route = request.match_info.route
    if route is None or route.name != OAUTH2_ROUTE:
        return render_oci(as_oci)
    code, status = error.as_oauth()
    body = {"errors": [as_oci.to_dict()], "error": code, "error_description": as_oci.text}
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/json", headers=error.headers
    )


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except TokenRequestError as exc:
        response = render(request, exc)
    except DomainError as exc:
        response = render(request, to_protocol(exc))
    except web.HTTPNotFound:
        response = render_oci(oci.RouteUnknown(detail={"path": request.path}))
    except web.HTTPMethodNotAllowed:
        response = render_oci(oci.Unsupported(detail={"method": request.method, "path": request.path}))
    except web.HTTPException as exc:
        exc.headers.update(NO_STORE)
        raise
    except Exception as exc:
        response = render(request, ServerError(unexpected_failure(request, exc)))
    if not response.prepared:
        response.headers.update(NO_STORE)
    return response
