"""The OCI error table: every class has a code, a message and a status; every spec code a class."""

from __future__ import annotations

import json

import pytest

from wharf_shared.errors import oci

# OCI distribution-spec v1.1, "Error Codes" (code-1 .. code-14), written out here on purpose:
# the table in the code must match the spec, not itself.
SPEC = {
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
# The only codes outside the spec's list: failures that are not the client's (5xx).
DISTRIBUTION_EXTRAS = {"UNKNOWN", "UNAVAILABLE"}

# The class a handler raises for each spec code, and the status the spec's workflows give it.
EXPECTED = {
    oci.BlobUnknown: ("BLOB_UNKNOWN", 404),
    oci.BlobUploadInvalid: ("BLOB_UPLOAD_INVALID", 400),
    oci.BlobUploadUnknown: ("BLOB_UPLOAD_UNKNOWN", 404),
    oci.DigestInvalid: ("DIGEST_INVALID", 400),
    oci.ManifestBlobUnknown: ("MANIFEST_BLOB_UNKNOWN", 400),
    oci.ManifestInvalid: ("MANIFEST_INVALID", 400),
    oci.ManifestUnknown: ("MANIFEST_UNKNOWN", 404),
    oci.NameInvalid: ("NAME_INVALID", 400),
    oci.NameUnknown: ("NAME_UNKNOWN", 404),
    oci.SizeInvalid: ("SIZE_INVALID", 400),
    oci.Unauthorized: ("UNAUTHORIZED", 401),
    oci.Denied: ("DENIED", 403),
    oci.Unsupported: ("UNSUPPORTED", 405),
    oci.TooManyRequests: ("TOOMANYREQUESTS", 429),
    oci.RangeInvalid: ("BLOB_UPLOAD_INVALID", 416),
    oci.Unknown: ("UNKNOWN", 500),
    oci.Unavailable: ("UNAVAILABLE", 503),
}

ERRORS = sorted(oci.ALL, key=lambda cls: cls.__name__)


def test_spec_codes_are_the_spec() -> None:
    assert oci.SPEC_CODES == SPEC


def test_all_lists_every_class() -> None:
    defined = {
        value
        for value in vars(oci).values()
        if isinstance(value, type) and issubclass(value, oci.OCIError) and value is not oci.OCIError
    }
    assert set(oci.ALL) == defined
    assert len(oci.ALL) == len(defined)


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_each_class_has_code_message_status(cls: type[oci.OCIError]) -> None:
    assert cls.code in SPEC | DISTRIBUTION_EXTRAS, f"{cls.code} is neither the spec's nor distribution's"
    assert cls.code == cls.code.upper()
    assert isinstance(cls.message, str)
    assert cls.message.strip()
    assert cls.message[0].islower(), "messages are lower-case phrases, as the spec's"
    assert 400 <= cls.status <= 599
    # Each class states its own row, none inherits the UNKNOWN/500 default by accident.
    if cls is not oci.Unknown:
        assert "code" in vars(cls)
        assert "status" in vars(cls)
        assert "message" in vars(cls)


def test_client_and_server_errors() -> None:
    server = {cls for cls in oci.ALL if cls.status >= 500}
    assert server == {oci.Unknown, oci.Unavailable}


@pytest.mark.parametrize("code", sorted(SPEC))
def test_every_spec_code_has_a_class(code: str) -> None:
    assert any(cls.code == code for cls in oci.ALL)


@pytest.mark.parametrize(("cls", "row"), list(EXPECTED.items()), ids=lambda v: getattr(v, "__name__", ""))
def test_status_by_code(cls: type[oci.OCIError], row: tuple[str, int]) -> None:
    assert (cls.code, cls.status) == row


def test_to_dict_shape() -> None:
    error = oci.BlobUnknown(detail={"digest": "sha256:" + "0" * 64})
    body = error.to_dict()
    assert body == {
        "code": "BLOB_UNKNOWN",
        "message": "blob unknown to registry",
        "detail": {"digest": "sha256:" + "0" * 64},
    }
    assert json.loads(json.dumps({"errors": [body]})) == {"errors": [body]}


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_to_dict_defaults(cls: type[oci.OCIError]) -> None:
    body = cls().to_dict()
    assert list(body) == ["code", "message", "detail"]
    assert body == {"code": cls.code, "message": cls.message, "detail": {}}


def test_custom_message_and_headers() -> None:
    error = oci.RangeInvalid(detail=[1, 2], message="range 5-3 is backwards", headers={"Range": "0-4"})
    assert error.to_dict() == {
        "code": "BLOB_UPLOAD_INVALID",
        "message": "range 5-3 is backwards",
        "detail": [1, 2],
    }
    assert str(error) == "range 5-3 is backwards"
    assert error.headers == {"Range": "0-4"}
    assert error.status == 416
    # falsy details are kept as given, only None becomes {}
    assert oci.NameUnknown(detail="").to_dict()["detail"] == ""


def test_headers_are_per_instance() -> None:
    first = oci.Unauthorized()
    first.headers["WWW-Authenticate"] = "Bearer realm=x"
    assert oci.Unauthorized().headers == {}


def test_errors_are_exceptions() -> None:
    with pytest.raises(oci.OCIError) as info:
        raise oci.ManifestUnknown(detail={"tag": "latest"})
    assert info.value.status == 404


def test_database_unavailable_is_told_from_a_bug() -> None:
    from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

    from wharf_shared.db.engine import is_unavailable

    class PgError(Exception):
        def __init__(self, message: str, sqlstate: str) -> None:
            super().__init__(message)
            self.sqlstate = sqlstate

    full = DBAPIError("connect", None, PgError("sorry, too many clients already", "53300"))
    mysql_full = DBAPIError("connect", None, Exception(1040, "Too many connections"))
    bad_sql = ProgrammingError("SELECT", None, PgError('relation "x" does not exist', "42P01"))
    assert is_unavailable(full)
    assert is_unavailable(mysql_full)
    assert is_unavailable(OperationalError("connect", None, Exception("connection refused")))
    assert not is_unavailable(bad_sql)
    assert not is_unavailable(ValueError("x"))
