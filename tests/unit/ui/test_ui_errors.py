"""The `/api/` edge's table from domain errors to Harbor's codes: every domain error answers a
4xx with its own message (none falls through to 500), except a system Wharf reads from that did
not answer (`Unavailable`): 503."""

from __future__ import annotations

import pytest

from wharf_shared.errors import domain as d
from wharf_shared.errors import harbor
from wharf_ui.errors import to_harbor


def _instance(cls: type[d.DomainError]) -> d.DomainError:
    if cls is d.OffsetMismatch:
        return d.OffsetMismatch("why", offset=1)
    if cls is d.MissingReferences:
        return d.MissingReferences(["sha256:" + "1" * 64])
    if cls is d.Throttled:
        return d.Throttled("why", retry_after=7)
    return cls("why")


ALL = sorted(
    (
        v
        for v in vars(d).values()
        if isinstance(v, type) and issubclass(v, d.DomainError) and v is not d.DomainError
    ),
    key=lambda c: c.__name__,
)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_domain_error_is_a_4xx(cls: type[d.DomainError]) -> None:
    exc = _instance(cls)
    error = to_harbor(exc)
    if issubclass(cls, d.Unavailable):
        assert error.status == 503
    else:
        assert 400 <= error.status < 500
    assert error.text == exc.message


def test_the_rows() -> None:
    assert to_harbor(d.NotFound("x")).status == 404
    assert to_harbor(d.Conflict("x")).code == "CONFLICT"
    assert to_harbor(d.PreconditionFailed("x")).status == 412
    assert to_harbor(d.Forbidden("x")).status == 403
    assert to_harbor(d.LoginFailed()).status == 401
    throttled = to_harbor(d.Throttled(retry_after=7))
    assert (throttled.status, throttled.headers) == (429, {"Retry-After": "7"})
    assert isinstance(to_harbor(d.InvalidInput("x")), harbor.BadRequest)
