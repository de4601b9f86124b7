"""Content for the ui's repository and artifact tests, pushed the real way: through the registry
app in-process (auth none) on the ui's database, Redis and data directory, so the metadata rows
are exactly what a `docker push` leaves. Also the members of each role, and the role table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.service.registry.conftest import registry_settings
from tests.service.ui.conftest import ADMIN, ALICE, ANONYMOUS, Ui, basic
from tests.support.oci import V2
from wharf_registry.app import create_app as create_registry
from wharf_shared.db import projects
from wharf_shared.rbac import Role

PASSWORD = "Member-secret-1"

# Who calls, and their role in the private project `team` (None: not a member).
ROLES: dict[str, Role | None] = {
    "project_admin": Role.PROJECT_ADMIN,
    "maintainer": Role.MAINTAINER,
    "developer": Role.DEVELOPER,
    "guest": Role.GUEST,
    "limited_guest": Role.LIMITED_GUEST,
    "outsider": None,
}
CALLERS = ["admin", *ROLES, "anonymous"]


@dataclass
class Content:
    ui: Ui
    registry: TestClient  # type: ignore[type-arg]
    v2: V2
    team_id: int

    def headers(self, caller: str) -> dict[str, str]:
        if caller == "admin":
            return ADMIN
        if caller == "anonymous":
            return ANONYMOUS
        if caller == "alice":
            return ALICE
        return basic(caller.replace("_", ""), PASSWORD)

    async def member(self, username: str, role: Role) -> None:
        user_id = await self.ui.add_user(username, PASSWORD)

        async def go(conn: Any) -> None:
            await projects.set_member(conn, self.team_id, user_id, role)

        await self.ui.db_call(go)


@pytest.fixture
async def content(ui: Ui, aiohttp_client: Any, tmp_path: Any) -> Content:
    """The ui, a registry beside it, the private project `team` with a member of every role
    (users named after their role without underscores) and the public project `library`."""
    settings = registry_settings(tmp_path, ui.settings.database_url, ui.settings.redis_url)
    registry = await aiohttp_client(create_registry(settings))
    team_id = await ui.add_project("team", ui.admin_id)  # `library` (public) is there from the start
    found = Content(ui, registry, V2(registry), team_id)
    for name, role in ROLES.items():
        if role is not None:
            await found.member(name.replace("_", ""), role)
        else:
            await ui.add_user(name, PASSWORD)
    return found


async def error(resp: Any, status: int, code: str) -> str:
    assert resp.status == status, (resp.status, await resp.text())
    body = await resp.json()
    assert body["errors"][0]["code"] == code, body
    message: str = body["errors"][0]["message"]
    assert message
    return message


def refusal(caller: str) -> tuple[int, str]:
    """What Harbor answers a caller without the permission: 401 anonymous, else 403."""
    return (401, "UNAUTHORIZED") if caller == "anonymous" else (403, "FORBIDDEN")
