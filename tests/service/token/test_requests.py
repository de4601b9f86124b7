"""Every way a token request can be wrong, each answered with its precise error and never a 500:
GET in the Docker token spec's words (an OCI error body), POST in RFC 6749 §5.2's
(`error`, `error_description`) beside the same `errors` list. No answer of the token endpoint,
success or error, may be stored by a cache (RFC 6749 §5.1).
"""

from __future__ import annotations

import io
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import ClientResponse

from tests.service.token.conftest import ADMIN_PASSWORD, Suite, basic, start_suite

FORM = "application/x-www-form-urlencoded"
SERVICE = "wharf-registry"
PASSWORD_GRANT = f"grant_type=password&username=admin&password={ADMIN_PASSWORD}&service={SERVICE}"


def scopes(n: int) -> str:
    return " ".join(f"repository:library/app{i}:pull" for i in range(n))


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    status: int
    code: str  # errors[0].code
    message: str  # within errors[0].message
    oauth: str | None = None  # POST: RFC 6749's error
    body: bytes | None = None
    content_type: str | None = FORM
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False


POST_CASES = [
    Case(
        "not-utf8",
        "POST",
        400,
        "UNSUPPORTED",
        "not valid UTF-8",
        "invalid_request",
        b"\xff\xfe=\xff&grant_type=password",
    ),
    Case(
        "percent-not-utf8",
        "POST",
        400,
        "UNSUPPORTED",
        "not valid UTF-8",
        "invalid_request",
        b"grant_type=password&username=%ff",
    ),
    Case(
        "empty-multipart",
        "POST",
        400,
        "UNSUPPORTED",
        f"must be {FORM}",
        "invalid_request",
        b"",
        "multipart/form-data; boundary=x",
    ),
    Case(
        "multipart",
        "POST",
        400,
        "UNSUPPORTED",
        f"must be {FORM}",
        "invalid_request",
        b'--x\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\npassword\r\n--x--\r\n',
        "multipart/form-data; boundary=x",
    ),
    Case(
        "json",
        "POST",
        400,
        "UNSUPPORTED",
        f"must be {FORM}",
        "invalid_request",
        b'{"grant_type": "password"}',
        "application/json",
    ),
    Case(
        "no-content-type",
        "POST",
        400,
        "UNSUPPORTED",
        f"must be {FORM}",
        "invalid_request",
        PASSWORD_GRANT.encode(),
        None,
    ),
    Case(
        "latin-1",
        "POST",
        400,
        "UNSUPPORTED",
        "must be UTF-8",
        "invalid_request",
        b"grant_type=password",
        FORM + "; charset=latin-1",
    ),
    Case("huge", "POST", 400, "UNSUPPORTED", "exceeds", "invalid_request", b"x=" + b"y" * 1024 * 1024),
    Case(
        "huge-chunked",
        "POST",
        400,
        "UNSUPPORTED",
        "exceeds",
        "invalid_request",
        b"x=" + b"y" * 1024 * 1024,
        chunked=True,
    ),
    Case(
        "too-many-fields",
        "POST",
        400,
        "UNSUPPORTED",
        "malformed form",
        "invalid_request",
        b"&".join([b"x=1"] * 33),
    ),
    Case(
        "field-without-value",
        "POST",
        400,
        "UNSUPPORTED",
        "malformed form",
        "invalid_request",
        b"grant_type&username=admin",
    ),
    Case("empty", "POST", 400, "UNSUPPORTED", "'grant_type' is required", "invalid_request", b""),
    Case(
        "no-username",
        "POST",
        400,
        "UNSUPPORTED",
        "'username' is required",
        "invalid_request",
        b"grant_type=password&password=x",
    ),
    Case(
        "empty-username",
        "POST",
        400,
        "UNSUPPORTED",
        "'username' is required",
        "invalid_request",
        b"grant_type=password&username=&password=x",
    ),
    Case(
        "no-password",
        "POST",
        400,
        "UNSUPPORTED",
        "'password' is required",
        "invalid_request",
        b"grant_type=password&username=admin",
    ),
    Case(
        "no-refresh-token",
        "POST",
        400,
        "UNSUPPORTED",
        "'refresh_token' is required",
        "invalid_request",
        b"grant_type=refresh_token",
    ),
    Case(
        "repeated-grant-type",
        "POST",
        400,
        "UNSUPPORTED",
        "'grant_type' is repeated",
        "invalid_request",
        (PASSWORD_GRANT + "&grant_type=password").encode(),
    ),
    Case(
        "repeated-scope",
        "POST",
        400,
        "UNSUPPORTED",
        "'scope' is repeated",
        "invalid_request",
        (PASSWORD_GRANT + "&scope=repository:a/b:pull&scope=repository:a/c:pull").encode(),
    ),
    Case(
        "grant-type",
        "POST",
        400,
        "UNSUPPORTED",
        "unsupported grant_type",
        "unsupported_grant_type",
        b"grant_type=client_credentials",
    ),
    Case(
        "service",
        "POST",
        400,
        "UNSUPPORTED",
        "unknown service",
        "invalid_request",
        b"grant_type=password&username=a&password=b&service=other",
    ),
    Case(
        "malformed-scope",
        "POST",
        400,
        "UNSUPPORTED",
        "malformed scope",
        "invalid_scope",
        (PASSWORD_GRANT + "&scope=repository").encode(),
    ),
    Case(
        "too-many-scopes",
        "POST",
        400,
        "UNSUPPORTED",
        "at most 64",
        "invalid_scope",
        (PASSWORD_GRANT + "&scope=" + scopes(65)).encode(),
    ),
    Case(
        "long-scope-name",
        "POST",
        400,
        "UNSUPPORTED",
        "longer than 255",
        "invalid_scope",
        (PASSWORD_GRANT + "&scope=repository:" + "a" * 256 + ":pull").encode(),
    ),
    Case(
        "wrong-password",
        "POST",
        400,
        "UNAUTHORIZED",
        "incorrect username or password",
        "invalid_grant",
        b"grant_type=password&username=admin&password=wrong",
    ),
    Case(
        "nul-username",
        "POST",
        400,
        "UNAUTHORIZED",
        "incorrect username or password",
        "invalid_grant",
        b"grant_type=password&username=ad%00min&password=x",
    ),
    Case(
        "refresh-token",
        "POST",
        400,
        "UNAUTHORIZED",
        "the refresh token is not valid",
        "invalid_grant",
        b"grant_type=refresh_token&refresh_token=a.b.c",
    ),
]
GET_CASES = [
    Case(
        "basic",
        "GET",
        400,
        "UNSUPPORTED",
        "malformed Basic credentials",
        headers={"Authorization": "Basic !!!"},
    ),
    Case(
        "basic-not-utf8",
        "GET",
        400,
        "UNSUPPORTED",
        "malformed Basic credentials",
        headers={"Authorization": "Basic //79Og=="},
    ),
    Case(
        "service",
        "GET",
        400,
        "UNSUPPORTED",
        "unknown service",
        params=[("service", "other"), ("scope", "repository:a/b:pull")],
    ),
    Case("malformed-scope", "GET", 400, "UNSUPPORTED", "malformed scope", params=[("scope", "repository:a")]),
    Case(
        "too-many-scopes",
        "GET",
        400,
        "UNSUPPORTED",
        "at most 64",
        params=[("scope", s) for s in scopes(65).split()],
    ),
    Case(
        "long-scope-name",
        "GET",
        400,
        "UNSUPPORTED",
        "longer than 255",
        params=[("scope", "repository:" + "a" * 256 + ":pull")],
    ),
    Case(
        "no-credentials-no-scope",
        "GET",
        401,
        "UNAUTHORIZED",
        "authentication required",
        params=[("service", SERVICE)],
    ),
    Case(
        "wrong-password",
        "GET",
        401,
        "UNAUTHORIZED",
        "incorrect username or password",
        headers=basic("admin", "wrong"),
    ),
    Case(
        "nul-username",
        "GET",
        401,
        "UNAUTHORIZED",
        "incorrect username or password",
        headers=basic("ad\0min", "x"),
    ),
]


