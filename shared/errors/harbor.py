"""Harbor API v2.0 error codes: the `/api/` surface's one error type.

Harbor answers every refusal with `{"errors":[{"code","message"}]}` and ties the HTTP status to
the code in one table (`src/server/error/error.go`); so do we: each condition is a class with
its code and status, and call sites only choose the class and the message.
"""

from __future__ import annotations

import json
from typing import Any

from wharf_shared.errors.coded import CodedError


class HarborError(CodedError):
    """An `/api/` failure; rendered as `{"errors":[{"code","message"}]}` (no `detail`)."""

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.text}

    def body(self) -> bytes:
        return json.dumps({"errors": [self.to_dict()]}).encode()


class BadRequest(HarborError):
    code, message, status = "BAD_REQUEST", "bad request", 400


class Unauthorized(HarborError):
    code, message, status = "UNAUTHORIZED", "unauthorized", 401


class Forbidden(HarborError):
    code, message, status = "FORBIDDEN", "forbidden", 403


class Denied(HarborError):
    """Harbor's refusal of any change while the system is in read-only mode."""

    code, message, status = "DENIED", "the request is denied", 403


class NotFound(HarborError):
    code, message, status = "NOT_FOUND", "not found", 404


class MethodNotAllowed(HarborError):
    code, message, status = "METHOD_NOT_ALLOWED", "method not allowed", 405


class Conflict(HarborError):
    code, message, status = "CONFLICT", "conflict", 409


class PreconditionFailed(HarborError):
    code, message, status = "PRECONDITION", "precondition failed", 412


class ForeignKeyViolation(HarborError):
    """Something still refers to what is being deleted (an index to its child manifest)."""

    code, message, status = "VIOLATE_FOREIGN_KEY_CONSTRAINT", "the resource is referenced by others", 412


class PayloadTooLarge(HarborError):
    code, message, status = "BAD_REQUEST", "the request body is too large", 413


class TooManyRequests(HarborError):
    code, message, status = "TOO_MANY_REQUEST", "too many requests", 429


class Unknown(HarborError):
    code, message, status = "UNKNOWN", "internal server error", 500


class Unavailable(HarborError):
    code, message, status = "UNAVAILABLE", "a dependency is unavailable: retry later", 503


ALL: tuple[type[HarborError], ...] = (
    BadRequest,
    Unauthorized,
    Forbidden,
    Denied,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PreconditionFailed,
    ForeignKeyViolation,
    PayloadTooLarge,
    TooManyRequests,
    Unknown,
    Unavailable,
)
