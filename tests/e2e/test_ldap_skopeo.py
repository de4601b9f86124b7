"""skopeo under `ldap_auth` (a real slapd over LDAPS): a directory user pushes to a private
project where their LDAP group is a developer; once the directory drops them from the group and
the group sync runs, their next push is refused, while the local admin keeps pushing. The token
service and the registry run as processes of their own, on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.e2e.conftest import Registry, make_skopeo
from tests.images import make_image, write_layout
from tests.support import backends
from tests.support.processes import registry_process, token_process
from tests.support.slapd import USERS, Slapd, group_dn, running_slapd
from tests.support.suite import init_site
from wharf_shared import runtime
from wharf_shared.auth.ldap import LdapDirectory
from wharf_shared.auth.ldap_auth import decrypted
from wharf_shared.config import Settings
from wharf_shared.db import accounts, groups, projects
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.groups import GroupType
from wharf_shared.db.types import utcnow
from wharf_shared.group_sync import sync_ldap_groups
from wharf_shared.rbac import Role
from wharf_shared.secrets import SecretBox

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "e2e-admin-password"
BOB = USERS["bob"]
DENIED = ("unauthorized", "denied", "authentication required")


async def populate(settings: Settings, slapd: Slapd) -> None:
    conf = slapd.configuration("ldaps")
    conf["ldap_search_password"] = SecretBox(settings.secret_key_bytes()).encrypt(
        conf["ldap_search_password"]
    )
    db = Database(settings.effective_database_url, pool_size=1)
    try:
        async with db.transaction() as conn:
            await runtime.store(conn, auth_mode="ldap_auth", **conf)
            admin = await accounts.find_user(conn, "admin")
            assert admin is not None
            team = await projects.create_project(conn, "team", admin.id, public=False)
            group = await groups.create_group(
                conn, groups.check_group(int(GroupType.LDAP), None, group_dn("developers"))
            )
            now = utcnow()
            await conn.execute(
                sa.insert(t.project_group_member).values(
                    project_id=team.id,
                    group_id=group.id,
                    role_id=int(Role.DEVELOPER),
                    created_at=now,
                    updated_at=now,
                )
            )
    finally:
        await db.close()


async def sync(settings: Settings) -> None:
    """One group sync run, as the job service's leader does it."""
    db = Database(settings.effective_database_url, pool_size=1)
    directory = LdapDirectory(max_threads=1)
    try:
        async with db.read() as conn:
            stored = (await runtime.load(conn, runtime.RuntimeSettings())).ldap
        config = decrypted(stored, settings.secret_key_bytes())
        report = await sync_ldap_groups(
            db, directory, config, trigger="manual", now=lambda: dt.datetime.now(dt.UTC)
        )
        assert (report.failed, report.removed) == ([], 1), report
    finally:
        directory.close()
        await db.close()


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[Slapd]:
    with running_slapd(tmp_path / "slapd") as server:
        yield server


def test_a_group_member_pushes_until_the_sync_drops_them(tmp_path: Path, slapd: Slapd) -> None:
    with (
        backends.fresh_database("postgresql", str(tmp_path)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        settings_of: list[Settings] = []

        async def seed(settings: Settings) -> None:
            settings_of.append(settings)
            await populate(settings, slapd)

        data_dir = init_site(tmp_path, database_url, redis_url, admin_password=ADMIN_PASSWORD, populate=seed)
        env = {
            "WHARF_DATA_DIR": str(data_dir),
            "WHARF_DATABASE_URL": database_url,
            "WHARF_REDIS_URL": redis_url,
        }
        token = token_process(env, tmp_path / "logs").start()
        process = registry_process(
            {**env, "WHARF_REGISTRY__AUTH": "token", "WHARF_REGISTRY__REALM": f"{token.url}/service/token"},
            tmp_path / "logs",
        )
        try:
            process.start()
            registry = Registry(process, "token", "postgresql", data_dir, None)
            layout = tmp_path / "layout"
            write_layout(layout, [make_image("ldap-e2e")])
            bob = make_skopeo(registry, tmp_path / "bob")
            bob.ok("login", "--tls-verify=false", "-u", "BOB", "-p", BOB.password, registry.address)
            copy = ("copy", "--dest-tls-verify=false", f"oci:{layout}:latest")
            bob.ok(*copy, f"docker://{registry.address}/team/app:1")

            slapd.remove_member("developers", BOB.dn)
            asyncio.run(sync(settings_of[0]))
            refused = bob.run(*copy, f"docker://{registry.address}/team/app:2")
            assert refused.returncode != 0
            assert bob.mentions(refused, *DENIED), bob.describe(refused)

            slapd.stop()  # the directory down: the local admin still pushes
            admin = make_skopeo(registry, tmp_path / "admin")
            admin.ok("login", "--tls-verify=false", "-u", "admin", "-p", ADMIN_PASSWORD, registry.address)
            admin.ok(*copy, f"docker://{registry.address}/team/app:3")
        finally:
            process.stop()
            token.stop()
