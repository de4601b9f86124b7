"""A project's portal pages on each database, rendered by the real page handlers: the
repositories of a project holding 10,000 (first page, a middle one, the last, a search; the
totals), what each role is offered and refused, and the settings' explanation of Harbor's 412
rule. Correctness only: `tests/bench/portal.py` times the pages."""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

import pytest
import sqlalchemy as sa

from tests.service.ui.conftest import ADMIN_PASSWORD, ALICE_PASSWORD, Ui
from wharf_shared.db import groups
from wharf_shared.db import projects as project_rows
from wharf_shared.db import tables as t
from wharf_shared.rbac import Role

BIG = "big"
COUNT = 10_000
_BATCH = 1_000
_NAME_CELL = re.compile(r'<td data-label="Name"><a href="([^"]*)">([^<]*)</a>')


async def seed_repositories(ui: Ui, project: str, names: list[str]) -> None:
    """Repository rows in bulk, as a push would leave them (without artifacts)."""
    now = dt.datetime.now(dt.UTC)

    async def go(conn: Any) -> None:
        for start in range(0, len(names), _BATCH):
            rows = [
                {"name": f"{project}/{n}", "created_at": now, "updated_at": now}
                for n in names[start : start + _BATCH]
            ]
            await conn.execute(sa.insert(t.repository), rows)

    await ui.db_call(go)


async def session_cookie(ui: Ui, username: str, password: str) -> dict[str, str]:
    resp = await ui.client.post("/c/login", data={"principal": username, "password": password})
    assert resp.status == 200, await resp.text()
    ui.client.session.cookie_jar.clear()  # each request names its cookie
    return {"Cookie": f"sid={resp.cookies['sid'].value}"}


async def get_page(ui: Ui, path: str, cookie: dict[str, str], status: int = 200, **params: str) -> str:
    resp = await ui.client.get(path, headers=cookie, params=params, allow_redirects=False)
    text = await resp.text()
    assert resp.status == status, (path, params, resp.status, text[:2000])
    return text


def listed(text: str) -> list[str]:
    return [html.unescape(name) for _, name in _NAME_CELL.findall(text)]


@pytest.fixture
async def big(ui: Ui) -> int:
    project_id = await ui.add_project(BIG, ui.admin_id)
    await seed_repositories(ui, BIG, [f"app-{i:05d}" for i in range(COUNT)])
    # Neighbours whose names sort next to the range `big/`…`big0`: none of them is big's.
    for other in ("big-x", "big.y", "bigz"):
        await ui.add_project(other, ui.admin_id)
        await seed_repositories(ui, other, ["app-00000"])
    return project_id


async def test_the_repositories_of_a_project_of_ten_thousand(ui: Ui, big: int) -> None:
    admin = await session_cookie(ui, "admin", ADMIN_PASSWORD)
    path = f"/harbor/projects/{BIG}/repositories"
    first = await get_page(ui, path, admin)
    assert listed(first) == [f"app-{i:05d}" for i in range(15)]
    assert "10000 in all · page 1 of 667" in first
    assert f'href="/harbor/projects/{BIG}/repositories/app-00000"' in first
    assert "docker pull wharf.example.test/big/app-00000:latest" in first
    assert 'aria-current="page">Repositories</a>' in first

    middle = await get_page(ui, path, admin, page="334")
    assert listed(middle) == [f"app-{i:05d}" for i in range(333 * 15, 334 * 15)]

    last = await get_page(ui, path, admin, page="667")
    assert listed(last) == [f"app-{i:05d}" for i in range(9990, COUNT)]
    assert "page 667 of 667" in last

    found = await get_page(ui, path, admin, name="app-0999")
    assert listed(found) == [f"app-{i:05d}" for i in range(9990, COUNT)]
    assert "10 in all" in found

    found = await get_page(ui, path, admin, name="app-05", page="2", page_size="100")
    assert listed(found) == [f"app-{i:05d}" for i in range(5100, 5200)]
    assert "1000 in all · page 2 of 10" in found

    newest = await get_page(ui, path, admin, sort="-creation_time", page_size="5")
    assert len(listed(newest)) == 5
    assert "No repository matches." in await get_page(ui, path, admin, name="nothing-like-it")


async def test_a_repository_with_slashes_is_linked_and_deleted_encoded(ui: Ui) -> None:
    await ui.add_project("team", ui.admin_id)
    await seed_repositories(ui, "team", ["web/app"])
    admin = await session_cookie(ui, "admin", ADMIN_PASSWORD)
    text = await get_page(ui, "/harbor/projects/team/repositories", admin)
    assert listed(text) == ["web/app"]
    assert 'href="/harbor/projects/team/repositories/web%2Fapp"' in text
    assert 'data-api="/api/v2.0/projects/team/repositories/web%252Fapp"' in text


async def test_what_a_guest_is_offered_and_refused(ui: Ui) -> None:
    project_id = await ui.add_project("shared", ui.admin_id)
    await seed_repositories(ui, "shared", ["app"])

    async def guest(conn: Any) -> None:
        await project_rows.set_member(conn, project_id, ui.alice_id, Role.GUEST)

    await ui.db_call(guest)
    alice = await session_cookie(ui, "alice", ALICE_PASSWORD)
    base = "/harbor/projects/shared"
    repos = await get_page(ui, f"{base}/repositories", alice)
    assert listed(repos) == ["app"]
    assert 'data-method="DELETE"' not in repos
    nav = repos[repos.index('<nav class="tabs"') :]
    tabs = re.findall(r'<li><a href="/harbor/projects/shared/(\w+)"', nav[: nav.index("</nav>")])
    assert tabs == ["repositories", "members", "settings"]  # no Logs for a guest
    assert "Guest" in repos

    members = await get_page(ui, f"{base}/members", alice)
    assert "alice" in members
    assert "admin" in members
    assert "data-api" not in members  # nothing to add, change or remove
    settings = await get_page(ui, f"{base}/settings", alice)
    assert "data-api" not in settings
    assert "Delete the project" not in settings
    await get_page(ui, f"{base}/logs", alice, status=403)


