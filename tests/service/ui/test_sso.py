"""Single sign-on in the portal against real peers: an OIDC provider (Authlib) and a CAS server
(django-mama-cas), each in its own process, and the real ui and token services. A browser-less
client follows the redirects with its cookies: the user is onboarded, their provider groups give
a project role, their CLI secret (shown to them) gets a push token at the token service and stops
working once replaced; CAS's single logout ends the portal session; a provider that is down or a
forged redirect is a clean refusal page; the local admin still signs in. The job service's OIDC
group sync (its leader's code) takes a group the provider removed away from the CLI secret, drops
a user whose refresh token the provider revoked, changes nobody while the provider is down, and
fires on its schedule."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import sqlalchemy as sa
from redis.asyncio import Redis
from yarl import URL

from tests.service.ui.conftest import ADMIN, ADMIN_PASSWORD, Ui, basic, ui_settings
from tests.support.cas_server import CasServer, CasUserSeed, running_cas_server
from tests.support.oidc_provider import OidcProvider, OidcUserSeed, running_oidc_provider
from tests.support.processes import free_port
from tests.support.sign_in import browser, sign_in
from wharf_jobservice.oidc_sync import OidcGroupSync
from wharf_shared import oidc_group_sync, runtime
from wharf_shared.auth.oidc import OidcClient
from wharf_shared.config import Settings
from wharf_shared.db import accounts, groups
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.events import decode
from wharf_shared.secrets import SecretBox
from wharf_shared.setup import ensure_accounts
from wharf_token.app import create_app as create_token
from wharf_ui.app import create_app as create_ui
from wharf_ui.keys import RUNTIME

OIDC_USERS = {
    "olivia": OidcUserSeed("Olivia-pass-1", "Olivia Oidc", "olivia@example.test", ("devs", "wharf-admins")),
}
CAS_USERS = {"carol": CasUserSeed("Carol-pass-1", "Carol Cas", "carol@example.test", ("devs",))}
CONFIG = "/api/v2.0/configurations"
PUSH_SCOPE = "repository:team/app:pull,push"


@pytest.fixture
def db_kind() -> str:
    return "postgresql"


@pytest.fixture(scope="module")
def ui_port() -> int:
    """The ui's port, chosen before the provider starts: the provider must know the callback."""
    return free_port()


@pytest.fixture(scope="module")
def oidc(tmp_path_factory: pytest.TempPathFactory, ui_port: int) -> Iterator[OidcProvider]:
    callback = f"http://127.0.0.1:{ui_port}/c/oidc/callback"
    with running_oidc_provider(tmp_path_factory.mktemp("oidc"), OIDC_USERS, redirect_uris=[callback]) as p:
        yield p


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CasServer]:
    with running_cas_server(tmp_path_factory.mktemp("cas"), CAS_USERS) as server:
        yield server


@dataclass
class Wharf:
    settings: Settings
    url: str  # the ui's external URL
    ui: Any  # TestClient
    token: Any  # TestClient

    async def configure(self, **values: Any) -> None:
        resp = await self.ui.put(CONFIG, json=values, headers=ADMIN)
        assert resp.status == 200, await resp.text()
        self.token.app[RUNTIME].invalidate()

    async def team_project_for_group(self, group_type: int) -> None:
        """The project `team`, where the provider's group `devs` is a developer."""
        resp = await self.ui.post("/api/v2.0/projects", json={"project_name": "team"}, headers=ADMIN)
        assert resp.status == 201, await resp.text()
        member = {"role_id": 2, "member_group": {"group_name": "devs", "group_type": group_type}}
        resp = await self.ui.post("/api/v2.0/projects/team/members", json=member, headers=ADMIN)
        assert resp.status == 201, await resp.text()

    async def push_access(self, username: str, password: str) -> tuple[int, list[str]]:
        params = {"service": "wharf-registry", "scope": PUSH_SCOPE}
        resp = await self.token.get("/service/token", params=params, headers=basic(username, password))
        if resp.status != 200:
            return resp.status, []
        claims = jwt.decode((await resp.json())["token"], options={"verify_signature": False})
        return 200, sorted(a for grant in claims["access"] for a in grant["actions"])


