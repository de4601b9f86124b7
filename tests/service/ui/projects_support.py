"""Rows and callers for the project, member and search tests: users in every role of a project,
repositories (with manifests) written straight to the tables as the registry would."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from tests.service.ui.conftest import ADMIN, ANONYMOUS, Ui, basic
from wharf_shared.db import accounts, projects
from wharf_shared.db import tables as t
from wharf_shared.db.types import utcnow
from wharf_shared.passwords import hash_password
from wharf_shared.rbac import Role

PASSWORD = "Member-secret-1"

# Each role of a project, by Harbor's name, and the user that holds it in `cast`.
ROLE_USERS = {
    "projectAdmin": ("pat", Role.PROJECT_ADMIN),
    "maintainer": ("mona", Role.MAINTAINER),
    "developer": ("dev", Role.DEVELOPER),
    "guest": ("gus", Role.GUEST),
    "limitedGuest": ("lim", Role.LIMITED_GUEST),
}
OUTSIDER = "olga"  # signed in, member of nothing
CALLERS = ("sysadmin", *ROLE_USERS, "nonMember", "anonymous")


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)


async def error(resp: Any, status: int, code: str) -> str:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["errors"][0]["code"] == code
    message: str = body["errors"][0]["message"]
    assert message
    return message


async def add_users(ui: Ui, *names: str) -> dict[str, int]:
    async def go(conn: Any) -> dict[str, int]:
        return {name: (await accounts.create_user(conn, name, password_hash())).id for name in names}

    result: dict[str, int] = await ui.db_call(go)
    return result


async def set_member(ui: Ui, project_id: int, user_id: int, role: Role) -> None:
    await ui.db_call(lambda conn: projects.set_member(conn, project_id, user_id, role))


async def add_repository(
    ui: Ui, name: str, *, artifacts: int = 0, index_children: int = 0, pull_count: int = 0
) -> int:
    """A repository with `artifacts` manifests, the first of which (when `index_children`) is an
    index over that many more manifests."""

    async def go(conn: Any) -> int:
        now = utcnow()
        result = await conn.execute(
            t.repository.insert().values(name=name, created_at=now, updated_at=now, pull_count=pull_count)
        )
        repository_id = int(result.inserted_primary_key[0])
        ids = []
        for i in range(artifacts + index_children):
            inserted = await conn.execute(
                t.manifest.insert().values(
                    repository_id=repository_id,
                    digest=f"sha256:{repository_id:032x}{i:032x}",
                    media_type="application/vnd.oci.image.manifest.v1+json",
                    size=100,
                    created_at=now,
                )
            )
            ids.append(int(inserted.inserted_primary_key[0]))
        for child in ids[artifacts:]:
            await conn.execute(t.manifest_child.insert().values(parent_id=ids[0], child_id=child))
        return repository_id

    result: int = await ui.db_call(go)
    return result


@dataclass
class Cast:
    """A project with a user in each role, a user in none, and the headers to call as each."""

    project_id: int
    name: str
    user_ids: dict[str, int] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)


async def cast(ui: Ui, name: str, *, public: bool = False) -> Cast:
    """`name` owned by the projectAdmin user, with every role filled. Users are made once per
    test (the first call) and reused by later calls."""
    existing = await ui.db_call(lambda conn: accounts.find_user(conn, OUTSIDER))
    if existing is None:
        ids = await add_users(ui, *(user for user, _role in ROLE_USERS.values()), OUTSIDER)
    else:

        async def lookup(conn: Any) -> dict[str, int]:
            found = {}
            for user in [*(u for u, _r in ROLE_USERS.values()), OUTSIDER]:
                row = await accounts.find_user(conn, user)
                assert row is not None
                found[user] = row.id
            return found

        ids = await ui.db_call(lookup)
    owner = ids[ROLE_USERS["projectAdmin"][0]]
    project_id = await ui.add_project(name, owner, public=public)
    for user, role in ROLE_USERS.values():
        await set_member(ui, project_id, ids[user], role)
    result = Cast(project_id, name)
    for caller, (user, _role) in ROLE_USERS.items():
        result.user_ids[caller] = ids[user]
        result.headers[caller] = basic(user, PASSWORD)
    result.user_ids["nonMember"] = ids[OUTSIDER]
    result.headers["nonMember"] = basic(OUTSIDER, PASSWORD)
    result.user_ids["sysadmin"] = ui.admin_id
    result.headers["sysadmin"] = ADMIN
    result.headers["anonymous"] = ANONYMOUS
    return result
