"""Domain errors: what the registry and identity domains refuse, in no protocol's terms.

Domain modules raise these; each protocol surface maps them to its own error model in one table
at its edge (OCI error JSON on `/v2/`, Harbor's error body on `/api/`), so the management API and
replication can call the same domain functions as `/v2/` and still answer in their own words.
`detail` holds machine-readable facts (a digest, an offset) for the edge to pass on.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    default_message: ClassVar[str] = "the request was refused"

    def __init__(self, message: str | None = None, **detail: Any) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)
        self.detail = detail


# -- something named does not exist ------------------------------------------------------------


class NotFound(DomainError):
    default_message = "not found"


class RepositoryNotFound(NotFound):
    default_message = "repository not found"


class BlobNotFound(NotFound):
    default_message = "blob not found"


class ManifestNotFound(NotFound):
    default_message = "manifest not found"


class UploadNotFound(NotFound):
    default_message = "upload not found"


# -- the input cannot be used ------------------------------------------------------------------


class InvalidInput(DomainError):
    default_message = "invalid input"


class InvalidName(InvalidInput):
    default_message = "invalid repository name"


class InvalidTag(InvalidInput):
    default_message = "invalid tag"


class InvalidDigest(InvalidInput):
    default_message = "invalid digest"


class DigestMismatch(InvalidInput):
    default_message = "the content does not match its digest"


class SizeMismatch(InvalidInput):
    default_message = "the content's length does not match the declared length"


class OffsetMismatch(InvalidInput):
    """A chunk that does not start where the upload stands; `offset` is where it does."""

    default_message = "the chunk does not start at the upload's offset"

    def __init__(self, message: str | None = None, *, offset: int, **detail: Any) -> None:
        super().__init__(message, offset=offset, **detail)
        self.offset = offset


class InvalidUpload(InvalidInput):
    default_message = "the upload cannot continue"


class InvalidManifest(InvalidInput):
    default_message = "manifest invalid"


class MissingReferences(InvalidInput):
    """A manifest names blobs or manifests the repository does not hold."""

    default_message = "the manifest references blobs or manifests unknown to the repository"

    def __init__(self, digests: list[str]) -> None:
        super().__init__(None, digests=digests)
        self.digests = digests


class TooLarge(InvalidInput):
    default_message = "the content exceeds the size limit"


# -- the state forbids it ------------------------------------------------------------------------


class Conflict(DomainError):
    default_message = "the request conflicts with the current state"


class ManifestReferenced(Conflict):
    default_message = "the manifest is referenced by an index in this repository"


class BlobReferenced(Conflict):
    default_message = "the blob is referenced by a manifest in this repository"


class UploadBusy(Conflict):
    default_message = "another request is writing this upload"


class Forbidden(DomainError):
    default_message = "the caller may not do this"


class PreconditionFailed(DomainError):
    """The request is sound, but something else must change first (a user who owns projects)."""

    default_message = "a precondition of the request is not met"


class Unavailable(DomainError):
    """A system Wharf reads from (a CMDB, a directory) did not answer usably: nothing was changed."""

    default_message = "a system Wharf depends on is unavailable"


# -- identity ------------------------------------------------------------------------------------


class Unauthenticated(DomainError):
    default_message = "authentication required"


class LoginFailed(Unauthenticated):
    """Credentials that do not sign anyone in: an unknown user reads exactly as a wrong password."""

    default_message = "authentication failed: incorrect username or password"


class RefreshTokenInvalid(Unauthenticated):
    default_message = "the refresh token is not valid"


class Throttled(DomainError):
    """Too many failed logins: refused before any check; `retry_after` seconds until the next try."""

    default_message = "too many failed logins: try again later"

    def __init__(self, message: str | None = None, *, retry_after: int, **detail: Any) -> None:
        super().__init__(message, retry_after=retry_after, **detail)
        self.retry_after = retry_after