@pytest.fixture
async def wharf(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str, ui_port: int
) -> Wharf:
    url = f"http://127.0.0.1:{ui_port}"
    settings = ui_settings(tmp_path, database_url, redis_url, external_url=url, registry={"auth": "token"})
    await ensure_accounts(settings)
    ui = await aiohttp_client(create_ui(settings), server_kwargs={"host": "127.0.0.1", "port": ui_port})
    token = await aiohttp_client(create_token(settings))
    return Wharf(settings, url, ui, token)


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with browser() as session:
        yield session


def csrf(session: aiohttp.ClientSession, url: str) -> dict[str, str]:
    cookie = session.cookie_jar.filter_cookies(URL(url)).get("__csrf")
    assert cookie is not None
    return {"X-Harbor-CSRF-Token": cookie.value}


async def sso_sign_in(
    session: aiohttp.ClientSession, wharf: Wharf, start: str, username: str, password: str
) -> aiohttp.ClientResponse:
    """Through the portal's button, the provider's form and back: the callback's answer."""
    resp = await session.get(wharf.url + start, allow_redirects=False)
    assert resp.status == 302, await resp.text()
    back = await sign_in(session, resp.headers["Location"], username, password)
    assert str(back).startswith(wharf.url + "/c/"), back
    return await session.get(back, allow_redirects=False)


async def current(session: aiohttp.ClientSession, wharf: Wharf) -> tuple[int, Any]:
    resp = await session.get(wharf.url + "/api/v2.0/users/current")
    return resp.status, await resp.json() if resp.status == 200 else None


async def test_oidc_sign_in_onboards_and_the_cli_secret_pushes(
    wharf: Wharf, oidc: OidcProvider, client: aiohttp.ClientSession
) -> None:
    await wharf.configure(auth_mode="oidc_auth", **oidc.configuration(oidc_admin_group="wharf-admins"))
    await wharf.team_project_for_group(3)
    page = await (await client.get(wharf.url + "/harbor/sign-in")).text()
    assert "Sign in with Test provider" in page
    assert 'action="/c/login"' in page  # the local admin's form stays

    done = await sso_sign_in(
        client, wharf, "/c/oidc/login?next=/harbor/projects/1", "olivia", "Olivia-pass-1"
    )
    assert done.status == 302, await done.text()
    assert done.headers["Location"] == "/harbor/projects/1"
    status, me = await current(client, wharf)
    assert status == 200
    assert (me["username"], me["email"], me["realname"], me["sysadmin_flag"]) == (
        "olivia",
        "olivia@example.test",
        "Olivia Oidc",
        True,  # in oidc_admin_group
    )
    secret = me["oidc_user_meta"]["secret"]
    assert len(secret) >= 32
    account = await (await client.get(wharf.url + "/harbor/account")).text()
    assert secret in account

    # The groups claim made olivia a member of `devs`, a developer in `team`.
    assert await wharf.push_access("olivia", secret) == (200, ["pull", "push"])
    assert (await wharf.push_access("olivia", "Wrong-secret-1"))[0] == 401
    # The CLI secret opens no portal session (that is the provider's job).
    resp = await client.post(wharf.url + "/c/login", data={"principal": "olivia", "password": secret})
    assert resp.status == 401

    # A new secret: the old one (remembered by the credential cache) stops working at once.
    put = await client.put(
        f"{wharf.url}/api/v2.0/users/{me['user_id']}/cli_secret",
        json={"secret": "Brand-new-secret-9"},
        headers=csrf(client, wharf.url),
    )
    assert put.status == 200, await put.text()
    assert (await wharf.push_access("olivia", secret))[0] == 401
    assert await wharf.push_access("olivia", "Brand-new-secret-9") == (200, ["pull", "push"])
    weak = await client.put(
        f"{wharf.url}/api/v2.0/users/{me['user_id']}/cli_secret",
        json={"secret": "short"},
        headers=csrf(client, wharf.url),
    )
    assert weak.status == 400
    assert (await current(client, wharf))[0] == 200  # the portal session outlives the new secret

    # Signing out names the provider's end-session endpoint.
    out = await client.get(wharf.url + "/c/logout")
    assert out.status == 200
    assert (await out.json())["redirect_url"].startswith(oidc.issuer + "/logout?")
    assert (await current(client, wharf))[0] == 401

    logins = await Ui(wharf.settings, wharf.ui, 0, 0).events("login")
    assert ("olivia", "oidc_auth") in [(e["data"]["operator"], e["data"]["backend"]) for e in logins]


