"""Failed logins, through the token service's HTTP surface: a guesser locks out only their own
address (for that account, then for every account), the owner elsewhere keeps signing in, the
lockout grows and ends on the service's clock, and no answer tells an unknown user from a wrong
password.

Client addresses come in `X-Forwarded-For` from the test client's peer (127.0.0.1, a trusted
proxy by default), as they would through Wharf's proxy.

Every test runs under each auth mode: db_auth, http_auth (the OA stand-in checks the passwords
of everyone but the local admin) and ldap_auth (a slapd of the test's own does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.service.token.conftest import (
    ADMIN_PASSWORD,
    AUTH_MODES,
    Suite,
    basic,
    directory_for,
    start_mode_suite,
)
from tests.support.oa import Oa
from wharf_shared import passwords

SCOPE = {"service": "wharf-registry", "scope": "repository:library/app:pull"}
GUESSER, OWNER, OTHER = "203.0.113.9", "198.51.100.7", "192.0.2.33"


@pytest.fixture
def db_kind() -> str:
    return "postgresql"  # the rules live in Redis; one database is enough


@pytest.fixture(params=AUTH_MODES)
def auth_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def suite(
    request: pytest.FixtureRequest,
    auth_mode: str,
    aiohttp_client: Any,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    oa: Oa,
) -> Suite:
    directory = directory_for(auth_mode, request)
    return await start_mode_suite(auth_mode, aiohttp_client, tmp_path, database_url, redis_url, oa, directory)


async def get(suite: Suite, username: str, password: str, address: str) -> tuple[int, Any, dict[str, str]]:
    """Status, body and headers of a GET token request from `address` (the headers that differ
    on every answer left out)."""
    headers = {**basic(username, password), "X-Forwarded-For": address}
    resp = await suite.token.get("/service/token", params=SCOPE, headers=headers)
    kept = {k: v for k, v in resp.headers.items() if k.lower() not in ("date", "x-request-id")}
    return resp.status, await resp.json(), kept


async def post(suite: Suite, username: str, password: str, address: str) -> tuple[int, Any, dict[str, str]]:
    form = {"grant_type": "password", "username": username, "password": password, **SCOPE}
    resp = await suite.token.post("/service/token", data=form, headers={"X-Forwarded-For": address})
    kept = {k: v for k, v in resp.headers.items() if k.lower() not in ("date", "x-request-id")}
    return resp.status, await resp.json(), kept


async def status(suite: Suite, username: str, password: str, address: str) -> int:
    return (await get(suite, username, password, address))[0]


async def test_a_guesser_locks_out_only_their_own_address(suite: Suite) -> None:
    for _ in range(5):
        assert await status(suite, "admin", "guess", GUESSER) == 401
    # The guesser's address is locked out of admin, the right password included...
    locked, body, headers = await get(suite, "admin", ADMIN_PASSWORD, GUESSER)
    assert locked == 429
    assert body["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert 0 < int(headers["Retry-After"]) <= 30
    # ...while the owner, elsewhere, signs in as usual, and that does not unlock the guesser.
    assert await status(suite, "admin", ADMIN_PASSWORD, OWNER) == 200
    assert await status(suite, "admin", ADMIN_PASSWORD, GUESSER) == 429
    # Through POST too.
    assert (await post(suite, "admin", ADMIN_PASSWORD, OWNER))[0] == 200
    answer = await post(suite, "admin", ADMIN_PASSWORD, GUESSER)
    assert answer[0] == 429
    assert answer[1]["error"] == "temporarily_unavailable"
    assert "Retry-After" in answer[2]


async def test_an_address_trying_many_accounts_is_locked_out(
    request: pytest.FixtureRequest,
    auth_mode: str,
    aiohttp_client: Any,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    oa: Oa,
) -> None:
    suite = await start_mode_suite(
        auth_mode,
        aiohttp_client,
        tmp_path,
        database_url,
        redis_url,
        oa,
        directory_for(auth_mode, request),
        token={"throttle_address_failures": 3},
    )
    for i in range(3):
        assert await status(suite, f"user{i}", "guess", GUESSER) == 401
    # A fourth account from that address: refused before any check, whatever the account.
    assert await status(suite, "admin", ADMIN_PASSWORD, GUESSER) == 429
    assert await status(suite, "admin", ADMIN_PASSWORD, OWNER) == 200
    # Anonymous requests carry no credentials to guess with and are not throttled.
    resp = await suite.token.get("/service/token", params=SCOPE, headers={"X-Forwarded-For": GUESSER})
    assert resp.status == 200


async def test_the_lockout_grows_ends_and_a_success_starts_the_count_again(suite: Suite) -> None:
    for _ in range(5):
        assert await status(suite, "admin", "guess", GUESSER) == 401
    first = int((await get(suite, "admin", ADMIN_PASSWORD, GUESSER))[2]["Retry-After"])
    assert first == 30
    suite.clock.advance(first)
    # Over: one more miss locks again, for twice as long.
    assert await status(suite, "admin", "guess", GUESSER) == 401
    assert (await get(suite, "admin", ADMIN_PASSWORD, GUESSER))[2]["Retry-After"] == "60"
    suite.clock.advance(59)
    assert (await get(suite, "admin", ADMIN_PASSWORD, GUESSER))[2]["Retry-After"] == "1"
    suite.clock.advance(1)
    # A success clears this address's count for the account: four misses lock nothing.
    assert await status(suite, "admin", ADMIN_PASSWORD, GUESSER) == 200
    for _ in range(4):
        assert await status(suite, "admin", "guess", GUESSER) == 401
    assert await status(suite, "admin", ADMIN_PASSWORD, GUESSER) == 200


async def test_misses_count_within_a_window(suite: Suite) -> None:
    for _ in range(4):
        assert await status(suite, "admin", "guess", GUESSER) == 401
    suite.clock.advance(3600)  # the window is over: the next miss is the first of a new one
    for _ in range(4):
        assert await status(suite, "admin", "guess", GUESSER) == 401
    assert await status(suite, "admin", ADMIN_PASSWORD, GUESSER) == 200


async def test_unknown_user_and_wrong_password_read_alike(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same status, body and headers, and the same work (one password check each), whether the
        account exists or not; locked, the same again. Under http_auth (ldap_auth) the OA (the
    directory) is asked about each,
        and the dummy check runs beside it (no name answers faster than a local wrong password)."""
    checks: list[str | None] = []
    real = passwords.verify_password

    def counted(stored: str | None, password: str) -> bool:
        checks.append(stored)
        return real(stored, password)

    import wharf_shared.auth.backends
    import wharf_shared.auth.modes

    monkeypatch.setattr(wharf_shared.auth.backends, "verify_password", counted)
    monkeypatch.setattr(wharf_shared.auth.modes, "verify_password", counted)
    await suite.add_person("alice", "alice-password-1")
    for ask in (get, post):
        wrong_password = await ask(suite, "alice", "wrong", OTHER)
        unknown_user = await ask(suite, "nobody", "wrong", GUESSER)
        impossible_user = await ask(suite, "no\0body" + "x" * 300, "wrong", OWNER)
        assert wrong_password == unknown_user == impossible_user
    assert len(checks) == 6
    if suite.mode == "db_auth":
        assert checks[0] is not None  # alice's hash...
    elif suite.oa is not None:
        assert [username for username, _ in suite.oa.requests][:2] == ["alice", "nobody"]
    assert checks[1] is None  # ...then the dummy's
    for _ in range(4):
        await get(suite, "alice", "wrong", OTHER)
        await get(suite, "nobody", "wrong", GUESSER)
    assert await get(suite, "alice", "wrong", OTHER) == await get(suite, "nobody", "wrong", GUESSER)
    assert (await get(suite, "alice", "wrong", OTHER))[0] == 429