@pytest.fixture
def db_kind() -> str:
    return "postgresql"  # what is refused does not depend on the database; odd names are tried on all below


async def send(suite: Suite, case: Case) -> ClientResponse:
    headers = dict(case.headers)
    if case.method == "GET":
        return await suite.token.get("/service/token", params=case.params, headers=headers)
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    data: Any = io.BytesIO(case.body or b"")  # bytes over 1 MiB make aiohttp warn
    if case.chunked:

        async def stream() -> AsyncIterator[bytes]:
            assert case.body is not None
            for i in range(0, len(case.body), 64 * 1024):
                yield case.body[i : i + 64 * 1024]

        data = stream()
    return await suite.token.post("/service/token", data=data, headers=headers)


def assert_no_store(resp: ClientResponse) -> None:
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Pragma"] == "no-cache"


@pytest.mark.parametrize("case", POST_CASES + GET_CASES, ids=lambda c: f"{c.method}-{c.id}")
async def test_refusals(suite: Suite, case: Case) -> None:
    resp = await send(suite, case)
    text = await resp.text()
    assert resp.status == case.status, text
    body = await resp.json()
    error = body["errors"][0]
    assert error["code"] == case.code
    assert case.message in error["message"]
    assert_no_store(resp)
    if case.method == "POST":
        assert body["error"] == case.oauth
        assert body["error_description"] == error["message"]
    else:
        assert "error" not in body
        if case.status == 401:
            assert resp.headers["WWW-Authenticate"] == 'Basic realm="wharf"'
    for words in ("Signature", "segments", "Invalid", "Traceback"):  # the libraries' words
        assert words not in text


