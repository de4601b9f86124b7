"""Repositories, artifacts and tags as a stranger's scripts meet them: skopeo pushes through the
proxy as a developer, curl with Basic auth reads and changes them through the same front door
(Harbor's paths, the name with slashes encoded twice), skopeo sees each change at once (no
stale cached manifest), and the job service's consumer audits each with its operator.
PostgreSQL, the production default."""

from __future__ import annotations

import asyncio
import json
import subprocess
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

ADMIN_PASSWORD = "Artifacts-admin-1"
PASSWORD = "Artifacts-user-1"
REPO = "/api/v2.0/projects/team/repositories/web%252Fapp"


async def populate(settings: Settings) -> None:
    db = Database(settings.effective_database_url, pool_size=1)
    try:
        async with db.transaction() as conn:
            admin = await accounts.find_user(conn, "admin")
            assert admin is not None
            team = await projects.create_project(conn, "team", admin.id, public=False)
            for name, role in (("dev", Role.DEVELOPER), ("keeper", Role.MAINTAINER)):
                user = await accounts.create_user(conn, name, hash_password(PASSWORD))
                await projects.set_member(conn, team.id, user.id, role)
            await accounts.create_user(conn, "stranger", hash_password(PASSWORD))
    finally:
        await db.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Suite, str]]:
    with (
        backends.fresh_database("postgresql", str(tmp_path)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        suite = start_suite(
            tmp_path,
            database_url,
            redis_url,
            admin_password=ADMIN_PASSWORD,
            ui_hosts=("127.0.0.1",),
            populate=populate,
        )
        try:
            yield suite, database_url
        finally:
            suite.stop()


def curl(suite: Suite, method: str, path: str, user: str, body: object = None) -> tuple[int, Any]:
    """`curl -s -u user:password -X method` through the proxy: (status, JSON body or None)."""
    argv = ["curl", "-s", "--noproxy", "*", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}"]
    argv += ["-X", method, "-u", f"{user}:{PASSWORD}"]
    if body is not None:
        argv += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    out = subprocess.run(
        [*argv, suite.url + path], capture_output=True, check=True, timeout=60
    ).stdout.decode()
    text, _, status = out.rpartition("\n")
    return int(status), (json.loads(text) if text.strip() else None)


def skopeo_for(suite: Suite, home: Path) -> Skopeo:
    return make_skopeo(Registry(suite.registries[0], "token", "postgresql", suite.data_dir, None), home)


def inspect(skopeo: Skopeo, suite: Suite, reference: str) -> subprocess.CompletedProcess[bytes]:
    return skopeo.run(
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        f"keeper:{PASSWORD}",
        suite.ref(f"team/web/app:{reference}"),
    )


async def audit_rows(database_url: str) -> set[tuple[str, str, str, str]]:
    db = Database(database_url, pool_size=1)
    try:
        async with db.read() as conn:
            rows = await conn.execute(sa.select(t.audit_log))
            return {(r.resource_type, r.operation, r.resource, r.username) for r in rows}
    finally:
        await db.close()


def test_a_developer_pushes_a_maintainer_cleans_up(site: tuple[Suite, str], tmp_path: Path) -> None:
    suite, database_url = site
    layout = tmp_path / "layout"
    digest = write_layout(layout, [make_image("ui-artifacts")])
    dev = skopeo_for(suite, tmp_path / "dev")
    dev.ok(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"dev:{PASSWORD}",
        f"oci:{layout}:latest",
        suite.ref("team/web/app:v1"),
    )
    keeper = skopeo_for(suite, tmp_path / "keeper")

    status, repos = curl(suite, "GET", "/api/v2.0/projects/team/repositories", "dev")
    assert status == 200
    assert [r["name"] for r in repos] == ["team/web/app"]
    assert repos[0]["artifact_count"] == 1
    assert curl(suite, "GET", "/api/v2.0/projects/team/repositories", "stranger")[0] == 403
    status, artifact = curl(suite, "GET", f"{REPO}/artifacts/v1", "dev")
    assert status == 200
    assert artifact["digest"] == digest
    assert [tag["name"] for tag in artifact["tags"]] == ["v1"]

    # Retag as the developer; skopeo pulls the new tag at once.
    assert curl(suite, "POST", f"{REPO}/artifacts/v1/tags", "dev", {"name": "v2"})[0] == 201
    assert curl(suite, "POST", f"{REPO}/artifacts/v1/tags", "dev", {"name": "v2"})[0] == 409
    assert inspect(keeper, suite, "v2").returncode == 0
    # Developers do not delete; maintainers do, and the registry stops serving the tag at once.
    status, body = curl(suite, "DELETE", f"{REPO}/artifacts/v1/tags/v2", "dev")
    assert (status, body["errors"][0]["code"]) == (403, "FORBIDDEN")
    assert curl(suite, "DELETE", f"{REPO}/artifacts/v1/tags/v2", "keeper")[0] == 200
    gone = inspect(keeper, suite, "v2")
    assert gone.returncode != 0
    assert keeper.mentions(gone, "manifest unknown", "not found"), keeper.describe(gone)
    assert inspect(keeper, suite, "v1").returncode == 0

    # The whole repository goes in one request.
    assert curl(suite, "DELETE", REPO, "keeper")[0] == 200
    assert curl(suite, "GET", REPO, "keeper")[0] == 404
    assert inspect(keeper, suite, "v1").returncode != 0

    expected = {
        ("artifact", "create", "team/web/app:v1", "dev"),
        ("tag", "create", "team/web/app:v2", "dev"),
        ("tag", "delete", "team/web/app:v2", "keeper"),
        ("repository", "delete", "team/web/app", "keeper"),
    }
    deadline = time.monotonic() + 60
    seen = asyncio.run(audit_rows(database_url))
    while not expected <= seen and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = asyncio.run(audit_rows(database_url))
    assert expected <= seen, f"{sorted(seen)}\n{suite.logs()}"
