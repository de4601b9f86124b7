"""The ui's conventions on requests made up in memory: Link headers, Location, empty 200s,
timestamps, twice-encoded names, Harbor's error table, the password policy."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from aiohttp.test_utils import make_mocked_request

from wharf_shared.errors import harbor
from wharf_shared.passwords import meets_policy
from wharf_ui.pages import page_headers
from wharf_ui.paths import decoded_name, path_id
from wharf_ui.query import Page
from wharf_ui.responses import created, empty_ok, timestamp


def test_links_repeat_every_parameter_and_stop_at_the_ends() -> None:
    request = make_mocked_request("GET", "/api/v2.0/users?q=name%3D~a&page=2&page_size=10&sort=-name")
    headers = page_headers(request, 35, Page(2, 10))
    assert headers["X-Total-Count"] == "35"
    assert headers["Link"] == (
        '</api/v2.0/users?q=name%3D~a&page_size=10&sort=-name&page=1>; rel="prev" , '
        '</api/v2.0/users?q=name%3D~a&page_size=10&sort=-name&page=3>; rel="next"'
    )
    last = page_headers(make_mocked_request("GET", "/api/v2.0/users?page=4"), 35, Page(4, 10))
    assert last["Link"] == '</api/v2.0/users?page=3>; rel="prev"'
    only = page_headers(make_mocked_request("GET", "/api/v2.0/users"), 3, Page(1, 10))
    assert "Link" not in only
    beyond = page_headers(make_mocked_request("GET", "/api/v2.0/users?page=9"), 35, Page(9, 10))
    assert beyond["Link"] == '</api/v2.0/users?page=4>; rel="prev"'
    # Spaces, braces and quotes from q are encoded: the URL ends only at ">".
    spaced = make_mocked_request("GET", "/api/v2.0/users?q=name%3D%7Ba%20'b%20c'%7D")
    assert page_headers(spaced, 35, Page(1, 10))["Link"] == (
        '</api/v2.0/users?q=name%3D%7Ba%20%27b%20c%27%7D&page=2>; rel="next"'
    )


def test_location_by_id_or_by_name() -> None:
    plain = created(make_mocked_request("POST", "/api/v2.0/users"), "/api/v2.0/users", 7, "bob")
    assert (plain.status, plain.headers["Location"]) == (201, "/api/v2.0/users/7")
    request = make_mocked_request("POST", "/x", headers={"X-Resource-Name-In-Location": "true"})
    assert created(request, "/api/v2.0/projects/", 7, "team").headers["Location"] == "/api/v2.0/projects/team"


def test_empty_ok_is_not_json() -> None:
    response = empty_ok()
    assert response.status == 200
    assert response.body is None
    assert response.content_type != "application/json"


def test_timestamps_are_rfc3339_or_none() -> None:
    moment = dt.datetime(2026, 12, 4, 18, 45, 8, 123456, tzinfo=dt.UTC)
    assert timestamp(moment) == "2026-12-04T18:45:08.123Z"
    assert timestamp(None) is None


def test_names_encoded_twice_are_decoded() -> None:
    request = make_mocked_request("GET", "/x", match_info={"name": "team%2Fapp"})
    assert decoded_name(request, "name") == "team/app"
    for raw in ("%00", "", "%ff"):
        with pytest.raises(harbor.BadRequest):
            decoded_name(make_mocked_request("GET", "/x", match_info={"name": raw}), "name")


def test_path_ids() -> None:
    assert path_id(make_mocked_request("GET", "/x", match_info={"id": "12"}), "id") == 12
    for raw in ("0", "-1", "1e3", "\u0661", str(2**63)):
        with pytest.raises(harbor.BadRequest):
            path_id(make_mocked_request("GET", "/x", match_info={"id": raw}), "id")


# Harbor's codes and the status each carries (goharbor/harbor src/server/error/error.go).
EXPECTED = {
    harbor.BadRequest: ("BAD_REQUEST", 400),
    harbor.Unauthorized: ("UNAUTHORIZED", 401),
    harbor.Forbidden: ("FORBIDDEN", 403),
    harbor.Denied: ("DENIED", 403),
    harbor.NotFound: ("NOT_FOUND", 404),
    harbor.MethodNotAllowed: ("METHOD_NOT_ALLOWED", 405),
    harbor.Conflict: ("CONFLICT", 409),
    harbor.PreconditionFailed: ("PRECONDITION", 412),
    harbor.ForeignKeyViolation: ("VIOLATE_FOREIGN_KEY_CONSTRAINT", 412),
    harbor.PayloadTooLarge: ("BAD_REQUEST", 413),
    harbor.TooManyRequests: ("TOO_MANY_REQUEST", 429),
    harbor.Unknown: ("UNKNOWN", 500),
    harbor.Unavailable: ("UNAVAILABLE", 503),
}


def test_every_harbor_error_has_its_code_and_status() -> None:
    assert set(harbor.ALL) == set(EXPECTED)
    for cls, (code, status) in EXPECTED.items():
        error = cls(message="why")
        assert (error.code, error.status) == (code, status)
        assert json.loads(error.body()) == {"errors": [{"code": code, "message": "why"}]}


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("Abcdefg1", True),
        ("Abcdef1", False),
        ("abcdefg1", False),
        ("ABCDEFG1", False),
        ("Abcdefgh", False),
        ("A1" + "b" * 126, True),
        ("A1" + "b" * 127, False),
    ],
)
def test_password_policy(password: str, ok: bool) -> None:
    assert meets_policy(password) is ok
