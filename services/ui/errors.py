"""The ui's one table from domain errors to Harbor's error codes (the status comes with the code)."""

from __future__ import annotations

from wharf_shared.errors import domain as d
from wharf_shared.errors import harbor as h

TABLE: dict[type[d.DomainError], type[h.HarborError]] = {
    d.NotFound: h.NotFound,
    d.InvalidInput: h.BadRequest,
    d.Conflict: h.Conflict,
    # Harbor refuses to delete an artifact an index lists with this code and 412.
    d.ManifestReferenced: h.ForeignKeyViolation,
    d.Forbidden: h.Forbidden,
    d.PreconditionFailed: h.PreconditionFailed,
    d.Unauthenticated: h.Unauthorized,
    d.Throttled: h.TooManyRequests,
    d.Unavailable: h.Unavailable,
}


def to_harbor(exc: d.DomainError) -> h.HarborError:
    """The Harbor error for a domain error: its own row, else its nearest ancestor's."""
    for cls in type(exc).__mro__:
        harbor = TABLE.get(cls)
        if harbor is not None:
            headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, d.Throttled) else None
            return harbor(message=exc.message, headers=headers)
    return h.Unknown(message=exc.message)
