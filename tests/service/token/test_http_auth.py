"""`http_auth` through the token service: the OA stand-in (a real HTTP server) checks passwords;
the first login provisions the local user with the attributes the OA answers; an OA that is
down, slow, broken or confused refuses (401, never a 500 and never a way in) while the local
admin still signs in; every login names its backend in the event for the audit log."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.service.token.conftest import ADMIN_PASSWORD, Suite, basic, start_suite
from tests.service.token.test_login_events import stream_events
from tests.service.token.test_metrics import counted
from tests.support.oa import Oa, OaUser
from tests.support.tls import self_signed
from wharf_jobservice.writer import AuditWriter
from wharf_shared.db import groups
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database

SCOPE = {"service": "wharf-registry", "scope": "repository:library/app:pull"}
LOGIN = {"service": "wharf-registry"}  # no scope: `docker login`
ALICE = OaUser(
    "Alice-oa-1",
    {"user": {"name": "alice", "mail": "alice@corp.test", "display": "Alice Doe"}, "groups": ["dev", "ops"]},
)
MAPPING = {
    "http_authproxy_username_field": "user.name",
    "http_authproxy_email_field": "user.mail",
    "http_authproxy_realname_field": "user.display",
    "http_authproxy_groups_field": "groups",
}


@pytest.fixture
def db_kind() -> str:
    return "postgresql"  # provisioning's SQL is tested on every backend in test_provisioning


@pytest.fixture
async def oa() -> AsyncIterator[Oa]:
    stand_in = Oa(users={"alice": ALICE})
    await stand_in.start()
    yield stand_in
    await stand_in.stop()


async def http_suite(aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str, oa: Oa) -> Suite:
    suite = await start_suite(aiohttp_client, tmp_path, database_url, redis_url)
    await suite.set_runtime(
        auth_mode="http_auth", http_authproxy_endpoint=oa.url, http_authproxy_timeout=1, **MAPPING
    )
    return suite


@pytest.fixture
async def suite(aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str, oa: Oa) -> Suite:
    return await http_suite(aiohttp_client, tmp_path, database_url, redis_url, oa)


async def login(suite: Suite, username: str, password: str) -> tuple[int, Any]:
    resp = await suite.token.get("/service/token", params=LOGIN, headers=basic(username, password))
    return resp.status, await resp.json()


async def test_first_login_provisions_the_user_with_the_oa_attributes(suite: Suite, oa: Oa) -> None:
    assert await suite.find_user("alice") is None
    status, body = await login(suite, "alice", "Alice-oa-1")
    assert status == 200, body
    user = await suite.find_user("alice")
    assert user is not None
    assert (user.email, user.realname, user.password_hash, user.sysadmin) == (
        "alice@corp.test",
        "Alice Doe",
        None,
        False,
    )
    # The OA got the credentials both ways: a JSON body and a Basic header.
    assert oa.requests == [("alice", True)]
    # Remembered: the next login asks the OA nothing (the credential cache, as for local users).
    assert (await login(suite, "alice", "Alice-oa-1"))[0] == 200
    assert len(oa.requests) == 1


async def uncached_suite(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str, oa: Oa
) -> Suite:
    suite = await start_suite(
        aiohttp_client, tmp_path, database_url, redis_url, token={"credential_cache_seconds": 0}
    )
    await suite.set_runtime(auth_mode="http_auth", http_authproxy_endpoint=oa.url, **MAPPING)
    return suite


async def test_each_cold_login_refreshes_the_record_and_keeps_the_id(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str, oa: Oa
) -> None:
    suite = await uncached_suite(aiohttp_client, tmp_path, database_url, redis_url, oa)
    assert (await login(suite, "alice", "Alice-oa-1"))[0] == 200
    first = await suite.find_user("alice")
    record = {**ALICE.record, "user": {**ALICE.record["user"], "display": "A. D."}}
    oa.users["alice"] = OaUser("Alice-oa-1", record)
    assert (await login(suite, "alice", "Alice-oa-1"))[0] == 200
    user = await suite.find_user("alice")
    assert first is not None
    assert user is not None
    assert (user.id, user.realname) == (first.id, "A. D.")
    assert len(oa.requests) == 2


async def test_wrong_password_and_unknown_user_are_refused_alike(suite: Suite) -> None:
    wrong = await login(suite, "alice", "nope")
    unknown = await login(suite, "mallory", "nope")
    assert wrong[0] == unknown[0] == 401
    assert wrong[1] == unknown[1]
    assert await suite.find_user("mallory") is None


@pytest.mark.parametrize("failure", ["down", "slow", "500", "not json", "someone else"])
async def test_a_failing_oa_refuses_and_the_local_admin_still_signs_in(
    suite: Suite, oa: Oa, failure: str
) -> None:
    if failure == "down":
        await oa.stop()
    elif failure == "slow":
        oa.delay = 5  # the timeout is 1 s
    elif failure == "500":
        oa.status = 500
    elif failure == "not json":
        oa.garbage = True
    else:  # the OA vouches for another account: never taken as alice
        oa.users["alice"] = OaUser("Alice-oa-1", {"user": {"name": "root"}})
    started = time.monotonic()
    status, body = await login(suite, "alice", "Alice-oa-1")
    assert status == 401, body
    assert time.monotonic() - started < 4  # the timeout, not the OA's delay
    assert await suite.find_user("alice") is None
    # A directory outage does not lock ops out.
    assert (await login(suite, "admin", ADMIN_PASSWORD))[0] == 200


async def test_admin_by_username_and_by_group(suite: Suite) -> None:
    await suite.set_runtime(http_authproxy_admin_usernames="bob, alice")
    assert (await login(suite, "alice", "Alice-oa-1"))[0] == 200
    user = await suite.find_user("alice")
    assert user is not None
    assert user.sysadmin is True


async def test_admin_by_group(suite: Suite) -> None:
    await suite.set_runtime(http_authproxy_admin_groups="ops")
    assert (await login(suite, "alice", "Alice-oa-1"))[0] == 200
    user = await suite.find_user("alice")
    assert user is not None
    assert user.sysadmin is True


async def test_a_local_account_is_never_taken_over_by_the_oa(suite: Suite, oa: Oa) -> None:
    await suite.add_user("carol", "Carol-local-1")
    oa.users["carol"] = OaUser("Carol-oa-1", {"user": {"name": "carol"}})
    assert (await login(suite, "carol", "Carol-oa-1"))[0] == 401  # checked here, not at the OA
    assert (await login(suite, "carol", "Carol-local-1"))[0] == 200
    assert oa.requests == []


async def test_an_email_another_user_holds_refuses_cleanly(suite: Suite, oa: Oa) -> None:
    oa.users["dave"] = OaUser("Dave-oa-1", {"user": {"name": "dave", "mail": "alice@corp.test"}})
    assert (await login(suite, "alice", "Alice-oa-1"))[0] == 200
    assert (await login(suite, "dave", "Dave-oa-1"))[0] == 401
    assert await suite.find_user("dave") is None


async def test_a_directory_user_is_refused_under_db_auth(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str, oa: Oa
) -> None:
    suite = await uncached_suite(aiohttp_client, tmp_path, database_url, redis_url, oa)
    assert (await login(suite, "alice", "Alice-oa-1"))[0] == 200
    await suite.set_runtime(auth_mode="db_auth")  # (the API allows it only while admin is alone)
    assert (await login(suite, "alice", "Alice-oa-1"))[0] == 401  # no password here
    assert len(oa.requests) == 1


@pytest.mark.parametrize("mode", ["ldap_auth", "oidc_auth", "cas_auth"])
async def test_a_mode_without_a_backend_refuses_all_but_local_users(suite: Suite, mode: str) -> None:
    await suite.set_runtime(auth_mode=mode)
    assert (await login(suite, "alice", "Alice-oa-1"))[0] == 401
    assert (await login(suite, "admin", ADMIN_PASSWORD))[0] == 200


async def test_logins_name_their_backend(suite: Suite) -> None:
    assert (await login(suite, "alice", "Alice-oa-1"))[0] == 200
    assert (await login(suite, "admin", ADMIN_PASSWORD))[0] == 200
    assert (await login(suite, "alice", "Alice-oa-1"))[0] == 200  # remembered: still http_auth
    deadline = asyncio.get_running_loop().time() + 10
    while len(logins := [e for e in await stream_events(suite) if e["type"] == "login"]) < 3:
        assert asyncio.get_running_loop().time() < deadline, logins
        await asyncio.sleep(0.05)
    assert [(e["data"]["operator"], e["data"]["backend"]) for e in logins] == [
        ("alice", "http_auth"),
        ("admin", "db_auth"),
        ("alice", "http_auth"),
    ]
    # The job service's writer records them with the backend as Harbor's operation_description.
    db = Database(suite.settings.effective_database_url, pool_size=1)
    try:
        await AuditWriter(db).apply(logins)
        async with db.read() as conn:
            query = sa.select(
                t.audit_log.c.username, t.audit_log.c.operation, t.audit_log.c.operation_description
            )
            rows = [tuple(row) for row in await conn.execute(query.order_by(t.audit_log.c.id))]
    finally:
        await db.close()
    assert rows == [
        ("alice", "login", "http_auth"),
        ("admin", "login", "db_auth"),
        ("alice", "login", "http_auth"),
    ]
    assert await login(suite, "alice", "wrong") == await login(suite, "nobody", "wrong")
    # The metrics count each by the backend that decided.
    assert counted(suite, "logins", result="success", backend="http_auth") == 2
    assert counted(suite, "logins", result="success", backend="db_auth") == 1
    assert counted(suite, "logins", result="failure", backend="http_auth") == 2


async def test_refresh_tokens_only_for_passwords_checked_here(suite: Suite) -> None:
    """A directory user's password changes where Wharf cannot see: no refresh token outlives it."""
    form = {"grant_type": "password", "service": "wharf-registry", "access_type": "offline"}
    alice = await suite.token.post(
        "/service/token", data={**form, "username": "alice", "password": "Alice-oa-1"}
    )
    assert alice.status == 200, await alice.text()
    assert "refresh_token" not in await alice.json()
    admin = await suite.token.post(
        "/service/token", data={**form, "username": "admin", "password": ADMIN_PASSWORD}
    )
    assert admin.status == 200
    assert "refresh_token" in await admin.json()


