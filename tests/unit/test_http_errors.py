"""The HTTP-level error table (wharf_shared.errors.http): every class has a code, a message and
a status that agree, and renders the `{"errors": [...]}` shape, as a response or as raw bytes."""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest

from wharf_shared.errors import http

EXPECTED = {
    http.BadRequest: ("BAD_REQUEST", 400),
    http.NotFound: ("NOT_FOUND", 404),
    http.MethodNotAllowed: ("METHOD_NOT_ALLOWED", 405),
    http.RequestTimeout: ("REQUEST_TIMEOUT", 408),
    http.URITooLong: ("URI_TOO_LONG", 414),
    http.TooManyRequests: ("TOOMANYREQUESTS", 429),
    http.HeadersTooLarge: ("HEADERS_TOO_LARGE", 431),
    http.Unknown: ("UNKNOWN", 500),
    http.BadGateway: ("BAD_GATEWAY", 502),
    http.Unavailable: ("UNAVAILABLE", 503),
    http.GatewayTimeout: ("GATEWAY_TIMEOUT", 504),
}


def test_all_lists_every_class() -> None:
    assert set(http.ALL) == set(EXPECTED)
    assert len({cls.code for cls in http.ALL}) == len(http.ALL)


@pytest.mark.parametrize("cls", http.ALL, ids=lambda cls: cls.__name__)
def test_code_status_and_message(cls: type[http.HTTPError]) -> None:
    assert (cls.code, cls.status) == EXPECTED[cls]
    assert cls.message
    HTTPStatus(cls.status)  # a real status, with a reason phrase for raw answers


@pytest.mark.parametrize("cls", http.ALL, ids=lambda cls: cls.__name__)
def test_renderings_agree(cls: type[http.HTTPError]) -> None:
    error = cls({"request_id": "r1"}, headers={"Retry-After": "5"})
    expected = {"errors": [{"code": cls.code, "message": cls.message, "detail": {"request_id": "r1"}}]}
    response = error.response()
    assert response.status == cls.status
    assert response.content_type == "application/json"
    assert response.headers["Server"] == "Wharf"
    assert response.headers["Retry-After"] == "5"
    assert json.loads(error.body()) == expected
    head, _, body = error.raw().partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == f"HTTP/1.1 {cls.status} {HTTPStatus(cls.status).phrase}"
    assert {"Server: Wharf", "Connection: close", f"Content-Length: {len(body)}", "Retry-After: 5"} <= set(
        lines
    )
    assert json.loads(body) == expected
