"""OCI Distribution error codes: the `/v2/` surface's one error type.

Each condition is a class whose code, message and HTTP status come from the table below, so
call sites never pick a status: `raise BlobUnknown(detail={"digest": d})`. Codes are the
spec's, plus distribution's `UNKNOWN`, `RANGE_INVALID` and `PAGINATION_NUMBER_INVALID`.
"""

from __future__ import annotations

from typing import Any, ClassVar

# The spec's error codes (OCI distribution-spec v1.1, "Error Codes").
SPEC_CODES = frozenset(
    {
        "BLOB_UNKNOWN",
        "BLOB_UPLOAD_INVALID",
        "BLOB_UPLOAD_UNKNOWN",
        "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_INVALID",
        "MANIFEST_UNKNOWN",
        "NAME_INVALID",
        "NAME_UNKNOWN",
        "SIZE_INVALID",
        "UNAUTHORIZED",
        "DENIED",
        "UNSUPPORTED",
        "TOOMANYREQUESTS",
    }
)


class OCIError(Exception):
    """A `/v2/` failure; rendered as `{"errors":[{"code","message","detail"}]}`."""

    code: ClassVar[str] = "UNKNOWN"
    message: ClassVar[str] = "unknown error"
    status: ClassVar[int] = 500

    def __init__(self, detail: Any = None, *, message: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message or self.message)
        self.detail = detail
        self.text = message or self.message
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.text, "detail": self.detail if self.detail is not None else {}}


def _code(name: str, code: str, message: str, status: int) -> type[OCIError]:
    cls = type(name, (OCIError,), {"code": code, "message": message, "status": status})
    return cls


# name                      code                         message                                       status
BlobUnknown = _code("BlobUnknown", "BLOB_UNKNOWN", "blob unknown to registry", 404)
BlobUploadInvalid = _code("BlobUploadInvalid", "BLOB_UPLOAD_INVALID", "blob upload invalid", 400)
BlobUploadUnknown = _code("BlobUploadUnknown", "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", 404)
DigestInvalid = _code("DigestInvalid", "DIGEST_INVALID", "provided digest did not match uploaded content", 400)
ManifestBlobUnknown = _code(
    "ManifestBlobUnknown", "MANIFEST_BLOB_UNKNOWN", "manifest references a manifest or blob unknown to registry", 400
)
ManifestInvalid = _code("ManifestInvalid", "MANIFEST_INVALID", "manifest invalid", 400)
ManifestTooLarge = _code("ManifestTooLarge", "SIZE_INVALID", "manifest exceeds the size limit", 413)
ManifestUnknown = _code("ManifestUnknown", "MANIFEST_UNKNOWN", "manifest unknown to registry", 404)
ManifestReferenced = _code(
    "ManifestReferenced", "DENIED", "manifest is referenced by an index in this repository", 409
)
NameInvalid = _code("NameInvalid", "NAME_INVALID", "invalid repository name", 400)
NameUnknown = _code("NameUnknown", "NAME_UNKNOWN", "repository name not known to registry", 404)
SizeInvalid = _code("SizeInvalid", "SIZE_INVALID", "provided length did not match content length", 400)
TagInvalid = _code("TagInvalid", "MANIFEST_INVALID", "invalid tag", 400)
Unauthorized = _code("Unauthorized", "UNAUTHORIZED", "authentication required", 401)
Denied = _code("Denied", "DENIED", "requested access to the resource is denied", 403)
Unsupported = _code("Unsupported", "UNSUPPORTED", "the operation is unsupported", 405)
UnsupportedMediaType = _code("UnsupportedMediaType", "MANIFEST_INVALID", "unsupported manifest media type", 415)
TooManyRequests = _code("TooManyRequests", "TOOMANYREQUESTS", "too many requests", 429)
RangeInvalid = _code("RangeInvalid", "RANGE_INVALID", "invalid content range", 416)
RangeNotSatisfiable = _code("RangeNotSatisfiable", "RANGE_INVALID", "requested range not satisfiable", 416)
PaginationNumberInvalid = _code(
    "PaginationNumberInvalid", "PAGINATION_NUMBER_INVALID", "invalid number of results requested", 400
)
RouteUnknown = _code("RouteUnknown", "UNSUPPORTED", "no such endpoint", 404)
Unavailable = _code("Unavailable", "UNAVAILABLE", "service unavailable", 503)
Unknown = _code("Unknown", "UNKNOWN", "unknown error", 500)

ALL: tuple[type[OCIError], ...] = tuple(
    v for v in list(globals().values()) if isinstance(v, type) and issubclass(v, OCIError) and v is not OCIError
)
