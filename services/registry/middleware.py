"""The `/v2/` edge: OCI error bodies, the API version header, name checks, authorization and
read-only mode."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from wharf_registry.auth import Need
from wharf_registry.errors import to_oci
from wharf_registry.handlers.common import API_VERSION
from wharf_registry.keys import AUTHORIZER, GRANT
from wharf_registry.routes import BY_NAME
from wharf_shared.errors.domain import DomainError
from wharf_shared.errors.oci import (
    BlobUploadInvalid,
    Denied,
    NameInvalid,
    OCIError,
    RouteUnknown,
    Unknown,
    Unsupported,
)
from wharf_shared.errors.render import render_oci, unexpected_failure
from wharf_shared.keys import DB, RUNTIME
from wharf_shared.logging import get_logger
from wharf_shared.references import is_valid_name
from wharf_shared.request_ids import REQUEST_ID
from wharf_shared.runtime import READ_ONLY_MESSAGE
from wharf_shared.storage.base import StorageError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = get_logger(__name__)
# Every other method on `/v2/` writes (uploads, manifest PUTs, deletes): refused in read-only mode.
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def render(error: OCIError) -> web.Response:
    return render_oci(error, API_VERSION)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as an OCI error body; an unexpected one as `UNKNOWN` with the request id."""
    try:
        response = await handler(request)
    except OCIError as exc:
        if exc.status >= 500:
            log.error("request_failed", code=exc.code, detail=exc.detail)
        return render(exc)
    except DomainError as exc:
        return render(to_oci(exc))
    except web.HTTPNotFound:
        return render(RouteUnknown(detail={"path": request.path}))
    except web.HTTPMethodNotAllowed:
        return render(Unsupported(detail={"method": request.method, "path": request.path}))
    except web.HTTPException:
        raise
    except web.RequestPayloadError as exc:
        # The body's framing broke mid-way (a bad chunk); nothing past the last commit is kept.
        log.info("request_body_malformed", method=request.method, path=request.path, error=str(exc))
        return render(BlobUploadInvalid(detail={"reason": "the request body is malformed"}))
    except ConnectionResetError:
        # The client went away mid-body; nothing it sent past the last commit is kept.
        log.info("client_disconnected", method=request.method, path=request.path)
        return render(BlobUploadInvalid(detail={"reason": "connection lost"}))
    except StorageError as exc:
        log.exception("storage_failed", error=str(exc))
        return render(Unknown(detail={"request_id": request.get(REQUEST_ID, "")}, message="storage error"))
    except Exception as exc:
        return render(unexpected_failure(request, exc))
    if not response.prepared:
        response.headers.update(API_VERSION)
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route
    spec = BY_NAME.get(route.name or "") if route is not None else None
    if spec is None:
        return await handler(request)
    name = request.match_info.get("name", "")
    if spec.need in ("pull", "push", "delete") and not is_valid_name(name):
        raise NameInvalid(detail={"name": name[:300]})
    if spec.need == "base":
        need = Need("base")
    elif spec.need == "catalog":
        need = Need("registry", "catalog", "*")
    else:
        need = Need("repository", name, spec.need, spec.challenge)
    authorizer = request.app[AUTHORIZER]
    grant = authorizer.authorize(
        request.headers.get("Authorization"), need, continues_upload=spec.continues_upload
    )
    if request.method not in _READS and (await request.app[RUNTIME].get()).read_only:
        # After authorization, as Harbor does: a client without credentials still gets its
        # challenge, and then this refusal (DENIED, 403) rather than an unexplained one.
        raise Denied(message=READ_ONLY_MESSAGE)
    if spec.completes_push:
        # The token may predate a change of membership: what becomes visible is checked now.
        await authorizer.recheck_push(request.app[DB], grant, name)
    request[GRANT] = grant
    return await handler(request)
