"""`/api/v2.0/repositories` and `/projects/{p}/repositories…` on each database: lists with q, sort
and pages, names with slashes encoded once or twice, the description, and deletion in one
transaction that also drops what the registry cached; every role, every refusal with Harbor's
code and status."""

# ruff: noqa: F811  (the `content` fixture is imported from its module, then named by the tests)

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from tests.service.ui.conftest import ADMIN, ALICE, ANONYMOUS
from tests.service.ui.content import CALLERS, Content, content, error, refusal  # noqa: F401
from tests.support.oci import error_code
from wharf_shared.db import tables as t

API = "/api/v2.0"
TEAM = f"{API}/projects/team/repositories"

# Who may do what to a repository of the private project `team` (Harbor's matrix).
MAY_READ = {"admin", "project_admin", "maintainer", "developer", "guest", "limited_guest"}
MAY_UPDATE = {"admin", "project_admin", "maintainer", "developer"}
MAY_DELETE = {"admin", "project_admin", "maintainer"}


async def push_repos(content: Content, *names: str) -> dict[str, str]:
    """Push one tagged image to each repository; their digests by name."""
    return {name: (await content.v2.push_image(name, "v1", seed=name))[0] for name in names}


# -- lists ---------------------------------------------------------------------------------------


async def test_a_projects_repositories_in_harbors_shape(content: Content) -> None:
    await push_repos(content, "team/app", "team/web/api", "team/a/b/c", "library/other", "teams/x")
    resp = await content.ui.client.get(TEAM, headers=ADMIN, params={"sort": "name"})
    assert resp.status == 200, await resp.text()
    assert resp.headers["X-Total-Count"] == "3"
    assert "Link" not in resp.headers
    body = await resp.json()
    assert [r["name"] for r in body] == ["team/a/b/c", "team/app", "team/web/api"]
    first = body[0]
    assert set(first) == {
        "id",
        "project_id",
        "name",
        "description",
        "artifact_count",
        "pull_count",
        "creation_time",
        "update_time",
    }
    assert first["project_id"] == content.team_id
    assert (first["artifact_count"], first["pull_count"], first["description"]) == (1, 0, "")
    assert first["creation_time"].endswith("Z")
    assert first["update_time"].endswith("Z")


async def test_repository_lists_take_q_sort_and_pages(content: Content) -> None:
    await push_repos(content, *(f"team/app{i}" for i in range(5)), "team/web")
    resp = await content.ui.client.get(TEAM, headers=ADMIN, params={"q": "name=~app", "sort": "-name"})
    assert [r["name"] for r in await resp.json()] == [f"team/app{i}" for i in (4, 3, 2, 1, 0)]
    # Newest first by default (Harbor's order).
    resp = await content.ui.client.get(TEAM, headers=ADMIN)
    assert (await resp.json())[0]["name"] == "team/web"
    resp = await content.ui.client.get(
        TEAM, headers=ADMIN, params={"sort": "name", "page": "2", "page_size": "2"}
    )
    assert [r["name"] for r in await resp.json()] == ["team/app2", "team/app3"]
    assert resp.headers["X-Total-Count"] == "6"
    link = resp.headers["Link"]
    assert '?sort=name&page_size=2&page=1>; rel="prev"' in link
    assert '?sort=name&page_size=2&page=3>; rel="next"' in link
    assert link.startswith("</api/v2.0/projects/team/repositories?")
    resp = await content.ui.client.get(TEAM, headers=ADMIN, params={"q": "name=team/web"})
    assert [r["name"] for r in await resp.json()] == ["team/web"]


@pytest.mark.parametrize(
    "params",
    [{"q": "nope=1"}, {"sort": "size"}, {"page": "0"}, {"page_size": "101"}, {"q": "creation_time=~x"}],
)
async def test_bad_list_parameters_are_400(content: Content, params: dict[str, str]) -> None:
    await error(await content.ui.client.get(TEAM, headers=ADMIN, params=params), 400, "BAD_REQUEST")
    await error(
        await content.ui.client.get(f"{API}/repositories", headers=ADMIN, params=params), 400, "BAD_REQUEST"
    )


@pytest.mark.parametrize("caller", CALLERS)
async def test_who_lists_a_private_projects_repositories(content: Content, caller: str) -> None:
    await push_repos(content, "team/app")
    resp = await content.ui.client.get(TEAM, headers=content.headers(caller))
    if caller in MAY_READ:
        assert resp.status == 200
        assert [r["name"] for r in await resp.json()] == ["team/app"]
    else:
        await error(resp, *refusal(caller))