async def test_who_sees_which_project(ui: Ui) -> None:
    await ui.add_project("secret", ui.admin_id)
    alice = await session_cookie(ui, "alice", ALICE_PASSWORD)
    admin = await session_cookie(ui, "admin", ADMIN_PASSWORD)
    # A private project of someone else: as the API, 403 for a signed-in non-member.
    for tab in ("repositories", "members", "logs", "settings"):
        await get_page(ui, f"/harbor/projects/secret/{tab}", alice, status=403)
    await get_page(ui, "/harbor/projects/no-such-one/repositories", admin, status=404)
    await get_page(ui, "/harbor/projects/no-such-one/repositories", alice, status=403)
    # Nobody signed in: to the sign-in page, and back after.
    resp = await ui.client.get("/harbor/projects/secret/members", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/harbor/sign-in?next=")
    resp = await ui.client.get("/harbor/projects/secret", headers=admin, allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, "/harbor/projects/secret/repositories")


async def test_the_settings_explain_harbors_412_rule(ui: Ui) -> None:
    await ui.add_project("full", ui.admin_id)
    await seed_repositories(ui, "full", ["a", "b", "c"])
    empty_id = await ui.add_project("empty", ui.admin_id)
    admin = await session_cookie(ui, "admin", ADMIN_PASSWORD)
    full = await get_page(ui, "/harbor/projects/full/settings", admin)
    assert "the project holds 3 repositories: delete them first" in full
    assert "Delete project full" not in full
    empty = await get_page(ui, "/harbor/projects/empty/settings", admin)
    assert "Delete project empty" in empty
    assert f'data-method="DELETE" data-api="/api/v2.0/projects/{empty_id}"' in empty
    assert 'data-then="/harbor/projects"' in empty


async def test_the_log_filters_are_the_apis_terms(ui: Ui) -> None:
    project_id = await ui.add_project("logged", ui.admin_id)
    now = dt.datetime.now(dt.UTC)

    async def rows(conn: Any) -> None:
        await conn.execute(
            sa.insert(t.audit_log),
            [
                {
                    "event_id": f"e{i}",
                    "project_id": project_id,
                    "resource_type": "artifact",
                    "resource": f"logged/app{i}:v1",
                    "operation": op,
                    "username": user,
                    "op_time": now - dt.timedelta(minutes=i),
                }
                for i, (op, user) in enumerate([("create", "admin"), ("pull", "alice"), ("delete", "admin")])
            ],
        )

    await ui.db_call(rows)
    admin = await session_cookie(ui, "admin", ADMIN_PASSWORD)
    path = "/harbor/projects/logged/logs"
    assert "3 in all" in await get_page(ui, path, admin)
    text = await get_page(ui, path, admin, operation="pull")
    assert "1 in all" in text
    assert "logged/app1:v1" in text
    assert "logged/app0:v1" not in text
    text = await get_page(ui, path, admin, username="adm", resource="app2")
    assert "1 in all" in text
    assert "logged/app2:v1" in text
    await get_page(ui, path, admin, status=400, q="nonsense=1")


async def test_the_projects_list_pages_and_offers_delete_for_empty_projects_only(ui: Ui) -> None:
    for i in range(20):
        await ui.add_project(f"p{i:02d}", ui.admin_id)
    await seed_repositories(ui, "p00", ["app"])
    admin = await session_cookie(ui, "admin", ADMIN_PASSWORD)
    first = await get_page(ui, "/harbor/projects", admin)
    # `library` too; the pager's links render (they read query_with).
    assert "21 in all · page 1 of 2" in first
    assert 'href="/harbor/projects?page_size=15&amp;page=2" rel="next"' in first
    assert 'aria-label="Delete project p00"' not in first
    assert "Not deletable yet" in first
    assert 'aria-label="Delete project p01"' in first
    second = await get_page(ui, "/harbor/projects", admin, page="2", public="false")
    assert "page 2 of 2" in second
    assert 'aria-label="Delete project p19"' in second


async def test_a_group_member_on_the_members_page(ui: Ui) -> None:
    project_id = await ui.add_project("crew", ui.admin_id)

    async def group_maintainers(conn: Any) -> int:
        (group_id,) = await groups.replace_memberships(conn, ui.alice_id, groups.GroupType.OIDC, ["builders"])
        now = dt.datetime.now(dt.UTC)
        await conn.execute(
            sa.insert(t.project_group_member).values(
                project_id=project_id,
                group_id=group_id,
                role_id=int(Role.MAINTAINER),
                created_at=now,
                updated_at=now,
            )
        )
        return group_id

    group_id: int = await ui.db_call(group_maintainers)
    # alice reaches the private project through her group only, and sees its role.
    alice = await session_cookie(ui, "alice", ALICE_PASSWORD)
    assert "Maintainer" in await get_page(ui, "/harbor/projects/crew/repositories", alice)
    admin = await session_cookie(ui, "admin", ADMIN_PASSWORD)
    members = await get_page(ui, "/harbor/projects/crew/members", admin)
    assert 'builders <span class="hint">(group)</span>' in members
    # The forms name the group member by its member id (10^15 + the group's id).
    assert f'/api/v2.0/projects/{project_id}/members/{10**15 + group_id}"' in members
