"""The token service and the registry in-process, sharing one database, Redis and key pair;
the token service reads time from a clock the test moves."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.oa import Oa, OaUser
from tests.support.slapd import Person, Slapd, running_slapd
from wharf_registry.app import create_app as create_registry
from wharf_shared import rbac, runtime
from wharf_shared.auth import cli_secrets
from wharf_shared.auth.cli_secrets import SSO_MODES
from wharf_shared.config import Settings
from wharf_shared.db import accounts, projects
from wharf_shared.db.engine import Database
from wharf_shared.keys import RUNTIME
from wharf_shared.passwords import hash_password
from wharf_shared.secrets import SecretBox
from wharf_shared.setup import ensure_accounts, ensure_files
from wharf_token.app import create_app as create_token

ADMIN_PASSWORD = "admin-secret-1"


def suite_settings(tmp_path: Path, database_url: str, redis_url: str, **extra: Any) -> Settings:
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        redis_url=redis_url,
        external_url="http://registry.test",
        admin_password=ADMIN_PASSWORD,  # type: ignore[arg-type]
        registry={"auth": "token"},  # type: ignore[arg-type]
        **extra,
    )
    ensure_files(settings)
    return settings


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


class Clock:
    """The token service's time: starts now (the registry, on real time, must accept its
    tokens) and moves only when the test says."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Suite:
    settings: Settings
    token: TestClient  # type: ignore[type-arg]
    registry: TestClient  # type: ignore[type-arg]
    clock: Clock
    oa: Oa | None = None  # under http_auth: the OA stand-in that checks passwords
    slapd: Slapd | None = None  # under ldap_auth: the directory
    mode: str = "db_auth"

    async def add_person(self, username: str, password: str) -> None:
        """Someone who signs in with this password: a local user under db_auth, an OA user or a
        directory entry (made here at their first login) under http_auth and ldap_auth, a single
        sign-on user whose CLI secret it is under oidc_auth and cas_auth."""
        if self.mode in SSO_MODES:
            await self.add_sso_user(username, password)
        elif self.oa is not None:
            self.oa.users[username] = OaUser(password, {})
        elif self.slapd is not None:
            self.slapd.put_person(Person(username, password, username.title(), f"{username}@example.test"))
        else:
            await self.add_user(username, password)

    async def add_user(self, username: str, password: str, *, sysadmin: bool = False) -> int:
        db = Database(self.settings.effective_database_url, pool_size=1)
        try:
            async with db.transaction() as conn:
                user = await accounts.create_user(conn, username, hash_password(password), sysadmin=sysadmin)
        finally:
            await db.close()
        return user.id

    async def add_sso_user(self, username: str, cli_secret: str) -> int:
        """A user onboarded by single sign-on: no password here, this CLI secret."""
        box = SecretBox(self.settings.secret_key_bytes())
        db = Database(self.settings.effective_database_url, pool_size=1)
        try:
            async with db.transaction() as conn:
                user = await accounts.create_user(conn, username, None, auth_backend=self.mode)
                await cli_secrets.store_secret(conn, box, user.id, cli_secret)
        finally:
            await db.close()
        return user.id

    async def add_project(
        self, name: str, *, public: bool, members: dict[int, rbac.Role] | None = None
    ) -> None:
        db = Database(self.settings.effective_database_url, pool_size=1)
        try:
            async with db.transaction() as conn:
                admin = await accounts.find_user(conn, "admin")
                assert admin is not None
                project = await projects.create_project(conn, name, admin.id, public=public)
                for user_id, role in (members or {}).items():
                    await projects.set_member(conn, project.id, user_id, role)
        finally:
            await db.close()

    async def set_runtime(self, **values: Any) -> None:
        """Change runtime settings (flat keys: `auth_mode`, `http_authproxy_endpoint`, ...) as the
        API would, and make the token service read them at once."""
        db = Database(self.settings.effective_database_url, pool_size=1)
        try:
            async with db.transaction() as conn:
                await runtime.store(conn, **values)
        finally:
            await db.close()
        self.token.app[RUNTIME].invalidate()

    async def find_user(self, username: str) -> accounts.User | None:
        db = Database(self.settings.effective_database_url, pool_size=1)
        try:
            async with db.read() as conn:
                return await accounts.find_user(conn, username)
        finally:
            await db.close()

    async def token_for(self, *scopes: str, credentials: tuple[str, str] | None = None) -> str:
        params = [("service", self.settings.token.service), *(("scope", s) for s in scopes)]
        headers = basic(*credentials) if credentials else {}
        resp = await self.token.get("/service/token", params=params, headers=headers)
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["token"])


async def start_suite(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str, **extra: Any
) -> Suite:
    settings = suite_settings(tmp_path, database_url, redis_url, **extra)
    await ensure_accounts(settings)
    clock = Clock()
    token = await aiohttp_client(create_token(settings, clock=clock))
    registry = await aiohttp_client(create_registry(settings))
    return Suite(settings, token, registry, clock)


@pytest.fixture
async def suite(aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str) -> Suite:
    return await start_suite(aiohttp_client, tmp_path, database_url, redis_url)


@pytest.fixture
async def oa() -> AsyncIterator[Oa]:
    stand_in = Oa()
    await stand_in.start()
    yield stand_in
    await stand_in.stop()


async def start_mode_suite(
    mode: str,
    aiohttp_client: Any,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    oa: Oa,
    slapd: Slapd | None = None,
    **extra: Any,
) -> Suite:
    """A suite whose `auth_mode` is `mode` (db_auth, http_auth checked by `oa`, ldap_auth
    checked by `slapd`, or oidc_auth and cas_auth: CLI secrets); `admin` is local in each."""
    suite = await start_suite(aiohttp_client, tmp_path, database_url, redis_url, **extra)
    suite.mode = mode
    if mode in SSO_MODES:
        await suite.set_runtime(auth_mode=mode)
    if mode == "http_auth":
        await suite.set_runtime(auth_mode=mode, http_authproxy_endpoint=oa.url, http_authproxy_timeout=2)
        suite.oa = oa
    elif mode == "ldap_auth":
        assert slapd is not None
        conf = slapd.configuration("ldaps")
        box = SecretBox(suite.settings.secret_key_bytes())
        conf["ldap_search_password"] = box.encrypt(conf["ldap_search_password"])
        await suite.set_runtime(auth_mode=mode, **{**conf, "ldap_timeout": 2})
        suite.slapd = slapd
    return suite


@pytest.fixture
def ldap_directory(tmp_path: Path) -> Iterator[Slapd]:
    """A slapd of the test's own (asked for only by the ldap_auth cases)."""
    with running_slapd(tmp_path / "slapd") as server:
        yield server


def directory_for(mode: str, request: pytest.FixtureRequest) -> Slapd | None:
    if mode != "ldap_auth":
        return None
    server: Slapd = request.getfixturevalue("ldap_directory")
    return server


# Every auth mode, each with its own kind of non-local user (oidc_auth and cas_auth: CLI secrets).
AUTH_MODES = ("db_auth", "http_auth", "ldap_auth", *SSO_MODES)


@pytest.fixture(params=AUTH_MODES)
async def mode_suite(
    request: pytest.FixtureRequest,
    aiohttp_client: Any,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    oa: Oa,
) -> Suite:
    """The suite under each auth mode (for the tests that must hold in every mode)."""
    mode = str(request.param)
    return await start_mode_suite(
        mode, aiohttp_client, tmp_path, database_url, redis_url, oa, directory_for(mode, request)
    )