@pytest.mark.parametrize("caller", ["outsider", "anonymous"])
async def test_a_public_projects_repositories_are_for_everyone(content: Content, caller: str) -> None:
    await push_repos(content, "library/app")
    resp = await content.ui.client.get(
        f"{API}/projects/library/repositories", headers=content.headers(caller)
    )
    assert [r["name"] for r in await resp.json()] == ["library/app"]
    await content.ui.set_runtime(anonymous_access=False)
    resp = await content.ui.client.get(
        f"{API}/projects/library/repositories", headers=content.headers(caller)
    )
    if caller == "anonymous":
        await error(resp, 401, "UNAUTHORIZED")
    else:
        assert resp.status == 200


@pytest.mark.parametrize("caller", ["admin", "outsider", "anonymous"])
async def test_a_missing_project_reads_as_a_private_one(content: Content, caller: str) -> None:
    """Harbor checks the permission first: a missing project and a private one answer alike,
    except to a system admin, who may see everything and is told it is not there."""
    resp = await content.ui.client.get(
        f"{API}/projects/nowhere/repositories", headers=content.headers(caller)
    )
    if caller == "admin":
        await error(resp, 404, "NOT_FOUND")
    else:
        await error(resp, *refusal(caller))


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        ("admin", ["library/app", "other/app", "team/app"]),
        ("developer", ["library/app", "team/app"]),
        ("limited_guest", ["library/app", "team/app"]),
        ("outsider", ["library/app"]),
        ("anonymous", ["library/app"]),
    ],
)
async def test_all_repositories_the_caller_may_see(
    content: Content, caller: str, expected: list[str]
) -> None:
    await content.ui.add_project("other", content.ui.alice_id)
    await push_repos(content, "team/app", "library/app", "other/app", "orphan/app")
    resp = await content.ui.client.get(
        f"{API}/repositories", headers=content.headers(caller), params={"sort": "name"}
    )
    assert resp.status == 200
    body = await resp.json()
    assert [r["name"] for r in body] == expected
    assert resp.headers["X-Total-Count"] == str(len(expected))
    ids = {r["name"]: r["project_id"] for r in body}
    if "team/app" in ids:
        assert ids["team/app"] == content.team_id
    # alice owns `other`: she sees it, and the public library.
    alice = await (
        await content.ui.client.get(f"{API}/repositories", headers=ALICE, params={"sort": "name"})
    ).json()
    assert [r["name"] for r in alice] == ["library/app", "other/app"]


async def test_all_repositories_of_one_project(content: Content) -> None:
    await push_repos(content, "team/app", "library/app")
    params = {"q": f"project_id={content.team_id}"}
    resp = await content.ui.client.get(f"{API}/repositories", headers=ADMIN, params=params)
    assert [r["name"] for r in await resp.json()] == ["team/app"]
    resp = await content.ui.client.get(f"{API}/repositories", headers=ALICE, params=params)
    assert (await resp.json(), resp.headers["X-Total-Count"]) == ([], "0")  # not hers to see


async def test_anonymous_sees_no_repository_without_anonymous_access(content: Content) -> None:
    await push_repos(content, "library/app")
    await content.ui.set_runtime(anonymous_access=False)
    resp = await content.ui.client.get(f"{API}/repositories", headers=ANONYMOUS)
    assert (resp.status, await resp.json(), resp.headers["X-Total-Count"]) == (200, [], "0")


# -- one repository --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path_name", "full"),
    [
        ("app", "team/app"),
        ("web%2Fapi", "team/web/api"),  # encoded once
        ("web%252Fapi", "team/web/api"),  # encoded twice, as Harbor's clients send it
        ("a%252Fb%252Fc", "team/a/b/c"),
        ("a%2Fb%2Fc", "team/a/b/c"),
    ],
)
async def test_get_a_repository_by_its_name_without_the_project(
    content: Content, path_name: str, full: str
) -> None:
    await push_repos(content, "team/app", "team/web/api", "team/a/b/c")
    resp = await content.ui.client.get(f"{TEAM}/{path_name}", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["name"], body["project_id"], body["artifact_count"]) == (full, content.team_id, 1)


@pytest.mark.parametrize("caller", CALLERS)
async def test_who_reads_a_repository(content: Content, caller: str) -> None:
    await push_repos(content, "team/app")
    resp = await content.ui.client.get(f"{TEAM}/app", headers=content.headers(caller))
    if caller in MAY_READ:
        assert (await resp.json())["name"] == "team/app"
    else:
        await error(resp, *refusal(caller))
    # A repository that does not exist: 404 to those who may look, the same refusal to others.
    resp = await content.ui.client.get(f"{TEAM}/nothing", headers=content.headers(caller))
    await error(resp, *((404, "NOT_FOUND") if caller in MAY_READ else refusal(caller)))