@pytest.mark.parametrize("db_kind", ["postgresql", "mysql", "sqlite"])
@pytest.mark.parametrize("username", ["ad\0min", "a" * 256, "ädmin", "admin😀", " admin"])
async def test_names_no_user_can_have_fail_like_any_unknown_user(suite: Suite, username: str) -> None:
    resp = await suite.token.get(
        "/service/token", params={"scope": "repository:library/app:pull"}, headers=basic(username, "x")
    )
    assert resp.status == 401, await resp.text()
    form = {"grant_type": "password", "username": username, "password": "x"}
    resp = await suite.token.post("/service/token", data=form)
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"] == "invalid_grant"


async def test_answers_that_grant_are_not_stored_either(suite: Suite) -> None:
    resp = await suite.token.get(
        "/service/token",
        params={"scope": "repository:library/app:pull"},
        headers=basic("admin", ADMIN_PASSWORD),
    )
    assert resp.status == 200
    assert_no_store(resp)
    resp = await suite.token.get("/service/token", params={"scope": "repository:library/app:pull"})
    assert resp.status == 200
    assert_no_store(resp)
    form = {
        "grant_type": "password",
        "username": "admin",
        "password": ADMIN_PASSWORD,
        "access_type": "offline",
    }
    resp = await suite.token.post("/service/token", data=form)
    assert resp.status == 200
    assert_no_store(resp)
    form = {"grant_type": "refresh_token", "refresh_token": (await resp.json())["refresh_token"]}
    resp = await suite.token.post("/service/token", data=form)
    assert resp.status == 200
    assert_no_store(resp)


async def test_as_many_scopes_as_allowed(suite: Suite) -> None:
    form = {"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD, "scope": scopes(64)}
    resp = await suite.token.post("/service/token", data=form)
    assert resp.status == 200, await resp.text()
    claims = jwt.decode((await resp.json())["access_token"], options={"verify_signature": False})
    assert len(claims["access"]) == 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_redis_down_is_a_503_in_both_protocols(
    aiohttp_client: Any, tmp_path: Path, database_url: str
) -> None:
    suite = await start_suite(aiohttp_client, tmp_path, database_url, f"redis://127.0.0.1:{free_port()}/0")
    resp = await suite.token.get("/service/token", headers=basic("admin", ADMIN_PASSWORD))
    assert resp.status == 503
    assert (await resp.json())["errors"][0]["code"] == "UNAVAILABLE"
    assert resp.headers["Retry-After"]
    assert_no_store(resp)
    form = {"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD}
    resp = await suite.token.post("/service/token", data=form)
    assert resp.status == 503
    body = await resp.json()
    assert body["error"] == "temporarily_unavailable"
    assert body["errors"][0]["code"] == "UNAVAILABLE"
    assert resp.headers["Retry-After"]
    assert_no_store(resp)
