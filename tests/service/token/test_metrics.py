"""The token service counts what happens to sign-ins: by result and backend, the tokens it
issues by grant, and the requests a lockout refused, by what was locked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.service.token.conftest import ADMIN_PASSWORD, Suite, basic, start_suite
from tests.support.processes import free_port
from wharf_shared.keys import METRICS

SCOPE = {"service": "wharf-registry", "scope": "repository:library/app:pull"}
GUESSER, OWNER = "203.0.113.9", "198.51.100.7"


@pytest.fixture
def db_kind() -> str:
    return "postgresql"  # what is counted does not depend on the database


def counted(suite: Suite, name: str, **labels: str) -> float:
    value = suite.token.app[METRICS].registry.get_sample_value(f"wharf_token_{name}_total", labels)
    return float(value or 0.0)


async def sign_in(suite: Suite, password: str, address: str) -> int:
    headers = {**basic("admin", password), "X-Forwarded-For": address}
    return (await suite.token.get("/service/token", params=SCOPE, headers=headers)).status


async def test_sign_ins_tokens_and_lockouts_are_counted(suite: Suite) -> None:
    assert await sign_in(suite, ADMIN_PASSWORD, OWNER) == 200
    assert await sign_in(suite, ADMIN_PASSWORD, OWNER) == 200  # remembered: still a sign-in
    for _ in range(5):
        assert await sign_in(suite, "guess", GUESSER) == 401
    assert await sign_in(suite, ADMIN_PASSWORD, GUESSER) == 429  # that account, from there
    assert (await suite.token.get("/service/token", params=SCOPE)).status == 200  # anonymous
    form = {
        "grant_type": "password",
        "username": "admin",
        "password": ADMIN_PASSWORD,
        "access_type": "offline",
    }
    resp = await suite.token.post("/service/token", data={**form, **SCOPE})
    refresh_token = (await resp.json())["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, **SCOPE}
    assert (await suite.token.post("/service/token", data=form)).status == 200
    form["refresh_token"] = refresh_token[:-4] + "AAAA"
    assert (await suite.token.post("/service/token", data=form)).status == 400  # invalid_grant

    assert counted(suite, "logins", result="success", backend="db_auth") == 3
    assert counted(suite, "logins", result="failure", backend="db_auth") == 5
    assert counted(suite, "logins", result="throttled", backend="db_auth") == 1
    assert counted(suite, "logins", result="success", backend="refresh_token") == 1
    assert counted(suite, "logins", result="failure", backend="refresh_token") == 1
    assert counted(suite, "throttled_requests", lock="account") == 1
    assert counted(suite, "tokens_issued", grant="password") == 3
    assert counted(suite, "tokens_issued", grant="anonymous") == 1
    assert counted(suite, "tokens_issued", grant="refresh_token") == 1
    # The rest of the guesser's address is locked once it misses on other accounts too.
    for i in range(15):
        headers = {**basic(f"nobody{i}", "guess"), "X-Forwarded-For": GUESSER}
        assert (await suite.token.get("/service/token", params=SCOPE, headers=headers)).status == 401
    assert await sign_in(suite, ADMIN_PASSWORD, GUESSER) == 429
    assert counted(suite, "throttled_requests", lock="address") == 1


async def test_a_sign_in_that_redis_fails_is_an_error(
    aiohttp_client: Any, tmp_path: Path, database_url: str
) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    suite = await start_suite(aiohttp_client, tmp_path, database_url, dead_redis)
    headers = {**basic("admin", ADMIN_PASSWORD), "X-Forwarded-For": OWNER}
    assert (await suite.token.get("/service/token", params=SCOPE, headers=headers)).status == 503
    assert counted(suite, "logins", result="error", backend="db_auth") == 1
    assert counted(suite, "logins", result="failure", backend="db_auth") == 0
    assert suite.token.app[METRICS].registry.get_sample_value("wharf_token_redis_errors_total") == 1
