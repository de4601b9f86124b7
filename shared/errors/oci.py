"""OCI Distribution error codes: the `/v2/` surface's one error type.

Each condition is a class whose code, message and HTTP status come from the table below, so
call sites never pick a status: `raise BlobUnknown(detail={"digest": d})`. Codes are the
spec's, plus `UNKNOWN` (an unexpected failure, as distribution names it) and `UNAVAILABLE`
(a dependency is down: retry).
"""

from __future__ import annotations

from wharf_shared.errors.coded import CodedError

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


class OCIError(CodedError):
    """A `/v2/` failure; rendered as `{"errors":[{"code","message","detail"}]}`."""


# One class per condition; the code and status come with the class, never from the call site.


class BlobUnknown(OCIError):
    code, message, status = "BLOB_UNKNOWN", "blob unknown to registry", 404


class BlobUploadInvalid(OCIError):
    code, message, status = "BLOB_UPLOAD_INVALID", "blob upload invalid", 400


class BlobUploadUnknown(OCIError):
    code, message, status = "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", 404


class DigestInvalid(OCIError):
    code, message, status = "DIGEST_INVALID", "provided digest did not match uploaded content", 400


class ManifestBlobUnknown(OCIError):
    code, status = "MANIFEST_BLOB_UNKNOWN", 400
    message = "manifest references a manifest or blob unknown to registry"


class ManifestInvalid(OCIError):
    code, message, status = "MANIFEST_INVALID", "manifest invalid", 400


class ManifestTooLarge(OCIError):
    code, message, status = "SIZE_INVALID", "manifest exceeds the size limit", 413


class ManifestUnknown(OCIError):
    code, message, status = "MANIFEST_UNKNOWN", "manifest unknown to registry", 404


class ManifestReferenced(OCIError):
    code, message, status = "DENIED", "manifest is referenced by an index in this repository", 409


class BlobReferenced(OCIError):
    code, message, status = "DENIED", "blob is referenced by a manifest in this repository", 409


class NameInvalid(OCIError):
    code, message, status = "NAME_INVALID", "invalid repository name", 400


class NameUnknown(OCIError):
    code, message, status = "NAME_UNKNOWN", "repository name not known to registry", 404


class SizeInvalid(OCIError):
    code, message, status = "SIZE_INVALID", "provided length did not match content length", 400


class TagInvalid(OCIError):
    code, message, status = "MANIFEST_INVALID", "invalid tag", 400


class Unauthorized(OCIError):
    code, message, status = "UNAUTHORIZED", "authentication required", 401


class Denied(OCIError):
    code, message, status = "DENIED", "requested access to the resource is denied", 403


class Unsupported(OCIError):
    code, message, status = "UNSUPPORTED", "the operation is unsupported", 405


class TooManyRequests(OCIError):
    code, message, status = "TOOMANYREQUESTS", "too many requests", 429


class RangeInvalid(OCIError):
    code, message, status = "BLOB_UPLOAD_INVALID", "invalid content range", 416


class RangeNotSatisfiable(OCIError):
    code, message, status = "SIZE_INVALID", "requested range not satisfiable", 416


class PaginationNumberInvalid(OCIError):
    code, message, status = "UNSUPPORTED", "invalid number of results requested", 400


class TokenRequestInvalid(OCIError):
    code, message, status = "UNSUPPORTED", "invalid token request", 400


class RouteUnknown(OCIError):
    code, message, status = "UNSUPPORTED", "no such endpoint", 404


class Unavailable(OCIError):
    code, message, status = "UNAVAILABLE", "service unavailable", 503


class Unknown(OCIError):
    code, message, status = "UNKNOWN", "unknown error", 500


ALL: tuple[type[OCIError], ...] = tuple(
    v
    for v in list(globals().values())
    if isinstance(v, type) and issubclass(v, OCIError) and v is not OCIError
)
