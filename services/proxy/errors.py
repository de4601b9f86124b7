"""The front door's failures as HTTP errors: one table, the only place a status is chosen.

The bodies have the `{"errors": [...]}` shape the OCI and Harbor APIs use (wharf_shared.errors.http),
so that a docker client and the portal both read them.
"""

from __future__ import annotations

from wharf_proxy.bodies import ClientBodyFailed
from wharf_proxy.forward import NoUpstream, UpstreamTimedOut
from wharf_proxy.paths import MalformedTarget
from wharf_shared.errors.http import BadRequest, GatewayTimeout, HTTPError, Unavailable

RETRY_AFTER = {"Retry-After": "5"}

# Most specific first: UpstreamTimedOut is a NoUpstream.
TABLE: tuple[tuple[type[Exception], type[HTTPError]], ...] = (
    (MalformedTarget, BadRequest),
    (ClientBodyFailed, BadRequest),
    (UpstreamTimedOut, GatewayTimeout),
    (NoUpstream, Unavailable),
)


def to_http(exc: Exception, request_id: str) -> HTTPError:
    detail = {"request_id": request_id}
    error = next((error for kind, error in TABLE if isinstance(exc, kind)), None)
    if error is None:
        raise TypeError(f"no HTTP error for {type(exc).__name__}")
    if isinstance(exc, NoUpstream):
        message = (
            f"no {exc.pool} instance answered in time; try again"
            if isinstance(exc, UpstreamTimedOut)
            else f"no {exc.pool} instance could take the request; try again"
        )
        return error(detail, message=message, headers=RETRY_AFTER)
    if isinstance(exc, ClientBodyFailed):
        return error(detail, message="the request body was malformed or cut off")
    return error(detail, message=f"malformed request target: {exc}")


FAILURES: tuple[type[Exception], ...] = tuple(kind for kind, _ in TABLE)