async def test_a_repository_of_another_project_is_not_found(content: Content) -> None:
    await push_repos(content, "library/app")
    await error(await content.ui.client.get(f"{TEAM}/app", headers=ADMIN), 404, "NOT_FOUND")
    await error(await content.ui.client.get(f"{TEAM}/{'x' * 300}", headers=ADMIN), 404, "NOT_FOUND")
    await error(await content.ui.client.get(f"{TEAM}/%2500", headers=ADMIN), 400, "BAD_REQUEST")


@pytest.mark.parametrize("caller", CALLERS)
async def test_who_updates_the_description(content: Content, caller: str) -> None:
    await push_repos(content, "team/web/api")
    resp = await content.ui.client.put(
        f"{TEAM}/web%252Fapi", headers=content.headers(caller), json={"description": f"by {caller}"}
    )
    if caller in MAY_UPDATE:
        assert resp.status == 200, await resp.text()
        assert await resp.read() == b""
        assert "json" not in resp.headers.get("Content-Type", "")
        got = await (await content.ui.client.get(f"{TEAM}/web%252Fapi", headers=ADMIN)).json()
        assert got["description"] == f"by {caller}"
    else:
        await error(resp, *refusal(caller))


async def test_a_long_description_fits_every_database(content: Content) -> None:
    await push_repos(content, "team/app")
    longest = "\U0001f433" * 16_000  # four bytes each in UTF-8
    resp = await content.ui.client.put(f"{TEAM}/app", headers=ADMIN, json={"description": longest})
    assert resp.status == 200, await resp.text()
    assert (await (await content.ui.client.get(f"{TEAM}/app", headers=ADMIN)).json())[
        "description"
    ] == longest
    resp = await content.ui.client.put(f"{TEAM}/app", headers=ADMIN, json={"description": "x" * 16_001})
    assert "description" in await error(resp, 400, "BAD_REQUEST")


async def test_the_whole_repository_may_be_sent_back(content: Content) -> None:
    await push_repos(content, "team/app")
    got = await (await content.ui.client.get(f"{TEAM}/app", headers=ADMIN)).json()
    resp = await content.ui.client.put(f"{TEAM}/app", headers=ADMIN, json={**got, "description": "new"})
    assert resp.status == 200
    assert (await (await content.ui.client.get(f"{TEAM}/app", headers=ADMIN)).json())["description"] == "new"


@pytest.mark.parametrize("body", ["not json", "[]", '{"description": 5}', '{"description": "a\\u0000b"}'])
async def test_a_bad_description_is_400(content: Content, body: str) -> None:
    await push_repos(content, "team/app")
    resp = await content.ui.client.put(
        f"{TEAM}/app", headers={**ADMIN, "Content-Type": "application/json"}, data=body
    )
    await error(resp, 400, "BAD_REQUEST")
    resp = await content.ui.client.put(f"{TEAM}/nothing", headers=ADMIN, json={"description": "x"})
    await error(resp, 404, "NOT_FOUND")


# -- delete ----------------------------------------------------------------------------------------


async def counts(content: Content, repository_id: int) -> dict[str, int]:
    async def go(conn: Any) -> dict[str, int]:
        found = {}
        for table in (t.tag, t.manifest, t.repository_blob, t.manifest_blob):
            query = (
                sa.select(sa.func.count()).select_from(table).where(table.c.repository_id == repository_id)
            )
            found[table.name] = (await conn.execute(query)).scalar_one()
        found["repository"] = (
            await conn.execute(
                sa.select(sa.func.count()).select_from(t.repository).where(t.repository.c.id == repository_id)
            )
        ).scalar_one()
        return found

    result: dict[str, int] = await content.ui.db_call(go)
    return result


@pytest.mark.parametrize("caller", CALLERS)
async def test_who_deletes_a_repository(content: Content, caller: str) -> None:
    await push_repos(content, "team/app")
    resp = await content.ui.client.delete(f"{TEAM}/app", headers=content.headers(caller))
    if caller in MAY_DELETE:
        assert resp.status == 200, await resp.text()
        assert await resp.read() == b""
        await error(await content.ui.client.get(f"{TEAM}/app", headers=ADMIN), 404, "NOT_FOUND")
    else:
        await error(resp, *refusal(caller))
        assert (await content.ui.client.get(f"{TEAM}/app", headers=ADMIN)).status == 200


