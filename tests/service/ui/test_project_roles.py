"""Who may do what to a project and its members: every caller (system admin, each of Harbor's
five project roles, a signed-in non-member, anonymous) against every project and member
operation, on a private and on a public project, on each database. The expected statuses are
written out by hand from Harbor's role matrix (not derived from wharf_shared.rbac), with
Harbor's code for each refusal."""

from __future__ import annotations

from typing import Any

import pytest

from tests.service.ui.conftest import ADMIN, Ui
from tests.service.ui.projects_support import CALLERS, add_repository, add_users, cast

API = "/api/v2.0"
CODES = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 412: "PRECONDITION"}

# (operation, method, path under /projects/{p}, body); `{id}` is the project's id, `{name}` its
# name, `{member}` the developer's member id, `{guest}` the guest's, `{extra}` a user added
# and then removed again by those who may.
OPERATIONS: list[tuple[str, str, str, Any]] = [
    ("get", "GET", "/{id}", None),
    ("get-by-name", "GET", "/{name}", None),
    ("summary", "GET", "/{id}/summary", None),
    ("deletable", "GET", "/{id}/_deletable", None),
    ("list-members", "GET", "/{id}/members", None),
    ("get-member", "GET", "/{id}/members/{member}", None),
    ("update", "PUT", "/{id}", {"metadata": {"public": "keep"}}),
    ("add-member", "POST", "/{id}/members", {"role_id": 3, "member_user": {"username": "extra"}}),
    ("change-role", "PUT", "/{id}/members/{guest}", {"role_id": 3}),
    ("remove-member", "DELETE", "/{id}/members/{extra}", None),
    ("delete", "DELETE", "/{id}", None),  # 412 where allowed: the project holds a repository
]

_ADMIN = [200, 200, 200, 200, 200, 200, 200, 201, 200, 200, 412]
_READER = [200, 200, 200, 403, 200, 200, 403, 403, 403, 403, 403]  # maintainer, developer, guest
PRIVATE = {
    "sysadmin": _ADMIN,
    "projectAdmin": _ADMIN,
    "maintainer": _READER,
    "developer": _READER,
    "guest": _READER,
    "limitedGuest": [200, 200, 200, 403, 403, 403, 403, 403, 403, 403, 403],
    "nonMember": [403] * 11,
    "anonymous": [401] * 11,
}
# A public project lets everyone read it (not its members), anonymous callers included.
PUBLIC = {
    **PRIVATE,
    "nonMember": [200, 200, 200, 403, 403, 403, 403, 403, 403, 403, 403],
    "anonymous": [200, 200, 200, 401, 401, 401, 401, 401, 401, 401, 401],
}


async def members_of(ui: Ui, project_id: int) -> list[tuple[str, str]]:
    resp = await ui.client.get(f"{API}/projects/{project_id}/members?page_size=100", headers=ADMIN)
    return sorted((m["entity_name"], m["role_name"]) for m in await resp.json())


@pytest.mark.parametrize("visibility", ["private", "public"])
@pytest.mark.parametrize("caller", CALLERS)
async def test_every_operation_for_every_caller(ui: Ui, caller: str, visibility: str) -> None:
    public = visibility == "public"
    project = await cast(ui, "secret", public=public)
    await add_repository(ui, "secret/app")
    extra = (await add_users(ui, "extra"))["extra"]
    before = await members_of(ui, project.project_id)
    public_text = "true" if public else "false"
    values = {
        "id": project.project_id,
        "name": project.name,
        "member": project.user_ids["developer"],
        "guest": project.user_ids["guest"],
        "extra": extra,
    }
    expected = (PUBLIC if public else PRIVATE)[caller]
    got = {}
    for operation, method, path, body in OPERATIONS:
        if body is not None and "metadata" in body:
            body = {"metadata": {"public": public_text}}  # a change to nothing
        headers = project.headers[caller]
        if path == "/{name}":
            headers = {**headers, "X-Is-Resource-Name": "true"}
        resp = await ui.client.request(
            method, API + "/projects" + path.format(**values), json=body, headers=headers
        )
        got[operation] = resp.status
        if resp.status >= 400:
            assert (await resp.json())["errors"][0]["code"] == CODES[resp.status], operation
    assert got == dict(zip([op[0] for op in OPERATIONS], expected, strict=True))
    # Refused or undone, nothing changed: the same members, the project still there.
    assert await members_of(ui, project.project_id) == before
    resp = await ui.client.get(f"{API}/projects/{project.project_id}", headers=ADMIN)
    assert (await resp.json())["metadata"] == {"public": public_text}


@pytest.mark.parametrize("caller", CALLERS)
async def test_a_private_project_is_listed_and_found_only_for_members(ui: Ui, caller: str) -> None:
    project = await cast(ui, "secret")
    await add_repository(ui, "secret/app")
    headers = project.headers[caller]
    sees = caller not in ("nonMember", "anonymous")
    resp = await ui.client.get(f"{API}/projects?name=secret", headers=headers)
    assert resp.status == 200
    assert [p["name"] for p in await resp.json()] == (["secret"] if sees else [])
    assert resp.headers["X-Total-Count"] == ("1" if sees else "0")
    found = await (await ui.client.get(f"{API}/search?q=secret", headers=headers)).json()
    assert [p["name"] for p in found["project"]] == (["secret"] if sees else [])
    assert [r["repository_name"] for r in found["repository"]] == (["secret/app"] if sees else [])


async def test_without_anonymous_access_anonymous_callers_see_nothing(ui: Ui) -> None:
    project = await cast(ui, "open", public=True)
    await ui.set_runtime(anonymous_access=False)
    for path in (f"/projects/{project.project_id}", f"/projects/{project.project_id}/summary", "/projects"):
        resp = await ui.client.get(API + path)
        assert resp.status == 401, path
        assert (await resp.json())["errors"][0]["code"] == "UNAUTHORIZED"
    # Signed-in non-members still read a public project.
    resp = await ui.client.get(f"{API}/projects/{project.project_id}", headers=project.headers["nonMember"])
    assert resp.status == 200


def test_the_table_covers_every_caller_and_operation() -> None:
    assert set(PRIVATE) == set(CALLERS) == set(PUBLIC)
    assert all(len(row) == len(OPERATIONS) for row in (*PRIVATE.values(), *PUBLIC.values()))
