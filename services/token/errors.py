"""`/service/token`'s protocol errors, and its one table from domain errors to them.

The endpoint speaks two protocols. GET is the Docker token spec: clients read an OCI error body
(`{"errors":[{"code","message","detail"}]}`) and the status that comes with its code. POST is
OAuth2 (RFC 6749 §5.2): clients read `error` and `error_description`, with 400 for every
refusal of a grant. Each refusal is one class here that knows both answers; a POST body holds
the `errors` list as well, so one body serves either kind of client. Call sites never pick a
status.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from wharf_shared.errors import domain as d
from wharf_shared.errors import oci

BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="wharf"'}


class TokenRequestError(Exception):
    """A refusal at `/service/token`, in both of its protocols' terms."""

    oci_class: ClassVar[type[oci.OCIError]] = oci.TokenRequestInvalid
    oauth: ClassVar[str] = "invalid_request"  # RFC 6749 §5.2 `error`
    oauth_status: ClassVar[int] = 400
    challenge: ClassVar[bool] = False  # GET: a 401 that asks for Basic credentials

    def __init__(
        self, message: str | None = None, *, detail: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        self.text = message or self.oci_class.message
        super().__init__(self.text)
        self.detail = detail
        self.headers = headers or {}

    def as_oci(self) -> oci.OCIError:
        """The Docker token spec's answer (GET)."""
        headers = {**self.headers, **(BASIC_CHALLENGE if self.challenge else {})}
        return self.oci_class(self.detail, message=self.text, headers=headers)

    def as_oauth(self) -> tuple[str, int]:
        """RFC 6749's `error` and the status (POST)."""
        return self.oauth, self.oauth_status


class InvalidRequest(TokenRequestError):
    """A request the service cannot read: its body, a parameter missing, repeated or malformed."""


class InvalidScope(TokenRequestError):
    oauth = "invalid_scope"


class UnsupportedGrantType(TokenRequestError):
    oauth = "unsupported_grant_type"


class AuthenticationRequired(TokenRequestError):
    """GET without credentials and without a scope (`docker login` probing): nothing to grant."""

    oci_class, challenge = oci.Unauthorized, True


class InvalidGrant(TokenRequestError):
    """Credentials or a refresh token that sign no one in."""

    oci_class, oauth, challenge = oci.Unauthorized, "invalid_grant", True


class TooManyFailures(TokenRequestError):
    # RFC 6749 has no code for a lockout; the closest registered one, with 429 and Retry-After.
    oci_class, oauth, oauth_status = oci.TooManyRequests, "temporarily_unavailable", 429


class ServerError(TokenRequestError):
    """An unexpected failure (UNKNOWN, 500) or a dependency down (UNAVAILABLE, 503, retry)."""

    def __init__(self, error: oci.OCIError) -> None:
        super().__init__(error.text, detail=error.detail, headers=error.headers)
        self.error = error

    def as_oci(self) -> oci.OCIError:
        return self.error

    def as_oauth(self) -> tuple[str, int]:
        code = "temporarily_unavailable" if self.error.status == 503 else "server_error"
        return code, self.error.status


Convert = Callable[[d.DomainError], TokenRequestError]


def _plain(cls: type[TokenRequestError]) -> Convert:
    def convert(exc: d.DomainError) -> TokenRequestError:
        return cls(exc.message)

    return convert


def _throttled(exc: d.DomainError) -> TokenRequestError:
    assert isinstance(exc, d.Throttled)
    return TooManyFailures(exc.message, headers={"Retry-After": str(exc.retry_after)})


# The domain errors the token service can meet. Messages are the domain's own (written for the
# client); details stay out: a refusal must not tell an unknown user from a wrong password.
TABLE: dict[type[d.DomainError], Convert] = {
    d.LoginFailed: _plain(InvalidGrant),
    d.RefreshTokenInvalid: _plain(InvalidGrant),
    d.Throttled: _throttled,
}


def to_protocol(exc: d.DomainError) -> TokenRequestError:
    """The protocol error for a domain error: its own row, else its nearest ancestor's."""
    for cls in type(exc).__mro__:
        convert = TABLE.get(cls)
        if convert is not None:
            return convert(exc)
    return ServerError(oci.Unknown(detail={"error": type(exc).__name__}, message=exc.message))