async def test_oidc_refusals_are_clean_pages(
    wharf: Wharf, oidc: OidcProvider, client: aiohttp.ClientSession
) -> None:
    await wharf.configure(auth_mode="oidc_auth", **oidc.configuration())
    # A redirect back with no sign-in in progress in this browser.
    resp = await client.get(wharf.url + "/c/oidc/callback?code=x&state=y")
    assert resp.status == 400
    assert "No sign-in is in progress" in await resp.text()
    # A forged state.
    start = await client.get(wharf.url + "/c/oidc/login", allow_redirects=False)
    assert start.status == 302
    resp = await client.get(wharf.url + "/c/oidc/callback?code=x&state=forged")
    assert resp.status == 401
    assert "failed" in await resp.text()
    # The provider refused (the user cancelled).
    resp = await client.get(wharf.url + "/c/oidc/callback?error=access_denied")
    assert resp.status == 401
    # The provider is down: no way in, a page that says so.
    await wharf.configure(oidc_endpoint=f"http://127.0.0.1:{free_port()}")
    resp = await client.get(wharf.url + "/c/oidc/login", allow_redirects=False)
    assert resp.status == 502
    assert "cannot be reached" in await resp.text()
    # The local admin still signs in.
    resp = await client.post(wharf.url + "/c/login", data={"principal": "admin", "password": ADMIN_PASSWORD})
    assert resp.status == 200


async def test_cas_sign_in_groups_cli_secret_and_single_logout(
    wharf: Wharf, cas: CasServer, client: aiohttp.ClientSession
) -> None:
    await wharf.configure(auth_mode="cas_auth", **cas.configuration())
    await wharf.team_project_for_group(4)
    page = await (await client.get(wharf.url + "/harbor/sign-in")).text()
    assert "Sign in with CAS" in page

    done = await sso_sign_in(
        client, wharf, "/c/cas/login?redirect_url=/harbor/account", "carol", "Carol-pass-1"
    )
    assert done.status == 302, await done.text()
    assert done.headers["Location"] == "/harbor/account"  # Harbor's portal's parameter
    status, me = await current(client, wharf)
    assert status == 200
    assert (me["username"], me["email"], me["sysadmin_flag"]) == ("carol", "carol@example.test", False)
    secret = me["oidc_user_meta"]["secret"]
    assert await wharf.push_access("carol", secret) == (200, ["pull", "push"])

    # Signing out at CAS: CAS POSTs the single logout to Wharf, which ends the portal session.
    out = await client.get(cas.url + "/logout", allow_redirects=False)
    assert out.status == 302
    for _ in range(200):
        if (await current(client, wharf))[0] == 401:
            break
        await asyncio.sleep(0.05)
    assert (await current(client, wharf))[0] == 401
    # ...while the CLI secret keeps working (it does not expire with the SSO session).
    assert (await wharf.push_access("carol", secret))[0] == 200
    logins = await Ui(wharf.settings, wharf.ui, 0, 0).events("login")
    assert ("carol", "cas_auth") in [(e["data"]["operator"], e["data"]["backend"]) for e in logins]


async def test_cas_refusals_are_clean_pages(
    wharf: Wharf, cas: CasServer, client: aiohttp.ClientSession
) -> None:
    await wharf.configure(auth_mode="cas_auth", **cas.configuration())
    resp = await client.get(wharf.url + "/c/cas/callback?ticket=ST-1-forged")
    assert resp.status == 401
    assert "did not accept" in await resp.text()
    resp = await client.post(wharf.url + "/c/cas/callback", data={"logoutRequest": "<junk"})
    assert resp.status == 400
    await wharf.configure(cas_url=f"http://127.0.0.1:{free_port()}/cas")
    resp = await client.get(wharf.url + "/c/cas/callback?ticket=ST-1-anything")
    assert resp.status == 502
    assert "cannot be reached" in await resp.text()
    resp = await client.post(wharf.url + "/c/login", data={"principal": "admin", "password": ADMIN_PASSWORD})
    assert resp.status == 200