async def test_delete_removes_every_artifact_and_tag_and_the_cached_manifests(content: Content) -> None:
    v2 = content.v2
    digest, _ = await v2.push_image("team/web/api", "v1", seed="one")
    await v2.push_image("team/web/api", "v2", seed="two")
    await v2.push_manifest(
        "team/web/api",
        "also",
        (await (await v2.request("GET", f"/v2/team/web/api/manifests/{digest}")).read()),
    )
    await push_repos(content, "team/web/other")  # untouched
    # Pulls fill the registry's manifest cache for the tag and the digest.
    for reference in ("v1", digest, "also"):
        assert (await v2.request("GET", f"/v2/team/web/api/manifests/{reference}")).status == 200
    repo = await (await content.ui.client.get(f"{TEAM}/web%252Fapi", headers=ADMIN)).json()
    assert repo["artifact_count"] == 2
    assert (await counts(content, repo["id"]))["tag"] == 3

    resp = await content.ui.client.delete(f"{TEAM}/web%252Fapi", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    assert await counts(content, repo["id"]) == {
        "tag": 0,
        "manifest": 0,
        "repository_blob": 0,
        "manifest_blob": 0,
        "repository": 0,
    }
    # The registry answers from SQL again, not from its cache: nothing is there.
    for reference in ("v1", digest, "also"):
        pulled = await v2.request("GET", f"/v2/team/web/api/manifests/{reference}")
        assert pulled.status == 404
        assert await error_code(pulled) == "MANIFEST_UNKNOWN"
    assert (await v2.request("GET", "/v2/team/web/other/manifests/v1")).status == 200
    (event,) = await content.ui.events("repository.delete")
    assert event["data"] == {"operator": "admin", "repository": "team/web/api"}
    # The name is free again: a push makes a new, empty repository.
    await v2.push_image("team/web/api", "v3", seed="three")
    again = await (await content.ui.client.get(f"{TEAM}/web%252Fapi", headers=ADMIN)).json()
    assert again["artifact_count"] == 1
    assert again["id"] != repo["id"]


_REFUSE = {
    "sqlite": [
        "CREATE TRIGGER refuse_events BEFORE INSERT ON event_outbox BEGIN SELECT RAISE(ABORT, 'refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_events() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$"
        " LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_events BEFORE INSERT ON event_outbox FOR EACH ROW"
        " EXECUTE FUNCTION refuse_events()",
    ],
    "mysql": [
        "CREATE TRIGGER refuse_events BEFORE INSERT ON event_outbox FOR EACH ROW"
        " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused'"
    ],
}
_ALLOW = {
    "sqlite": ["DROP TRIGGER IF EXISTS refuse_events"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS refuse_events ON event_outbox",
        "DROP FUNCTION IF EXISTS refuse_events()",
    ],
    "mysql": ["DROP TRIGGER IF EXISTS refuse_events"],
}


async def test_a_delete_that_fails_at_its_last_step_leaves_everything(content: Content, db_kind: str) -> None:
    """One transaction: when the event (the last write) cannot be written, no row is gone."""
    await push_repos(content, "team/app")
    repo = await (await content.ui.client.get(f"{TEAM}/app", headers=ADMIN)).json()
    before = await counts(content, repo["id"])

    async def run(statements: list[str]) -> None:
        async def go(conn: Any) -> None:
            for statement in statements:
                await conn.execute(sa.text(statement))

        await content.ui.db_call(go)

    await run(_REFUSE[db_kind])
    try:
        resp = await content.ui.client.delete(f"{TEAM}/app", headers=ADMIN)
        # 500, or 503 where the driver reports the trigger's refusal as an operational error.
        assert resp.status in (500, 503), await resp.text()
    finally:
        await run(_ALLOW[db_kind])
    assert await counts(content, repo["id"]) == before
    assert (await content.v2.request("GET", "/v2/team/app/manifests/v1")).status == 200
    assert (await content.ui.client.delete(f"{TEAM}/app", headers=ADMIN)).status == 200


async def test_deleting_a_missing_repository_is_404(content: Content) -> None:
    await error(await content.ui.client.delete(f"{TEAM}/nothing", headers=ADMIN), 404, "NOT_FOUND")
    await error(
        await content.ui.client.delete(f"{TEAM}/nothing", headers=content.headers("outsider")),
        403,
        "FORBIDDEN",
    )
