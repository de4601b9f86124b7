"""skopeo with a user's password against a registry process and a token service process: the
registry challenges, skopeo asks the token service, and the user's project role decides.

One representative row per role, on PostgreSQL: a private project `team` where each user holds
their role, and the public `library`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import Registry, Skopeo, make_skopeo
from tests.images import make_image, write_layout
from tests.support import backends
from tests.support.processes import ServiceProcess, registry_process, token_process
from wharf_shared.config import Settings
from wharf_shared.db import accounts, projects
from wharf_shared.db.engine import Database
from wharf_shared.passwords import hash_password
from wharf_shared.rbac import Role
from wharf_shared.setup import ensure_accounts, ensure_files

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "e2e-admin-password"
PASSWORD = "e2e-member-password"
MEMBERS = {
    "projectadmin": Role.PROJECT_ADMIN,
    "maintainer": Role.MAINTAINER,
    "developer": Role.DEVELOPER,
    "guest": Role.GUEST,
    "limitedguest": Role.LIMITED_GUEST,
}
DENIED = ("unauthorized", "denied", "authentication required")


@dataclass
class Site:
    registry: Registry
    token: ServiceProcess
    layout: Path  # an OCI layout holding one image, tag `latest`
    home: Path


async def populate(settings: Settings) -> None:
    await ensure_accounts(settings)
    db = Database(settings.effective_database_url, pool_size=1)
    try:
        async with db.transaction() as conn:
            admin = await accounts.find_user(conn, "admin")
            assert admin is not None
            team = await projects.create_project(db, conn, "team", admin.id, public=False)
            await accounts.create_user(db, conn, "root", hash_password(PASSWORD), sysadmin=True)
            await accounts.create_user(db, conn, "outsider", hash_password(PASSWORD))
            for name, role in MEMBERS.items():
                user = await accounts.create_user(db, conn, name, hash_password(PASSWORD))
                await projects.set_member(db, conn, team.id, user.id, role)
    finally:
        await db.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("token-roles")
    with (
        backends.fresh_database("postgresql", str(tmp)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        data_dir = tmp / "data"
        settings = Settings(
            data_dir=data_dir,
            database_url=database_url,
            redis_url=redis_url,
            admin_password=ADMIN_PASSWORD,  # type: ignore[arg-type]
        )
        ensure_files(settings)
        asyncio.run(populate(settings))
        env = {
            "WHARF_DATA_DIR": str(data_dir),
            "WHARF_DATABASE_URL": database_url,
            "WHARF_REDIS_URL": redis_url,
        }
        token = token_process(env, tmp / "logs")
        registry_env = {**env, "WHARF_REGISTRY__AUTH": "token"}
        try:
            token.start()
            registry_env["WHARF_REGISTRY__REALM"] = f"{token.url}/service/token"
            process = registry_process(registry_env, tmp / "logs")
            registry = Registry(process, "token", "postgresql", data_dir, None)
            process.start()
            layout = tmp / "layout"
            write_layout(layout, [make_image("token-roles")])
            site = Site(registry, token, layout, tmp / "skopeo")
            seed(site)
            yield site
        finally:
            if "process" in locals():
                process.stop()
            token.stop()


def tool(site: Site, name: str) -> Skopeo:
    return make_skopeo(site.registry, site.home / name)


def creds(user: str | None, flag: str = "--creds") -> list[str]:
    if user is None:
        return []
    return [f"{flag}={user}:{ADMIN_PASSWORD if user == 'admin' else PASSWORD}"]


def seed(site: Site) -> None:
    """What the pull and delete rows work on, pushed by the admin."""
    skopeo = tool(site, "admin")
    targets = ["team/base:1", "library/base:1"] + [f"team/{user}-del:1" for user in ROWS]
    for target in targets:
        skopeo.ok(
            "copy",
            "--dest-tls-verify=false",
            *creds("admin", "--dest-creds"),
            f"oci:{site.layout}:latest",
            site.registry.ref(target),
        )


def pushes(site: Site, user: str | None, repo: str) -> bool:
    skopeo = tool(site, user or "anonymous")
    args = ["copy", "--dest-tls-verify=false", *creds(user, "--dest-creds"), f"oci:{site.layout}:latest"]
    result = skopeo.run(*args, site.registry.ref(f"{repo}:1"))
    if result.returncode != 0:
        assert skopeo.mentions(result, *DENIED), skopeo.describe(result)
        # Nothing was written: the admin finds no such repository.
        admin = tool(site, "admin")
        check = admin.run("list-tags", "--tls-verify=false", *creds("admin"), site.registry.ref(repo))
        assert check.returncode != 0, admin.describe(check)
        assert admin.mentions(check, "name unknown", "not found"), admin.describe(check)
    return result.returncode == 0


def pulls(site: Site, user: str | None, ref: str) -> bool:
    skopeo = tool(site, user or "anonymous")
    dest = site.home / f"pulled-{user}-{ref.replace('/', '_').replace(':', '_')}"
    args = [
        "copy",
        "--src-tls-verify=false",
        *creds(user, "--src-creds"),
        site.registry.ref(ref),
        f"dir:{dest}",
    ]
    result = skopeo.run(*args)
    if result.returncode != 0:
        assert skopeo.mentions(result, *DENIED), skopeo.describe(result)
    return result.returncode == 0


def deletes(site: Site, user: str | None, ref: str) -> bool:
    skopeo = tool(site, user or "anonymous")
    result = skopeo.run("delete", "--tls-verify=false", *creds(user), site.registry.ref(ref))
    if result.returncode != 0:
        assert skopeo.mentions(result, *DENIED), skopeo.describe(result)
        # Still there for the admin.
        tool(site, "admin").ok(
            "inspect", "--raw", "--tls-verify=false", *creds("admin"), site.registry.ref(ref)
        )
    return result.returncode == 0


# user → (push to team, pull from team, delete in team, pull from library, push to library)
ROWS = {
    "root": (True, True, True, True, True),
    "projectadmin": (True, True, True, True, False),
    "maintainer": (True, True, True, True, False),
    "developer": (True, True, False, True, False),
    "guest": (False, True, False, True, False),
    "limitedguest": (False, True, False, True, False),
    "outsider": (False, False, False, True, False),
    "anonymous": (False, False, False, True, False),
}


@pytest.mark.parametrize("user", list(ROWS))
def test_role_row(site: Site, user: str) -> None:
    login = None if user == "anonymous" else user
    outcome = (
        pushes(site, login, f"team/{user}-pushed"),
        pulls(site, login, "team/base:1"),
        deletes(site, login, f"team/{user}-del:1"),
        pulls(site, login, "library/base:1"),
        pushes(site, login, f"library/{user}-pushed"),
    )
    assert outcome == ROWS[user]


def test_wrong_password_is_refused(site: Site) -> None:
    skopeo = tool(site, "wrong")
    result = skopeo.run(
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds=developer:not-the-password",
        site.registry.ref("team/base:1"),
    )
    assert result.returncode != 0
    assert skopeo.mentions(result, *DENIED), skopeo.describe(result)