async def test_oidc_onboarding_form_when_automatic_onboarding_is_off(
    wharf: Wharf, oidc: OidcProvider, client: aiohttp.ClientSession
) -> None:
    """Harbor's onboarding: a new person chooses their username (the claim suggested); a name
    taken or not allowed asks again; the account is theirs by subject from then on."""
    await wharf.configure(auth_mode="oidc_auth", **oidc.configuration(oidc_auto_onboard=False))
    ui = Ui(wharf.settings, wharf.ui, 0, 0)
    await ui.add_user("taken", "Taken-pass-1", email="taken@example.test")
    done = await sso_sign_in(client, wharf, "/c/oidc/login?next=/harbor/account", "olivia", "Olivia-pass-1")
    assert done.status == 302, await done.text()
    assert done.headers["Location"] == "/harbor/oidc-onboard?username=olivia"
    form = await client.get(wharf.url + done.headers["Location"])
    assert form.status == 200
    assert 'value="olivia"' in await form.text()
    assert (await current(client, wharf))[0] == 401  # no session before the name is chosen

    onboard = wharf.url + "/c/oidc/onboard"
    taken = await client.post(onboard, data={"username": "taken"}, allow_redirects=False)
    assert taken.status == 409
    assert "is taken" in await taken.text()
    bad = await client.post(onboard, data={"username": "o livia"}, allow_redirects=False)
    assert bad.status == 400
    chosen = await client.post(onboard, data={"username": "olivia-o"}, allow_redirects=False)
    assert chosen.status == 302, await chosen.text()
    assert chosen.headers["Location"] == "/harbor/account"
    me = (await current(client, wharf))[1]
    assert (me["username"], me["email"]) == ("olivia-o", "olivia@example.test")
    assert me["oidc_user_meta"]["secret"]
    assert await stored_token(wharf, "olivia-o")  # kept (encrypted) while she chose the name
    # The onboarding was used up; the next sign-in finds the account by the provider's subject.
    again = await client.post(onboard, data={"username": "olivia-2"}, allow_redirects=False)
    assert again.status == 400
    await client.get(wharf.url + "/c/logout")
    done = await sso_sign_in(client, wharf, "/c/oidc/login", "olivia", "Olivia-pass-1")
    assert done.headers["Location"] == "/harbor/projects"
    assert (await current(client, wharf))[1]["username"] == "olivia-o"


async def test_a_local_namesake_and_an_unusable_username_are_refused(
    wharf: Wharf, oidc: OidcProvider, client: aiohttp.ClientSession
) -> None:
    await wharf.configure(auth_mode="oidc_auth", **oidc.configuration())
    # A local account of that name is never taken over by the provider's person.
    # (made in the database: the API makes no local users under single sign-on)
    await Ui(wharf.settings, wharf.ui, 0, 0).add_user("olivia", "Local-pass-1", email="o@example.test")
    done = await sso_sign_in(client, wharf, "/c/oidc/login", "olivia", "Olivia-pass-1")
    assert done.status == 403
    assert "cannot be used with single sign-on" in await done.text()
    assert (await current(client, wharf))[0] == 401
    # A username docker could not log in with (the `name` claim has a space): refused, said why.
    await wharf.configure(oidc_user_claim="name")
    done = await sso_sign_in(client, wharf, "/c/oidc/login", "olivia", "Olivia-pass-1")
    assert done.status == 403
    assert "cannot be used here" in await done.text()


async def test_cli_secret_rules(wharf: Wharf) -> None:
    """Outside the single sign-on modes there is nothing to set (412); a user with a password has
    no CLI secret (412); someone else's is for system admins only (403)."""
    resp = await wharf.ui.put("/api/v2.0/users/1/cli_secret", json={"secret": "Good-secret-1"}, headers=ADMIN)
    assert resp.status == 412
    assert (await resp.json())["errors"][0]["code"] == "PRECONDITION"
    await wharf.configure(auth_mode="cas_auth")
    me = await (await wharf.ui.get("/api/v2.0/users/current", headers=ADMIN)).json()
    assert "oidc_user_meta" not in me
    resp = await wharf.ui.put(
        f"/api/v2.0/users/{me['user_id']}/cli_secret", json={"secret": "Good-secret-1"}, headers=ADMIN
    )
    assert resp.status == 412
    resp = await wharf.ui.put(
        "/api/v2.0/users/999999/cli_secret", json={"secret": "Good-secret-1"}, headers=ADMIN
    )
    assert resp.status == 404
    resp = await wharf.ui.put(f"/api/v2.0/users/{me['user_id']}/cli_secret", json={}, headers=ADMIN)
    assert resp.status == 400


