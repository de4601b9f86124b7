"""`/api/v2.0/search` on each database: projects and repositories whose names contain the text,
only where the caller may look (a private project and its repositories only for members and
system admins), in Harbor's shape."""

from __future__ import annotations

from typing import Any

from tests.service.ui.conftest import ADMIN, ALICE, ANONYMOUS, Ui, basic
from tests.service.ui.projects_support import PASSWORD, add_repository, add_users, error, set_member
from wharf_shared.rbac import Role

API = "/api/v2.0"


async def search(ui: Ui, text: str, headers: dict[str, str] = ADMIN) -> dict[str, Any]:
    resp = await ui.client.get(f"{API}/search", params={"q": text}, headers=headers)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    assert set(body) == {"project", "repository"}
    return body


def project_names(body: dict[str, Any]) -> list[str]:
    return [p["name"] for p in body["project"]]


def repository_names(body: dict[str, Any]) -> list[str]:
    return [r["repository_name"] for r in body["repository"]]


async def scene(ui: Ui) -> dict[str, int]:
    """`shop` (private, alice's) and `shopfront` (public, admin's), each with repositories."""
    ids = {
        "shop": await ui.add_project("shop", ui.alice_id),
        "shopfront": await ui.add_project("shopfront", ui.admin_id, public=True),
    }
    await add_repository(ui, "shop/cart", artifacts=2, pull_count=7)
    await add_repository(ui, "shop/tools/shopper")
    await add_repository(ui, "shopfront/web", artifacts=1, index_children=3, pull_count=2)
    await add_repository(ui, "library/shopify")
    return ids


async def test_each_caller_finds_what_they_may_see(ui: Ui) -> None:
    ids = await scene(ui)
    users = await add_users(ui, "bob", "gus")
    await set_member(ui, ids["shop"], users["gus"], Role.LIMITED_GUEST)
    everything = await search(ui, "shop")
    assert project_names(everything) == ["shop", "shopfront"]
    assert repository_names(everything) == [
        "library/shopify",
        "shop/cart",
        "shop/tools/shopper",
        "shopfront/web",
    ]
    for headers in (ALICE, basic("gus", PASSWORD)):  # the owner, and a limited guest
        found = await search(ui, "shop", headers)
        assert project_names(found) == project_names(everything)
        assert repository_names(found) == repository_names(everything)
    for headers in (basic("bob", PASSWORD), ANONYMOUS):
        found = await search(ui, "shop", headers)
        assert project_names(found) == ["shopfront"]
        assert repository_names(found) == ["library/shopify", "shopfront/web"]
    await ui.set_runtime(anonymous_access=False)
    await error(await ui.client.get(f"{API}/search?q=shop"), 401, "UNAUTHORIZED")


async def test_shapes_and_counts(ui: Ui) -> None:
    ids = await scene(ui)
    found = await search(ui, "front", ALICE)
    (project,) = found["project"]
    assert project["project_id"] == ids["shopfront"]
    assert project["metadata"] == {"public": "true"}
    assert project["repo_count"] == 1
    assert project["owner_name"] == "admin"
    assert project["current_user_role_id"] == 0
    assert found["repository"] == [
        {
            "project_id": ids["shopfront"],
            "project_name": "shopfront",
            "project_public": True,
            "repository_name": "shopfront/web",
            "pull_count": 2,
            # An index and its children are one artifact.
            "artifact_count": 1,
        }
    ]
    cart = await search(ui, "cart", ALICE)
    assert cart["project"] == []
    assert cart["repository"] == [
        {
            "project_id": ids["shop"],
            "project_name": "shop",
            "project_public": False,
            "repository_name": "shop/cart",
            "pull_count": 7,
            "artifact_count": 2,
        }
    ]
    mine = (await search(ui, "shop", ALICE))["project"][0]
    assert (mine["name"], mine["current_user_role_id"], mine["repo_count"]) == ("shop", 1, 2)


async def test_wildcards_are_literal(ui: Ui) -> None:
    await ui.add_project("a_b", ui.alice_id, public=True)
    await ui.add_project("axb", ui.alice_id, public=True)
    await add_repository(ui, "axb/c%d")
    await add_repository(ui, "a_b/cxd")
    assert project_names(await search(ui, "a_b")) == ["a_b"]
    assert repository_names(await search(ui, "c%d")) == ["axb/c%d"]
    percent = await search(ui, "%")
    assert (project_names(percent), repository_names(percent)) == ([], ["axb/c%d"])


async def test_q_is_required(ui: Ui) -> None:
    await error(await ui.client.get(f"{API}/search", headers=ALICE), 400, "BAD_REQUEST")
    await error(await ui.client.get(f"{API}/search?q=", headers=ALICE), 400, "BAD_REQUEST")
    await error(await ui.client.get(f"{API}/search?q=a%00", headers=ALICE), 400, "BAD_REQUEST")
