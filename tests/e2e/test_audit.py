"""The audit trail end to end: skopeo logs in, pushes and pulls through the proxy as named users,
and deletes a manifest through the registry API; the job service's events consumer records each
with its operator, and the repository's pull count goes up. PostgreSQL, the production default."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.e2e.conftest import Registry, Skopeo, make_skopeo
from tests.images import make_image, write_layout
from tests.support import backends
from tests.support.suite import Suite, start_suite
from wharf_shared.config import Settings
from wharf_shared.db import accounts, projects
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.passwords import hash_password
from wharf_shared.rbac import Role

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "audit-admin-password"
PASSWORD = "audit-user-password"


async def populate(settings: Settings) -> None:
    db = Database(settings.effective_database_url, pool_size=1)
    try:
        async with db.transaction() as conn:
            library = await projects.find_project(conn, "library")
            assert library is not None
            alice = await accounts.create_user(conn, "alice", hash_password(PASSWORD))
            await projects.set_member(conn, library.id, alice.id, Role.DEVELOPER)
            await accounts.create_user(conn, "bob", hash_password(PASSWORD))
    finally:
        await db.close()


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[tuple[Suite, str]]:
    with (
        backends.fresh_database("postgresql", str(tmp_path)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        suite = start_suite(
            tmp_path, database_url, redis_url, admin_password=ADMIN_PASSWORD, populate=populate
        )
        try:
            yield suite, database_url
        finally:
            suite.stop()
        for process in suite.jobservices:  # a clean SIGTERM: the batch in hand finished
            assert process.process is not None
            assert process.process.returncode == 0, process.tail()


def skopeo_for(suite: Suite, home: Path) -> Skopeo:
    return make_skopeo(Registry(suite.registries[0], "token", "postgresql", suite.data_dir, None), home)


async def audit_and_pulls(database_url: str) -> tuple[list[Any], int, int]:
    db = Database(database_url, pool_size=1)
    try:
        async with db.read() as conn:
            rows = list(await conn.execute(sa.select(t.audit_log).order_by(t.audit_log.c.op_time)))
            pulls = (
                await conn.execute(
                    sa.select(t.repository.c.pull_count).where(t.repository.c.name == "library/audited")
                )
            ).scalar_one()
            library = (
                await conn.execute(sa.select(t.project.c.id).where(t.project.c.name == "library"))
            ).scalar_one()
        return rows, int(pulls), int(library)
    finally:
        await db.close()


def test_push_pull_and_delete_are_audited_with_their_operators(
    suite: tuple[Suite, str], tmp_path: Path
) -> None:
    site, database_url = suite
    layout = tmp_path / "layout"
    digest = write_layout(layout, [make_image("audited")])
    ref = site.ref("library/audited:v1")

    alice = skopeo_for(site, tmp_path / "alice")
    alice.ok("login", "--tls-verify=false", "-u", "alice", "-p", PASSWORD, site.address)
    alice.ok("copy", "--dest-tls-verify=false", f"oci:{layout}:latest", ref)
    bob = skopeo_for(site, tmp_path / "bob")
    bob.ok(
        "copy", "--src-tls-verify=false", "--src-creds", f"bob:{PASSWORD}", ref, f"oci:{tmp_path / 'out'}:x"
    )
    admin = skopeo_for(site, tmp_path / "admin")
    admin.ok(
        "delete",
        "--tls-verify=false",
        "--creds",
        f"admin:{ADMIN_PASSWORD}",
        site.ref(f"library/audited@{digest}"),
    )

    expected = {
        ("user", "login", "alice", "alice"),
        ("artifact", "create", "library/audited:v1", "alice"),
        ("artifact", "pull", "library/audited:v1", "bob"),
        ("artifact", "delete", f"library/audited@{digest}", "admin"),
    }
    deadline = time.monotonic() + 60
    while True:
        rows, pull_count, library = asyncio.run(audit_and_pulls(database_url))
        seen = {(r.resource_type, r.operation, r.resource, r.username) for r in rows}
        if expected <= seen or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    logs = "\n".join(p.tail(20) for p in site.jobservices)
    assert expected <= seen, f"{sorted(seen)}\n{logs}"
    assert len({r.event_id for r in rows}) == len(rows)
    artifact_rows = [r for r in rows if r.resource_type == "artifact"]
    assert {r.project_id for r in artifact_rows} == {library}
    # Every manifest GET was one pull (skopeo fetches the manifest once per copy).
    assert pull_count == sum(1 for r in artifact_rows if r.operation == "pull") >= 1