@pytest.mark.parametrize(
    ("settings", "signs_in"),
    [
        ({"http_authproxy_server_certificate": "ca"}, True),  # the endpoint's CA given
        ({}, False),  # verified against the system's CAs: a self-signed endpoint is refused
        ({"http_authproxy_verify_cert": False}, True),
        ({"http_authproxy_server_certificate": "other"}, False),  # another CA
    ],
)
async def test_an_https_endpoint_is_verified_as_configured(
    suite: Suite, tmp_path: Path, settings: dict[str, Any], signs_in: bool
) -> None:
    cert, key = self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    other, _ = self_signed(tmp_path / "other")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    endpoint = Oa(users={"alice": ALICE})
    await endpoint.start(tls)
    try:
        pem = {"ca": cert.read_text(), "other": other.read_text()}
        given = {k: pem.get(v, v) if isinstance(v, str) else v for k, v in settings.items()}
        await suite.set_runtime(http_authproxy_endpoint=endpoint.url, **given)
        assert endpoint.url.startswith("https://")
        status, body = await login(suite, "alice", "Alice-oa-1")
        assert status == (200 if signs_in else 401), body
    finally:
        await endpoint.stop()


async def test_the_groups_field_makes_the_http_group_memberships(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str, oa: Oa
) -> None:
    suite = await uncached_suite(aiohttp_client, tmp_path, database_url, redis_url, oa)

    async def memberships() -> list[tuple[int, str]]:
        user = await suite.find_user("alice")
        assert user is not None
        db = Database(suite.settings.effective_database_url, pool_size=1)
        try:
            async with db.read() as conn:
                return [(int(g.group_type), g.group_name) for g in await groups.groups_of(conn, user.id)]
        finally:
            await db.close()

    assert (await login(suite, "alice", "Alice-oa-1"))[0] == 200
    assert await memberships() == [(2, "dev"), (2, "ops")]
    oa.users["alice"] = OaUser("Alice-oa-1", {**ALICE.record, "groups": ["ops"]})
    assert (await login(suite, "alice", "Alice-oa-1"))[0] == 200
    assert await memberships() == [(2, "ops")]
    # Without a groups field, the answer says nothing of groups: memberships are left alone.
    await suite.set_runtime(http_authproxy_groups_field="")
    assert (await login(suite, "alice", "Alice-oa-1"))[0] == 200
    assert await memberships() == [(2, "ops")]
