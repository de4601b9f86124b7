"""`/service/token`'s one table from domain errors to its protocol errors: every identity error
has a row, every row answers a 4xx in both protocols, and no row lets a detail through."""

from __future__ import annotations

import pytest

from wharf_shared.errors import domain as d
from wharf_shared.errors import oci
from wharf_token.errors import TABLE, ServerError, to_protocol

OAUTH2_ERRORS = {
    "invalid_request",
    "invalid_grant",
    "invalid_scope",
    "unsupported_grant_type",
    "temporarily_unavailable",
}


def _identity_errors() -> list[type[d.DomainError]]:
    classes = [
        v for v in vars(d).values() if isinstance(v, type) and issubclass(v, d.Unauthenticated | d.Throttled)
    ]
    return sorted(
        (c for c in classes if not any(o is not c and issubclass(o, c) for o in classes)),
        key=lambda c: c.__name__,
    )


def _instance(cls: type[d.DomainError]) -> d.DomainError:
    if cls is d.Throttled:
        return d.Throttled(retry_after=30, username="alice")
    return cls(username="alice")


@pytest.mark.parametrize("cls", _identity_errors(), ids=lambda c: c.__name__)
def test_every_identity_error_has_its_own_row(cls: type[d.DomainError]) -> None:
    assert cls in TABLE
    error = to_protocol(_instance(cls))
    as_oci = error.as_oci()
    assert 400 <= as_oci.status < 500
    assert as_oci.code in oci.SPEC_CODES
    code, status = error.as_oauth()
    assert code in OAUTH2_ERRORS
    assert status in (400, 429)
    assert as_oci.to_dict()["detail"] == {}  # "alice" stays out: refusals tell nothing apart
    assert as_oci.text == cls.default_message


def test_a_login_failure_challenges_for_basic_credentials_on_get_only() -> None:
    error = to_protocol(d.LoginFailed())
    assert (error.as_oci().status, error.as_oci().headers) == (
        401,
        {"WWW-Authenticate": 'Basic realm="wharf"'},
    )
    assert error.as_oauth() == ("invalid_grant", 400)
    assert error.headers == {}


def test_a_lockout_says_when_to_come_back() -> None:
    error = to_protocol(d.Throttled(retry_after=60))
    assert error.as_oci().headers == {"Retry-After": "60"}
    assert error.as_oauth() == ("temporarily_unavailable", 429)


def test_an_error_without_a_row_is_a_server_error() -> None:
    error = to_protocol(d.BlobNotFound())
    assert isinstance(error, ServerError)
    assert error.as_oci().status == 500
    assert error.as_oauth() == ("server_error", 500)
