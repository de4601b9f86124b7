"""The `/v2/` edge's one table from domain errors to OCI errors: every concrete domain error has
a row, every row answers a 4xx with a code from the spec's list, and facts travel as detail."""

from __future__ import annotations

import pytest

from wharf_registry.errors import TABLE, to_oci
from wharf_shared.errors import domain as d
from wharf_shared.errors import oci

# Failed logins and lockouts happen at the token service; its own table maps them
# (`wharf_token.errors`, tests/unit/test_token_errors.py). Preconditions are the management
# API's (`wharf_ui.errors`, tests/unit/ui/test_ui_errors.py), and so are the failures of systems
# Wharf reads from (a CMDB: `Unavailable`).
_NOT_ON_V2 = (d.Unauthenticated, d.Throttled, d.PreconditionFailed, d.Unavailable)


def _concrete() -> list[type[d.DomainError]]:
    """Domain errors nothing subclasses: the ones code raises."""
    classes = [
        v
        for v in vars(d).values()
        if isinstance(v, type) and issubclass(v, d.DomainError) and not issubclass(v, _NOT_ON_V2)
    ]
    return sorted(
        (c for c in classes if not any(o is not c and issubclass(o, c) for o in classes)),
        key=lambda c: c.__name__,
    )


def _instance(cls: type[d.DomainError]) -> d.DomainError:
    if cls is d.OffsetMismatch:
        return d.OffsetMismatch(offset=10)
    if cls is d.MissingReferences:
        return d.MissingReferences(["sha256:" + "1" * 64])
    return cls(thing="x")


@pytest.mark.parametrize("cls", _concrete(), ids=lambda c: c.__name__)
def test_every_domain_error_has_its_own_row(cls: type[d.DomainError]) -> None:
    assert cls in TABLE
    error = to_oci(_instance(cls))
    assert 400 <= error.status < 500
    assert error.code in oci.SPEC_CODES
    assert error.to_dict()["detail"]


def test_offset_mismatch_says_where_the_upload_stands() -> None:
    error = to_oci(d.OffsetMismatch(offset=10, start=4))
    assert (error.code, error.status) == ("BLOB_UPLOAD_INVALID", 416)
    assert error.headers == {"Range": "0-9"}
    assert to_oci(d.OffsetMismatch(offset=0)).headers == {"Range": "0-0"}


def test_own_message_is_kept_default_is_the_codes() -> None:
    assert to_oci(d.InvalidManifest("manifest invalid: layers must be a list")).text == (
        "manifest invalid: layers must be a list"
    )
    assert to_oci(d.ManifestNotFound()).text == oci.ManifestUnknown.message


def test_a_subclass_without_a_row_takes_its_parents() -> None:
    class StaleBlob(d.BlobNotFound):
        pass

    assert to_oci(StaleBlob(digest="x")).code == "BLOB_UNKNOWN"
