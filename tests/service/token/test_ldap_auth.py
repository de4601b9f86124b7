"""`ldap_auth` end to end against a real slapd over LDAPS (its CA configured): the token service's
logins provision the directory's users with their groups and the admin flag; a group DN made a
project member through the API gives its role; the job service's group sync (asked for through
the API, run by the leader's code) takes a removed member's access away, and leaves a group
alone while the directory is down; a stopped directory refuses its users cleanly while the
local admin signs in; Harbor's `/ldap` endpoints."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.service.token.conftest import ADMIN_PASSWORD, Suite, basic, start_suite
from tests.support.slapd import USERS, Slapd, group_dn, running_slapd
from wharf_jobservice.ldap_sync import LdapGroupSync
from wharf_shared import runtime
from wharf_shared.auth.ldap_auth import LdapAuthBackend
from wharf_shared.db import groups
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.groups import GroupType
from wharf_shared.keys import RUNTIME
from wharf_shared.secrets import SecretBox
from wharf_ui.app import create_app as create_ui

LOGIN = {"service": "wharf-registry"}
ADMIN = basic("admin", ADMIN_PASSWORD)
ALICE, BOB, CAROL = USERS["alice"], USERS["bob"], USERS["carol"]
DEVELOPERS = group_dn("developers")


@pytest.fixture
def db_kind() -> str:
    return "postgresql"  # the SQL underneath (provisioning, groups) is tested on every backend elsewhere


@pytest.fixture(scope="module")
def shared_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """One directory for the tests that only read it."""
    with running_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture
def own_slapd(tmp_path: Path) -> Iterator[Slapd]:
    """A directory of the test's own, to change or stop."""
    with running_slapd(tmp_path / "slapd") as server:
        yield server


