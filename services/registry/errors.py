"""The `/v2/` surface's one table from domain errors to OCI errors.

Domain modules raise `wharf_shared.errors.domain` errors; the middleware renders what `to_oci`
makes of them. Every concrete domain error the registry can raise has a row here (a unit test
checks it), and the status comes with the OCI class, never from the call site.
"""

from __future__ import annotations

from collections.abc import Callable

from wharf_shared.errors import domain as d
from wharf_shared.errors import oci

Convert = Callable[[d.DomainError], oci.OCIError]


def _plain(cls: type[oci.OCIError]) -> Convert:
    def convert(exc: d.DomainError) -> oci.OCIError:
        # A domain error's own message only when it says more than its class's default.
        message = exc.message if exc.message != type(exc).default_message else None
        return cls(detail=exc.detail or None, message=message)

    return convert


def _offset(exc: d.DomainError) -> oci.OCIError:
    assert isinstance(exc, d.OffsetMismatch)
    # The spec's inclusive range of bytes received; "0-0" before the first byte.
    return oci.RangeInvalid(detail=exc.detail, headers={"Range": f"0-{max(exc.offset - 1, 0)}"})


TABLE: dict[type[d.DomainError], Convert] = {
    d.RepositoryNotFound: _plain(oci.NameUnknown),
    d.BlobNotFound: _plain(oci.BlobUnknown),
    d.ManifestNotFound: _plain(oci.ManifestUnknown),
    d.UploadNotFound: _plain(oci.BlobUploadUnknown),
    d.InvalidName: _plain(oci.NameInvalid),
    d.InvalidTag: _plain(oci.TagInvalid),
    d.InvalidDigest: _plain(oci.DigestInvalid),
    d.DigestMismatch: _plain(oci.DigestInvalid),
    d.SizeMismatch: _plain(oci.SizeInvalid),
    d.OffsetMismatch: _offset,
    d.InvalidUpload: _plain(oci.BlobUploadInvalid),
    d.UploadBusy: _plain(oci.BlobUploadInvalid),
    d.InvalidManifest: _plain(oci.ManifestInvalid),
    d.MissingReferences: _plain(oci.ManifestBlobUnknown),
    d.TooLarge: _plain(oci.ManifestTooLarge),
    d.ManifestReferenced: _plain(oci.ManifestReferenced),
    d.BlobReferenced: _plain(oci.BlobReferenced),
    d.Forbidden: _plain(oci.Denied),
}


def to_oci(exc: d.DomainError) -> oci.OCIError:
    """The OCI error for a domain error: its own row, else its nearest ancestor's."""
    for cls in type(exc).__mro__:
        convert = TABLE.get(cls)
        if convert is not None:
            return convert(exc)
    return oci.Unknown(detail={"error": type(exc).__name__}, message=exc.message)
