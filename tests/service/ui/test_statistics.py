"""`/api/v2.0/statistics` for each role, on each database: public projects and repositories
for everyone, private ones a member may see, everything and the storage for system admins."""

from __future__ import annotations

from typing import Any

import pytest

from tests.service.ui.conftest import ADMIN, ALICE, ANONYMOUS, Ui, basic
from wharf_shared import rbac
from wharf_shared.db import projects
from wharf_shared.db import tables as t
from wharf_shared.db.types import utcnow

URL = "/api/v2.0/statistics"
PASSWORD = "Member-secret-1"
ROLES = {
    "projectAdmin": rbac.Role.PROJECT_ADMIN,
    "maintainer": rbac.Role.MAINTAINER,
    "developer": rbac.Role.DEVELOPER,
    "guest": rbac.Role.GUEST,
    "limitedGuest": rbac.Role.LIMITED_GUEST,
}
# Projects (public?) and their repositories. `library` (public, empty) comes from `wharf init`.
# `priv.old`, `priv-x` and `privy` start like `priv` and must not count as it; `a_c` holds a
# LIKE wildcard that must not match `abc`.
LAYOUT = {
    "pub": (True, ["pub/a", "pub/b/c"]),
    "priv": (False, ["priv/x", "priv/y", "priv/z/deep"]),
    "priv.old": (False, ["priv.old/r"]),
    "priv-x": (False, ["priv-x/r"]),
    "privy": (False, []),
    "abc": (False, ["abc/r"]),
    "a_c": (False, []),
}
# Stored objects: two blobs, and manifests held by several repositories; `m2` was also
# uploaded as a blob. Each digest counts once: 100 + 200 + 10 + 20.
BLOBS = {"sha256:b1": 100, "sha256:b2": 200, "sha256:m2": 20}
MANIFESTS = [("pub/a", "sha256:m1", 10), ("pub/b/c", "sha256:m1", 10), ("priv/x", "sha256:m2", 20)]
STORAGE = 330


async def populate(ui: Ui) -> dict[str, dict[str, str]]:
    """The layout, and a member of `priv` for each role (plus alice, a member of nothing)."""
    headers: dict[str, dict[str, str]] = {"non-member": ALICE}
    role_users = {role: await ui.add_user(role.lower(), PASSWORD) for role in ROLES}
    headers.update({role: basic(role.lower(), PASSWORD) for role in ROLES})

    async def go(conn: Any) -> None:
        now = utcnow()
        repo_ids = {}
        for name, (public, repos) in LAYOUT.items():
            project = await projects.create_project(conn, name, ui.admin_id, public=public)
            if name == "priv":
                for role, user_id in role_users.items():
                    await projects.set_member(conn, project.id, user_id, ROLES[role])
            for repo in repos:
                result = await conn.execute(
                    t.repository.insert().values(name=repo, created_at=now, updated_at=now)
                )
                repo_ids[repo] = result.inserted_primary_key[0]
        for digest, size in BLOBS.items():
            await conn.execute(t.blob.insert().values(digest=digest, size=size, created_at=now))
        for repo, digest, size in MANIFESTS:
            await conn.execute(
                t.manifest.insert().values(
                    repository_id=repo_ids[repo],
                    digest=digest,
                    media_type="application/vnd.oci.image.manifest.v1+json",
                    size=size,
                    created_at=now,
                )
            )

    await ui.db_call(go)
    return headers


async def test_a_system_admin_counts_everything_and_the_storage(ui: Ui) -> None:
    await populate(ui)
    resp = await ui.client.get(URL, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {
        "public_project_count": 2,  # library, pub
        "public_repo_count": 2,
        "private_project_count": 6,
        "private_repo_count": 6,
        "total_project_count": 8,
        "total_repo_count": 8,
        "total_storage_consumption": STORAGE,
    }


@pytest.mark.parametrize("role", [*ROLES, "non-member"])
async def test_others_count_public_and_their_own_private_projects(ui: Ui, role: str) -> None:
    headers = await populate(ui)
    resp = await ui.client.get(URL, headers=headers[role])
    assert resp.status == 200, await resp.text()
    private_projects, private_repos = (0, 0) if role == "non-member" else (1, 3)
    assert await resp.json() == {
        "public_project_count": 2,
        "public_repo_count": 2,
        "private_project_count": private_projects,
        "private_repo_count": private_repos,
        "total_project_count": 2 + private_projects,
        "total_repo_count": 2 + private_repos,
        "total_storage_consumption": 0,  # Harbor shows it to system admins only
    }


async def test_an_empty_registry_counts_zero(ui: Ui) -> None:
    body = await (await ui.client.get(URL, headers=ADMIN)).json()
    assert body["total_storage_consumption"] == 0
    assert body["total_repo_count"] == 0
    assert body["public_project_count"] == 1  # library


@pytest.mark.parametrize("headers", [ANONYMOUS, basic("alice", "wrong-password")])
async def test_anonymous_and_wrong_credentials_are_401(ui: Ui, headers: dict[str, str]) -> None:
    resp = await ui.client.get(URL, headers=headers)
    assert resp.status == 401
    assert (await resp.json())["errors"][0]["code"] == "UNAUTHORIZED"