class Site:
    """The token service, the registry and the ui on one database, under ldap_auth."""

    def __init__(self, suite: Suite, ui: TestClient, slapd: Slapd) -> None:  # type: ignore[type-arg]
        self.suite = suite
        self.ui = ui
        self.slapd = slapd

    async def configure(self, **values: Any) -> None:
        await self.suite.set_runtime(**values)
        self.ui.app[RUNTIME].invalidate()

    async def login(self, username: str, password: str) -> int:
        resp = await self.suite.token.get("/service/token", params=LOGIN, headers=basic(username, password))
        await resp.read()
        return resp.status

    async def run(self, fn: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
        db = Database(self.suite.settings.effective_database_url, pool_size=1)
        try:
            async with db.transaction() as conn:
                return await fn(conn)
        finally:
            await db.close()

    async def group_dns(self, username: str) -> list[str]:
        async def go(conn: AsyncConnection) -> list[str]:
            user = await self.suite.find_user(username)
            assert user is not None
            # Compared as DNs are (a group may carry the spelling an admin typed).
            return sorted(groups.dn_key(str(g.ldap_group_dn)) for g in await groups.groups_of(conn, user.id))

        result: list[str] = await self.run(go)
        return result


def ldap_configuration(settings_key: bytes, slapd: Slapd, **extra: Any) -> dict[str, Any]:
    conf = slapd.configuration("ldaps")
    # Stored as the API stores it: encrypted with the secret key.
    conf["ldap_search_password"] = SecretBox(settings_key).encrypt(conf["ldap_search_password"])
    return {"auth_mode": "ldap_auth", **conf, "ldap_timeout": 2, **extra}


async def start_site(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str, slapd: Slapd
) -> Site:
    suite = await start_suite(aiohttp_client, tmp_path, database_url, redis_url)
    ui = await aiohttp_client(create_ui(suite.settings))
    site = Site(suite, ui, slapd)
    await site.configure(**ldap_configuration(suite.settings.secret_key_bytes(), slapd))
    return site


@pytest.fixture
async def site(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str, shared_slapd: Slapd
) -> Site:
    return await start_site(aiohttp_client, tmp_path, database_url, redis_url, shared_slapd)


@pytest.fixture
async def own_site(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str, own_slapd: Slapd
) -> Site:
    return await start_site(aiohttp_client, tmp_path, database_url, redis_url, own_slapd)


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
async def leader(site_for_sync: Site) -> AsyncIterator[tuple[LdapGroupSync, Clock]]:
    """The job service leader's group sync, on the site's database and Redis, its clock the test's."""
    settings = site_for_sync.suite.settings
    db = Database(settings.effective_database_url, pool_size=2)
    redis = Redis.from_url(settings.redis_url)
    config = runtime.RuntimeConfig(db, runtime.defaults(settings), cache_seconds=0)
    clock = Clock()
    sync = LdapGroupSync(
        db, redis, config.get, LdapAuthBackend(db, config.get, settings.secret_key_bytes()), now=clock
    )
    yield sync, clock
    await sync.stop()
    await redis.aclose()
    await db.close()


@pytest.fixture
def site_for_sync(own_site: Site) -> Site:
    return own_site


def actions(token: str) -> list[str]:
    claims = jwt.decode(token, options={"verify_signature": False})
    return sorted(action for entry in claims["access"] for action in entry["actions"])


# -- logins ----------------------------------------------------------------------------------------


async def test_first_login_provisions_the_user_with_groups_and_admin_flag(site: Site) -> None:
    assert await site.login("alice", ALICE.password) == 200
    alice = await site.suite.find_user("alice")
    assert alice is not None
    assert (alice.email, alice.realname, alice.password_hash, alice.sysadmin) == (
        ALICE.mail,
        ALICE.cn,
        None,
        True,  # a member of ldap_group_admin_dn
    )
    assert await site.group_dns("alice") == sorted([group_dn("admins"), DEVELOPERS])
    assert await site.login("bob", BOB.password) == 200
    bob = await site.suite.find_user("bob")
    assert bob is not None
    assert not bob.sysadmin
    assert await site.group_dns("bob") == [DEVELOPERS]
    # The audit log's logins name the backend.
    deadline = time.monotonic() + 10
    while len(logins := [e["data"] for e in await _events(site, "login")]) < 2:
        assert time.monotonic() < deadline, logins
        await asyncio.sleep(0.05)
    assert [(d["operator"], d["backend"]) for d in logins] == [("alice", "ldap_auth"), ("bob", "ldap_auth")]


async def test_starttls_and_a_ca_that_did_not_sign_the_certificate(site: Site) -> None:
    await site.configure(ldap_url=site.slapd.ldap_url, ldap_starttls=True)
    assert await site.login("bob", BOB.password) == 200
    await site.configure(ldap_ca_certificate=site.slapd.pki.other_ca_pem)
    assert await site.login("carol", CAROL.password) == 401  # verification fails: refused
    assert await site.suite.find_user("carol") is None


async def test_wrong_password_and_unknown_user_are_refused_alike(site: Site) -> None:
    resp_wrong = await site.suite.token.get("/service/token", params=LOGIN, headers=basic("alice", "nope"))
    resp_unknown = await site.suite.token.get(
        "/service/token", params=LOGIN, headers=basic("mallory", "nope")
    )
    assert resp_wrong.status == resp_unknown.status == 401
    assert await resp_wrong.json() == await resp_unknown.json()
    assert await site.suite.find_user("mallory") is None


async def test_a_search_password_this_key_cannot_decrypt_refuses(site: Site) -> None:
    await site.configure(ldap_search_password=SecretBox(b"another key").encrypt("x"))
    assert await site.login("alice", ALICE.password) == 401
    assert await site.login("admin", ADMIN_PASSWORD) == 200


@pytest.mark.parametrize("db_kind", ["postgresql", "mariadb", "sqlite"])
async def test_any_spelling_is_one_user_and_a_stopped_directory_refuses_cleanly(
    own_site: Site, db_kind: str
) -> None:
    assert await own_site.login("ALICE", ALICE.password) == 200
    assert await own_site.login("alice", ALICE.password) == 200

    async def spellings(conn: AsyncConnection) -> list[str]:
        u = t.user_account.c
        rows = await conn.execute(sa.select(u.username).where(sa.func.lower(u.username) == "alice"))
        return [row[0] for row in rows]

    assert await own_site.run(spellings) == ["alice"]  # the directory's spelling, once
    own_site.slapd.stop()
    # Remembered (the credential cache): "ALICE" is the row "alice", no directory needed.
    assert await own_site.login("ALICE", ALICE.password) == 200
    # Not remembered: the directory is needed and gone, so refused (401, not a 500) ...
    assert await own_site.login("bob", BOB.password) == 401
    # ... while the local admin signs in.
    assert await own_site.login("admin", ADMIN_PASSWORD) == 200


# -- a group as a project member, and the group sync --------------------------------------------


async def _project_with_developers(site: Site) -> None:
    resp = await site.ui.post(
        "/api/v2.0/projects", json={"project_name": "team", "public": False}, headers=ADMIN
    )
    assert resp.status == 201, await resp.text()
    resp = await site.ui.post(
        "/api/v2.0/projects/team/members",
        json={"role_id": 2, "member_group": {"ldap_group_dn": DEVELOPERS.upper(), "group_type": 1}},
        headers=ADMIN,
    )
    assert resp.status == 201, await resp.text()


async def _run_sync(site: Site, sync: LdapGroupSync) -> dict[str, Any]:
    """Ask for a sync through the API, let the leader's code run it, poll the API's report."""
    resp = await site.ui.post("/api/v2.0/ldap/groups/sync", headers=ADMIN)
    assert resp.status == 202, await resp.text()
    request_id = (await resp.json())["request_id"]
    task = await sync.tick()
    assert task is not None
    deadline = time.monotonic() + 20
    while True:
        resp = await site.ui.get("/api/v2.0/ldap/groups/sync", headers=ADMIN)
        if resp.status == 200:
            report: dict[str, Any] = await resp.json()
            if report["request_id"] == request_id and report["finished_at"]:
                return report
        assert time.monotonic() < deadline, "the sync did not finish"
        await asyncio.sleep(0.05)


async def _sync_events(site: Site) -> list[dict[str, Any]]:
    return await _events(site, "user_group.sync")


async def _events(site: Site, event_type: str) -> list[dict[str, Any]]:
    """Events of this type written to the outbox, or already relayed to the stream."""

    async def go(conn: AsyncConnection) -> list[str]:
        o = t.event_outbox.c
        return [row[0] for row in await conn.execute(sa.select(o.payload))]

    pending = [json.loads(p) for p in await site.run(go)]
    redis = Redis.from_url(site.suite.settings.redis_url)
    try:
        entries = await redis.xrange(site.suite.settings.events_stream)
    finally:
        await redis.aclose()
    from wharf_shared.events import decode

    relayed = [event for _id, fields in entries for event in decode(fields)]
    return [e for e in [*pending, *relayed] if e["type"] == event_type]


async def test_the_group_gives_its_role_until_the_sync_removes_the_member(
    site_for_sync: Site, leader: tuple[LdapGroupSync, Clock]
) -> None:
    site, (sync, _) = site_for_sync, leader
    await _project_with_developers(site)
    scope = "repository:team/app:pull,push"
    token = await site.suite.token_for(scope, credentials=("bob", BOB.password))
    assert actions(token) == ["pull", "push"]  # developer through cn=developers

    site.slapd.remove_member("developers", BOB.dn)
    report = await _run_sync(site, sync)
    assert (report["trigger"], report["failed"], report["removed"], report["added"]) == ("manual", [], 1, 0)
    assert await site.group_dns("bob") == []
    # Bob's credentials are still remembered; his access is read afresh: no longer in the project.
    resp = await site.suite.token.get(
        "/service/token", params={**LOGIN, "scope": scope}, headers=basic("bob", BOB.password)
    )
    assert resp.status == 200
    assert actions((await resp.json())["token"]) == []
    events = await _sync_events(site)
    assert [(e["data"]["group"], e["data"]["removed"], e["data"]["added"]) for e in events] == [
        ("DEVELOPERS", ["bob"], [])  # the name the admin gave (from the DN typed)
    ]
    assert events[0]["data"]["operator"] == "wharf$jobservice"


async def test_the_sync_adds_known_users_and_skips_the_others(
    site_for_sync: Site, leader: tuple[LdapGroupSync, Clock]
) -> None:
    site, (sync, _) = site_for_sync, leader
    await _project_with_developers(site)
    assert await site.login("carol", CAROL.password) == 200
    site.slapd.add_member("developers", CAROL.dn)
    report = await _run_sync(site, sync)
    # carol joins; alice and bob never signed in here: no rows, skipped.
    assert (report["added"], report["removed"], report["failed"]) == (1, 0, [])
    # (ops, a groupOfUniqueNames, is not in slapd's memberOf: not hers at login.)
    assert await site.group_dns("carol") == [DEVELOPERS]


async def test_a_directory_outage_changes_nothing(
    site_for_sync: Site, leader: tuple[LdapGroupSync, Clock]
) -> None:
    site, (sync, _) = site_for_sync, leader
    await _project_with_developers(site)
    assert await site.login("bob", BOB.password) == 200
    site.slapd.stop()
    report = await _run_sync(site, sync)
    assert report["failed"] == [DEVELOPERS.upper()]  # as the admin typed it
    assert report["removed"] == 0
    assert await site.group_dns("bob") == [DEVELOPERS]  # an outage strips nobody


async def test_a_group_gone_from_the_directory_is_emptied(
    site_for_sync: Site, leader: tuple[LdapGroupSync, Clock]
) -> None:
    site, (sync, _) = site_for_sync, leader
    assert await site.login("bob", BOB.password) == 200
    bob = await site.suite.find_user("bob")
    assert bob is not None
    gone = "cn=gone,ou=groups,dc=example,dc=test"

    async def join(conn: AsyncConnection) -> None:
        await groups.replace_memberships(conn, bob.id, GroupType.LDAP, [DEVELOPERS, gone])

    await site.run(join)
    report = await _run_sync(site, sync)
    assert (report["failed"], report["removed"]) == ([], 1)
    assert await site.group_dns("bob") == [DEVELOPERS]


async def test_the_schedule_fires_once_per_fire_time(
    site_for_sync: Site, leader: tuple[LdapGroupSync, Clock]
) -> None:
    site, (sync, clock) = site_for_sync, leader
    await site.configure(ldap_group_sync_schedule="0 0 * * * *")
    assert await sync.tick() is None  # the first look only notes the time
    clock.now += dt.timedelta(hours=1)
    task = await sync.tick()
    assert task is not None
    report = await task
    assert (report.trigger, report.error, report.failed) == ("schedule", "", [])
    assert await sync.tick() is None  # that fire time is done
    await site.configure(ldap_group_sync_schedule="")
    clock.now += dt.timedelta(hours=3)
    assert await sync.tick() is None  # off


# -- Harbor's /ldap endpoints ----------------------------------------------------------------------


async def test_ping(site: Site) -> None:
    resp = await site.ui.post("/api/v2.0/ldap/ping", headers=ADMIN)
    assert (resp.status, await resp.json()) == (200, {"success": True, "message": ""})
    # A draft over the stored settings (no password given: the stored one is used).
    resp = await site.ui.post(
        "/api/v2.0/ldap/ping", json={"ldap_base_dn": "dc=nowhere,dc=test"}, headers=ADMIN
    )
    body = await resp.json()
    assert resp.status == 200
    assert body["success"] is False
    assert "dc=nowhere" in body["message"]
    resp = await site.ui.post("/api/v2.0/ldap/ping", json={"ldap_search_password": "wrong"}, headers=ADMIN)
    assert (await resp.json())["success"] is False
    resp = await site.ui.post("/api/v2.0/ldap/ping", json={"ldap_scope": 7}, headers=ADMIN)
    assert resp.status == 400
    assert (await resp.json())["errors"][0]["code"] == "BAD_REQUEST"


async def test_searches(site: Site) -> None:
    resp = await site.ui.get("/api/v2.0/ldap/users/search", params={"username": "ALICE"}, headers=ADMIN)
    assert (resp.status, await resp.json()) == (
        200,
        [{"username": "alice", "realname": ALICE.cn, "email": ALICE.mail}],
    )
    resp = await site.ui.get(
        "/api/v2.0/ldap/groups/search", params={"groupname": "developers"}, headers=ADMIN
    )
    assert await resp.json() == [{"group_name": "developers", "ldap_group_dn": DEVELOPERS}]
    resp = await site.ui.get(
        "/api/v2.0/ldap/groups/search", params={"groupdn": group_dn("ops")}, headers=ADMIN
    )
    assert [g["group_name"] for g in await resp.json()] == ["ops"]


async def test_import(site: Site) -> None:
    resp = await site.ui.post(
        "/api/v2.0/ldap/users/import", json={"ldap_uid_list": ["Carol", "nobody", "twin"]}, headers=ADMIN
    )
    assert resp.status == 404
    failed = {f["uid"]: f["error"] for f in await resp.json()}
    assert set(failed) == {"nobody", "twin"}  # twin: two entries
    carol = await site.suite.find_user("carol")
    assert carol is not None
    assert (carol.email, carol.password_hash) == (CAROL.mail, None)
    resp = await site.ui.post("/api/v2.0/ldap/users/import", json={"ldap_uid_list": ["carol"]}, headers=ADMIN)
    assert resp.status == 200  # again: refreshed
    created = [e["data"] for e in await _events(site, "user.create")]
    assert created == [{"operator": "admin", "username": "carol"}]  # once, by the admin
    resp = await site.ui.post("/api/v2.0/ldap/users/import", json={"ldap_uid_list": []}, headers=ADMIN)
    assert resp.status == 400


async def test_admins_only_and_an_outage_is_a_clean_error(own_site: Site) -> None:
    site = own_site
    assert await site.login("bob", BOB.password) == 200
    bob = basic("bob", BOB.password)
    for method, path in (
        ("POST", "/api/v2.0/ldap/ping"),
        ("GET", "/api/v2.0/ldap/users/search"),
        ("GET", "/api/v2.0/ldap/groups/search"),
        ("POST", "/api/v2.0/ldap/groups/sync"),
        ("GET", "/api/v2.0/ldap/groups/sync"),
    ):
        resp = await site.ui.request(method, path, headers=bob)
        assert resp.status == 403, (method, path)
    site.slapd.stop()
    resp = await site.ui.post("/api/v2.0/ldap/ping", headers=ADMIN)
    body = await resp.json()
    assert resp.status == 200
    assert body["success"] is False
    for path in ("/api/v2.0/ldap/users/search?username=alice", "/api/v2.0/ldap/groups/search?groupname=x"):
        resp = await site.ui.get(path, headers=ADMIN)
        assert resp.status == 503
        assert (await resp.json())["errors"][0]["code"] == "UNAVAILABLE"
    resp = await site.ui.post("/api/v2.0/ldap/users/import", json={"ldap_uid_list": ["carol"]}, headers=ADMIN)
    assert resp.status == 503


async def test_searches_and_import_without_a_directory_are_a_precondition(own_site: Site) -> None:
    """No `ldap_url`: nothing to ask, the admin's to fix (412), not an outage (503)."""
    site = own_site
    await site.configure(ldap_url="")
    for method, path, body in (
        ("GET", "/api/v2.0/ldap/users/search?username=alice", None),
        ("GET", "/api/v2.0/ldap/groups/search?groupname=x", None),
        ("POST", "/api/v2.0/ldap/users/import", {"ldap_uid_list": ["carol"]}),
    ):
        resp = await site.ui.request(method, path, json=body, headers=ADMIN)
        assert resp.status == 412, (method, path)
        assert (await resp.json())["errors"][0]["code"] == "PRECONDITION", (method, path)