async def test_an_oidc_account_follows_the_providers_subject(
    wharf: Wharf, oidc: OidcProvider, client: aiohttp.ClientSession
) -> None:
    await wharf.configure(auth_mode="oidc_auth", **oidc.configuration())
    done = await sso_sign_in(client, wharf, "/c/oidc/login", "olivia", "Olivia-pass-1")
    assert done.status == 302, await done.text()
    first = (await current(client, wharf))[1]
    await client.get(wharf.url + "/c/logout")
    # The username claim changes: the same person keeps the same account.
    await wharf.configure(oidc_user_claim="email")
    done = await sso_sign_in(client, wharf, "/c/oidc/login", "olivia", "Olivia-pass-1")
    assert done.status == 302, await done.text()
    again = (await current(client, wharf))[1]
    assert (again["user_id"], again["username"]) == (first["user_id"], "olivia")
    await client.get(wharf.url + "/c/logout")

    # An account bound to another identity at the provider is not this person's.
    async def rebind(conn: Any) -> None:
        u = t.user_account.c
        await conn.execute(
            sa.update(t.user_account).where(u.username == "olivia").values(sso_subject="0" * 64)
        )

    await Ui(wharf.settings, wharf.ui, 0, 0).db_call(rebind)
    await wharf.configure(oidc_user_claim="preferred_username")
    done = await sso_sign_in(client, wharf, "/c/oidc/login", "olivia", "Olivia-pass-1")
    assert done.status == 403
    assert "belongs to another identity" in await done.text()


# -- the OIDC group sync (the job service leader's code, on the site's database and Redis) ---------


class Clock:
    """The leader's clock, from five past an hour: the schedule tests step it over fire times."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 12, 6, 10, 5, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


SYNC_API = "/api/v2.0/system/oidc/groups/sync"


@dataclass
class Leader:
    sync: OidcGroupSync
    clock: Clock
    redis: Redis
    ui: Any  # the ui's TestClient: the admin asks and reads through the API

    async def run(self) -> dict[str, Any]:
        """A run asked for by an admin (the API), started by the leader's tick; its report."""
        resp = await self.ui.post(SYNC_API, headers=ADMIN)
        assert resp.status == 202, await resp.text()
        request_id = (await resp.json())["request_id"]
        task = await self.sync.tick()
        assert task is not None
        await task
        resp = await self.ui.get(SYNC_API, headers=ADMIN)
        assert resp.status == 200, await resp.text()
        report: dict[str, Any] = await resp.json()
        assert (report["request_id"], bool(report["finished_at"])) == (request_id, True)
        return report


@pytest.fixture
async def leader(wharf: Wharf, oidc: OidcProvider) -> AsyncIterator[Leader]:
    settings = wharf.settings
    db = Database(settings.effective_database_url, pool_size=2)
    redis = Redis.from_url(settings.redis_url)
    config = runtime.RuntimeConfig(db, runtime.defaults(settings), cache_seconds=0)
    clock = Clock()
    async with aiohttp.ClientSession() as session:
        box = SecretBox(settings.secret_key_bytes())
        sync = OidcGroupSync(
            db=db, redis=redis, runtime=config.get, client=OidcClient(session), box=box, now=clock
        )
        try:
            yield Leader(sync, clock, redis, wharf.ui)
        finally:
            await sync.stop()
            await redis.aclose()
            await db.close()
            # The provider is the module's: olivia as seeded again, its token endpoint up.
            oidc.fail_token_endpoint(0)
            oidc.set_groups("olivia", OIDC_USERS["olivia"].groups)


async def stored_token(wharf: Wharf, username: str = "olivia") -> str | None:
    """The user's stored refresh token, decrypted."""

    async def go(conn: Any) -> str | None:
        r = t.oidc_refresh_token.c
        u = t.user_account.c
        query = sa.select(r.token).join(t.user_account, u.id == r.user_id).where(u.username == username)
        value: str | None = (await conn.execute(query)).scalar()
        return value

    found: str | None = await Ui(wharf.settings, wharf.ui, 0, 0).db_call(go)
    return None if found is None else SecretBox(wharf.settings.secret_key_bytes()).decrypt(found)


async def olivia_groups_and_admin(wharf: Wharf) -> tuple[list[str], bool]:
    async def go(conn: Any) -> tuple[list[str], bool]:
        user = await accounts.find_user(conn, "olivia")
        assert user is not None
        names = [g.group_name for g in await groups.groups_of(conn, user.id) if g.group_type == 3]
        return names, user.sysadmin

    found: tuple[list[str], bool] = await Ui(wharf.settings, wharf.ui, 0, 0).db_call(go)
    return found


async def sync_events(wharf: Wharf) -> list[dict[str, Any]]:
    """The group sync's audit events: in the outbox, or relayed to the stream already."""

    async def go(conn: Any) -> list[str]:
        return [row[0] for row in await conn.execute(sa.select(t.event_outbox.c.payload))]

    found = [json.loads(p) for p in await Ui(wharf.settings, wharf.ui, 0, 0).db_call(go)]
    redis = Redis.from_url(wharf.settings.redis_url)
    try:
        found += [e for _, fields in await redis.xrange(wharf.settings.events_stream) for e in decode(fields)]
    finally:
        await redis.aclose()
    return [e for e in found if e["type"] == "user_group.sync"]


async def signed_in_olivia(
    wharf: Wharf, oidc: OidcProvider, client: aiohttp.ClientSession, *, admin_group: str = ""
) -> str:
    """olivia onboarded (devs: a developer in `team`); her CLI secret."""
    await wharf.configure(auth_mode="oidc_auth", **oidc.configuration(oidc_admin_group=admin_group))
    await wharf.team_project_for_group(3)
    done = await sso_sign_in(client, wharf, "/c/oidc/login", "olivia", "Olivia-pass-1")
    assert done.status == 302, await done.text()
    secret: str = (await current(client, wharf))[1]["oidc_user_meta"]["secret"]
    assert await wharf.push_access("olivia", secret) == (200, ["pull", "push"])
    return secret


async def test_oidc_group_sync_takes_a_removed_group_away_from_the_cli_secret(
    wharf: Wharf, oidc: OidcProvider, client: aiohttp.ClientSession, leader: Leader
) -> None:
    secret = await signed_in_olivia(wharf, oidc, client)
    first = await stored_token(wharf)
    assert first  # the sign-in's refresh token (offline_access), kept encrypted
    me = await (await client.get(wharf.url + "/api/v2.0/users/current")).text()
    assert first not in me

    oidc.set_groups("olivia", ["wharf-admins"])  # out of devs at the provider
    assert await wharf.push_access("olivia", secret) == (200, ["pull", "push"])  # until the sync
    report = await leader.run()
    assert (report["trigger"], report["checked"], report["changed"], report["dropped"]) == ("manual", 1, 1, 0)
    assert (report["failed"], report["error"]) == ([], "")
    assert await olivia_groups_and_admin(wharf) == (["wharf-admins"], False)
    # The CLI secret still logs in; the project's access is read afresh: none.
    assert await wharf.push_access("olivia", secret) == (200, [])
    rotated = await stored_token(wharf)
    assert rotated not in (None, first)  # the provider rotated it: the new one is kept
    events = await sync_events(wharf)
    assert [(e["data"]["group"], e["data"]["added"], e["data"]["removed"]) for e in events] == [
        ("devs", [], ["olivia"])
    ]
    assert events[0]["data"]["operator"] == "wharf$jobservice"

    # Back in devs: the next run gives it back, with the rotated token.
    oidc.set_groups("olivia", ["devs", "wharf-admins"])
    report = await leader.run()
    assert (report["checked"], report["changed"], report["failed"]) == (1, 1, [])
    assert await wharf.push_access("olivia", secret) == (200, ["pull", "push"])
    # Nothing new: nothing changes.
    assert (await leader.run())["changed"] == 0
    # A deleted user's token goes with her.
    user_id = (await current(client, wharf))[1]["user_id"]
    assert (await wharf.ui.delete(f"/api/v2.0/users/{user_id}", headers=ADMIN)).status == 200
    assert await stored_token(wharf) is None
    assert (await leader.run())["checked"] == 0


async def test_oidc_group_sync_drops_a_revoked_user_and_keeps_all_while_the_provider_is_down(
    wharf: Wharf, oidc: OidcProvider, client: aiohttp.ClientSession, leader: Leader
) -> None:
    secret = await signed_in_olivia(wharf, oidc, client, admin_group="wharf-admins")
    assert await olivia_groups_and_admin(wharf) == (["devs", "wharf-admins"], True)
    oidc.set_groups("olivia", [])
    # The token endpoint answers 503: nobody changes, the report says so.
    oidc.fail_token_endpoint(503)
    report = await leader.run()
    assert (report["checked"], report["changed"], report["dropped"], report["failed"]) == (
        0,
        0,
        0,
        ["olivia"],
    )
    assert "unavailable" in report["error"]
    assert await olivia_groups_and_admin(wharf) == (["devs", "wharf-admins"], True)
    # Unreachable: the same.
    oidc.fail_token_endpoint(0)
    await wharf.configure(oidc_endpoint=f"http://127.0.0.1:{free_port()}")
    report = await leader.run()
    assert (report["changed"], report["failed"]) == (0, ["olivia"])
    assert "cannot reach" in report["error"]
    assert await wharf.push_access("olivia", secret) == (200, ["pull", "push"])
    assert await stored_token(wharf)

    # Her session revoked at the provider: the refresh is refused, her OIDC groups dropped (the
    # admin flag they gave too) and the token; her CLI secret still logs in, to no project.
    await wharf.configure(oidc_endpoint=oidc.issuer)
    assert oidc.revoke_refresh_tokens("olivia") >= 1  # (the module's earlier tests left some too)
    report = await leader.run()
    assert (report["checked"], report["changed"], report["dropped"], report["failed"]) == (1, 1, 1, [])
    assert await olivia_groups_and_admin(wharf) == ([], False)
    assert await stored_token(wharf) is None
    assert await wharf.push_access("olivia", secret) == (200, [])
    assert (await leader.run())["checked"] == 0  # no token left to ask with
    # Signing in again brings the groups and a token back.
    await client.get(wharf.url + "/c/logout")
    oidc.set_groups("olivia", OIDC_USERS["olivia"].groups)
    done = await sso_sign_in(client, wharf, "/c/oidc/login", "olivia", "Olivia-pass-1")
    assert done.status == 302, await done.text()
    assert await stored_token(wharf)
    assert await wharf.push_access("olivia", secret) == (200, ["pull", "push"])


async def test_oidc_group_sync_schedule_fires_once_per_fire_time(
    wharf: Wharf, oidc: OidcProvider, leader: Leader
) -> None:
    await wharf.configure(auth_mode="oidc_auth", **oidc.configuration(oidc_group_sync_schedule="0 0 * * * *"))
    sync, clock = leader.sync, leader.clock
    assert await sync.tick() is None  # the first look only notes the time
    clock.now += dt.timedelta(minutes=30)
    assert await sync.tick() is None  # not yet
    clock.now += dt.timedelta(hours=1)
    task = await sync.tick()
    assert task is not None
    report = await task
    assert (report.trigger, report.error, report.checked, report.failed) == ("schedule", "", 0, [])
    assert await sync.tick() is None  # that fire time is done
    await wharf.configure(oidc_group_sync_schedule="")
    clock.now += dt.timedelta(hours=3)
    assert await sync.tick() is None  # off
    await wharf.configure(oidc_group_sync_schedule="0 0 * * * *", auth_mode="db_auth")
    clock.now += dt.timedelta(hours=3)
    assert await sync.tick() is None  # not under oidc_auth
    resp = await wharf.ui.put(CONFIG, json={"oidc_group_sync_schedule": "often"}, headers=ADMIN)
    assert resp.status == 400


async def test_the_oidc_group_sync_api_is_for_system_admins(wharf: Wharf, leader: Leader) -> None:
    resp = await wharf.ui.get(SYNC_API, headers=ADMIN)
    assert resp.status == 404  # no run yet
    assert "no OIDC group sync has run yet" in (await resp.json())["errors"][0]["message"]
    resp = await wharf.ui.post(
        "/api/v2.0/users",
        json={"username": "ursula", "password": "Ursula-pass-1", "email": "u@example.test", "realname": "U"},
        headers=ADMIN,
    )
    assert resp.status == 201, await resp.text()
    for method in ("POST", "GET"):
        resp = await wharf.ui.request(method, SYNC_API, headers=basic("ursula", "Ursula-pass-1"))
        assert resp.status == 403, method
        resp = await wharf.ui.request(method, SYNC_API)
        assert resp.status == 401, method
    assert await oidc_group_sync.last_report(leader.redis) is None  # nobody's request was taken
