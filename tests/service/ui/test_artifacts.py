"""`/projects/{p}/repositories/{r}/artifacts…`: artifacts by digest or tag, their tags, deletion
and retagging, on each database; every role, every refusal with Harbor's code and status; and
what a pull through the registry sees after each change (never a stale cached manifest)."""

# ruff: noqa: F811  (the `content` fixture is imported from its module, then named by the tests)

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from tests.service.ui.conftest import ADMIN
from tests.service.ui.content import CALLERS, Content, content, error, refusal  # noqa: F401
from tests.support.oci import OCI_INDEX, OCI_MANIFEST, digest_of, error_code, index_manifest
from wharf_shared.db import tables as t

API = "/api/v2.0"
APP = f"{API}/projects/team/repositories/web%252Fapp"  # team/web/app, its name encoded twice

MAY_READ = {"admin", "project_admin", "maintainer", "developer", "guest", "limited_guest"}
MAY_TAG = {"admin", "project_admin", "maintainer", "developer"}
MAY_DELETE = {"admin", "project_admin", "maintainer"}


async def pull_status(content: Content, reference: str, repository: str = "team/web/app") -> tuple[int, str]:
    resp = await content.v2.request("GET", f"/v2/{repository}/manifests/{reference}")
    return resp.status, (await error_code(resp) if resp.status != 200 else "")


def content_size(manifest: bytes) -> int:
    """What an image manifest references: its config's and layers' sizes."""
    parsed = json.loads(manifest)
    return int(parsed["config"]["size"]) + sum(int(layer["size"]) for layer in parsed["layers"])


async def push_index(content: Content) -> tuple[str, list[str], int]:
    """Two images by digest and an index over them tagged `multi`: (index digest, child digests,
    Harbor's size of the index: itself and its images with theirs)."""
    children = []
    bodies = []
    for seed in ("amd", "arm"):
        digest, body = await content.v2.push_image("team/web/app", None, seed=seed)
        children.append(digest)
        bodies.append((body, OCI_MANIFEST))
    index = index_manifest(bodies)
    resp = await content.v2.push_manifest("team/web/app", "multi", index, OCI_INDEX)
    assert resp.status == 201, await resp.text()
    size = len(index) + sum(len(b) + content_size(b) for b, _ in bodies)
    return digest_of(index), children, size


# -- reads -----------------------------------------------------------------------------------------


async def test_artifacts_in_harbors_shape(content: Content) -> None:
    digest, body = await content.v2.push_image("team/web/app", "v1", annotations={"org.example": "yes"})
    await content.v2.push_manifest("team/web/app", "latest", body)
    resp = await content.ui.client.get(f"{APP}/artifacts", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    assert resp.headers["X-Total-Count"] == "1"
    (artifact,) = await resp.json()
    assert artifact["digest"] == digest
    assert artifact["type"] == "IMAGE"
    assert artifact["manifest_media_type"] == OCI_MANIFEST
    assert artifact["media_type"] == "application/vnd.oci.image.config.v1+json"
    assert artifact["project_id"] == content.team_id
    # Harbor's size: the manifest, its config and its layers.
    assert artifact["size"] == len(body) + content_size(body)
    assert artifact["pull_time"] is None  # never pulled
    assert artifact["push_time"].endswith("Z")
    assert artifact["annotations"] == {"org.example": "yes"}
    assert artifact["references"] == []
    assert [tag["name"] for tag in artifact["tags"]] == ["latest", "v1"]
    tag = artifact["tags"][0]
    assert (tag["artifact_id"], tag["repository_id"]) == (artifact["id"], artifact["repository_id"])
    assert tag["immutable"] is False
    # with_tag=false leaves the tags out.
    resp = await content.ui.client.get(f"{APP}/artifacts", headers=ADMIN, params={"with_tag": "false"})
    assert (await resp.json())[0]["tags"] is None
    await error(
        await content.ui.client.get(f"{APP}/artifacts", headers=ADMIN, params={"with_tag": "maybe"}),
        400,
        "BAD_REQUEST",
    )


async def test_an_index_lists_its_references(content: Content) -> None:
    index, children, size = await push_index(content)
    resp = await content.ui.client.get(f"{APP}/artifacts/multi", headers=ADMIN)
    got = await resp.json()
    assert (got["digest"], got["type"], got["manifest_media_type"], got["media_type"]) == (
        index,
        "IMAGE",
        OCI_INDEX,
        OCI_INDEX,
    )
    assert sorted(r["child_digest"] for r in got["references"]) == sorted(children)
    assert got["size"] == size
    assert all(r["parent_id"] == got["id"] for r in got["references"])
    # Harbor's `platform`: what the index gives each manifest (`index_manifest`: linux/arch0, …),
    # with the keys it gave.
    platforms = {r["child_digest"]: r["platform"] for r in got["references"]}
    assert platforms == {
        digest: {"os": "linux", "architecture": f"arch{i}"} for i, digest in enumerate(children)
    }
    listed = await (
        await content.ui.client.get(f"{APP}/artifacts", headers=ADMIN, params={"page_size": "100"})
    ).json()
    assert len(listed) == 3
    assert next(a for a in listed if a["digest"] == index)["references"] == got["references"]


async def test_a_reference_without_a_known_platform_has_none(content: Content) -> None:
    # An index recorded before the platforms were kept (0008): the key is left out, as Harbor
    # leaves it out for an entry without one; the rest is there.
    index, children, _ = await push_index(content)

    async def forget(conn: Any) -> None:
        await conn.execute(sa.update(t.manifest_child).values(os=None, architecture=None))

    await content.ui.db_call(forget)
    got = await (await content.ui.client.get(f"{APP}/artifacts/{index}", headers=ADMIN)).json()
    assert sorted(r["child_digest"] for r in got["references"]) == sorted(children)
    assert all("platform" not in r for r in got["references"])


async def test_artifact_lists_take_q_sort_and_pages(content: Content) -> None:
    digests = [(await content.v2.push_image("team/web/app", f"v{i}", seed=str(i)))[0] for i in range(3)]
    resp = await content.ui.client.get(f"{APP}/artifacts", headers=ADMIN, params={"page_size": "2"})
    assert [a["digest"] for a in await resp.json()] == [digests[2], digests[1]]  # newest first
    assert resp.headers["X-Total-Count"] == "3"
    assert 'rel="next"' in resp.headers["Link"]
    resp = await content.ui.client.get(
        f"{APP}/artifacts", headers=ADMIN, params={"q": f"digest={digests[0]}"}
    )
    assert [a["digest"] for a in await resp.json()] == [digests[0]]
    resp = await content.ui.client.get(f"{APP}/artifacts", headers=ADMIN, params={"sort": "push_time"})
    assert [a["digest"] for a in await resp.json()] == digests
    await error(
        await content.ui.client.get(f"{APP}/artifacts", headers=ADMIN, params={"q": "nope=1"}),
        400,
        "BAD_REQUEST",
    )
    await error(
        await content.ui.client.get(f"{API}/projects/team/repositories/nothing/artifacts", headers=ADMIN),
        404,
        "NOT_FOUND",
    )


@pytest.mark.parametrize(
    ("q", "expected"),
    [("tags=*", ["tagged"]), ("tags=nil", ["untagged"]), ("tags=v1", ["tagged"]), ("tags=~v", ["tagged"])],
)
async def test_artifacts_by_their_tags(content: Content, q: str, expected: list[str]) -> None:
    digests = {
        "tagged": (await content.v2.push_image("team/web/app", "v1", seed="a"))[0],
        "untagged": (await content.v2.push_image("team/web/app", None, seed="b"))[0],
    }
    resp = await content.ui.client.get(f"{APP}/artifacts", headers=ADMIN, params={"q": q})
    assert resp.status == 200, await resp.text()
    assert [a["digest"] for a in await resp.json()] == [digests[name] for name in expected]
    resp = await content.ui.client.get(f"{APP}/artifacts", headers=ADMIN, params={"q": "tags=[a~b]"})
    await error(resp, 400, "BAD_REQUEST")


@pytest.mark.parametrize("caller", CALLERS)
async def test_who_reads_artifacts(content: Content, caller: str) -> None:
    digest, _ = await content.v2.push_image("team/web/app", "v1")
    headers = content.headers(caller)
    for path in (
        f"{APP}/artifacts",
        f"{APP}/artifacts/v1",
        f"{APP}/artifacts/{digest}",
        f"{APP}/artifacts/v1/tags",
    ):
        resp = await content.ui.client.get(path, headers=headers)
        if caller in MAY_READ:
            assert resp.status == 200, (path, await resp.text())
        else:
            await error(resp, *refusal(caller))


async def test_get_by_tag_or_digest(content: Content) -> None:
    digest, _ = await content.v2.push_image("team/web/app", "v1")
    by_tag = await (await content.ui.client.get(f"{APP}/artifacts/v1", headers=ADMIN)).json()
    by_digest = await (await content.ui.client.get(f"{APP}/artifacts/{digest}", headers=ADMIN)).json()
    assert by_tag == by_digest
    assert by_tag["digest"] == digest
    once = f"{API}/projects/team/repositories/web%2Fapp/artifacts/v1"
    assert (await (await content.ui.client.get(once, headers=ADMIN)).json())["digest"] == digest
    await error(await content.ui.client.get(f"{APP}/artifacts/v9", headers=ADMIN), 404, "NOT_FOUND")
    await error(await content.ui.client.get(f"{APP}/artifacts/-bad-", headers=ADMIN), 404, "NOT_FOUND")
    await error(await content.ui.client.get(f"{APP}/artifacts/sha256:abc", headers=ADMIN), 400, "BAD_REQUEST")
    missing = "sha256:" + "0" * 64
    await error(await content.ui.client.get(f"{APP}/artifacts/{missing}", headers=ADMIN), 404, "NOT_FOUND")


# -- delete an artifact ----------------------------------------------------------------------------


@pytest.mark.parametrize("caller", CALLERS)
async def test_who_deletes_an_artifact(content: Content, caller: str) -> None:
    await content.v2.push_image("team/web/app", "v1")
    resp = await content.ui.client.delete(f"{APP}/artifacts/v1", headers=content.headers(caller))
    if caller in MAY_DELETE:
        assert resp.status == 200, await resp.text()
        assert await resp.read() == b""
        await error(await content.ui.client.get(f"{APP}/artifacts/v1", headers=ADMIN), 404, "NOT_FOUND")
    else:
        await error(resp, *refusal(caller))
        assert (await content.ui.client.get(f"{APP}/artifacts/v1", headers=ADMIN)).status == 200


async def test_deleting_an_artifact_removes_its_tags_and_what_the_registry_cached(content: Content) -> None:
    digest, body = await content.v2.push_image("team/web/app", "v1")
    await content.v2.push_manifest("team/web/app", "latest", body)
    other, _ = await content.v2.push_image("team/web/app", "keep", seed="keep")
    for reference in ("v1", "latest", digest):  # cached by the registry now
        assert await pull_status(content, reference) == (200, "")
    resp = await content.ui.client.delete(f"{APP}/artifacts/{digest}", headers=content.headers("maintainer"))
    assert resp.status == 200, await resp.text()
    for reference in ("v1", "latest", digest):
        assert await pull_status(content, reference) == (404, "MANIFEST_UNKNOWN")
    assert await pull_status(content, "keep") == (200, "")
    listed = await (await content.ui.client.get(f"{APP}/artifacts", headers=ADMIN)).json()
    assert [a["digest"] for a in listed] == [other]
    # Audited as the registry's own delete of a manifest, by its operator.
    (event,) = await content.ui.events("delete")
    assert event["data"] == {
        "operator": "maintainer",
        "repository": "team/web/app",
        "digest": digest,
        "tag": None,
        "kind": "manifest",
    }


async def test_an_artifact_an_index_lists_is_not_deleted(content: Content) -> None:
    index, children, _ = await push_index(content)
    resp = await content.ui.client.delete(f"{APP}/artifacts/{children[0]}", headers=ADMIN)
    await error(resp, 412, "VIOLATE_FOREIGN_KEY_CONSTRAINT")
    assert await pull_status(content, children[0]) == (200, "")
    # The index goes first, then its children may.
    assert (await content.ui.client.delete(f"{APP}/artifacts/multi", headers=ADMIN)).status == 200
    assert await pull_status(content, "multi") == (404, "MANIFEST_UNKNOWN")
    assert await pull_status(content, index) == (404, "MANIFEST_UNKNOWN")
    assert (await content.ui.client.delete(f"{APP}/artifacts/{children[0]}", headers=ADMIN)).status == 200


async def test_deleting_what_is_not_there_is_404(content: Content) -> None:
    await content.v2.push_image("team/web/app", "v1")
    await error(await content.ui.client.delete(f"{APP}/artifacts/v2", headers=ADMIN), 404, "NOT_FOUND")
    missing = "sha256:" + "0" * 64
    await error(await content.ui.client.delete(f"{APP}/artifacts/{missing}", headers=ADMIN), 404, "NOT_FOUND")


# -- tags ------------------------------------------------------------------------------------------


async def test_an_artifacts_tags_in_pages(content: Content) -> None:
    _, body = await content.v2.push_image("team/web/app", "t0")
    for i in range(1, 5):
        await content.v2.push_manifest("team/web/app", f"t{i}", body)
    await content.v2.push_image("team/web/app", "other", seed="other")
    resp = await content.ui.client.get(f"{APP}/artifacts/t0/tags", headers=ADMIN)
    assert [t["name"] for t in await resp.json()] == ["t4", "t3", "t2", "t1", "t0"]  # newest first
    resp = await content.ui.client.get(
        f"{APP}/artifacts/t0/tags", headers=ADMIN, params={"page_size": "2", "page": "2", "sort": "name"}
    )
    assert resp.status == 200, await resp.text()
    assert [t["name"] for t in await resp.json()] == ["t2", "t3"]
    assert resp.headers["X-Total-Count"] == "5"
    tag = (await resp.json())[0]
    assert set(tag) == {"id", "repository_id", "artifact_id", "name", "push_time", "pull_time", "immutable"}
    resp = await content.ui.client.get(f"{APP}/artifacts/t0/tags", headers=ADMIN, params={"q": "name=~4"})
    assert [t["name"] for t in await resp.json()] == ["t4"]
    resp = await content.ui.client.get(f"{APP}/artifacts/t0/tags", headers=ADMIN, params={"sort": "-name"})
    assert (await resp.json())[0]["name"] == "t4"
    await error(
        await content.ui.client.get(f"{APP}/artifacts/t0/tags", headers=ADMIN, params={"sort": "size"}),
        400,
        "BAD_REQUEST",
    )


@pytest.mark.parametrize("caller", CALLERS)
async def test_who_adds_a_tag(content: Content, caller: str) -> None:
    digest, _ = await content.v2.push_image("team/web/app", "v1")
    resp = await content.ui.client.post(
        f"{APP}/artifacts/v1/tags", headers=content.headers(caller), json={"name": "v2"}
    )
    if caller in MAY_TAG:
        assert resp.status == 201, await resp.text()
        assert "Location" not in resp.headers
        assert await pull_status(content, "v2") == (200, "")
        (event,) = await content.ui.events("tag.create")
        operator = "admin" if caller == "admin" else caller.replace("_", "")
        assert event["data"] == {
            "operator": operator,
            "repository": "team/web/app",
            "tag": "v2",
            "digest": digest,
        }
    else:
        await error(resp, *refusal(caller))
        assert await pull_status(content, "v2") == (404, "MANIFEST_UNKNOWN")


async def test_a_new_tag_is_served_and_listed_at_once(content: Content) -> None:
    digest, _ = await content.v2.push_image("team/web/app", "v1")
    # The registry has cached the tags list and a miss.
    listed = await content.v2.request("GET", "/v2/team/web/app/tags/list")
    assert (await listed.json())["tags"] == ["v1"]
    assert await pull_status(content, "v2") == (404, "MANIFEST_UNKNOWN")
    resp = await content.ui.client.post(f"{APP}/artifacts/{digest}/tags", headers=ADMIN, json={"name": "v2"})
    assert resp.status == 201
    listed = await content.v2.request("GET", "/v2/team/web/app/tags/list")
    assert (await listed.json())["tags"] == ["v1", "v2"]
    assert await pull_status(content, "v2") == (200, "")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "v1"}, 409, "CONFLICT"),  # the repository has it (on this artifact)
        ({"name": "other"}, 409, "CONFLICT"),  # ... or on another: Harbor moves no tag here
        ({"name": "-bad"}, 400, "BAD_REQUEST"),
        ({"name": "x" * 129}, 400, "BAD_REQUEST"),
        ({"name": 5}, 400, "BAD_REQUEST"),
        ({}, 400, "BAD_REQUEST"),
    ],
)
async def test_bad_or_taken_tag_names(
    content: Content, body: dict[str, object], status: int, code: str
) -> None:
    await content.v2.push_image("team/web/app", "v1")
    await content.v2.push_image("team/web/app", "other", seed="other")
    resp = await content.ui.client.post(f"{APP}/artifacts/v1/tags", headers=ADMIN, json=body)
    await error(resp, status, code)
    assert await pull_status(content, "other") == (200, "")


async def test_tagging_what_is_not_there_is_404(content: Content) -> None:
    resp = await content.ui.client.post(f"{APP}/artifacts/v1/tags", headers=ADMIN, json={"name": "v2"})
    await error(resp, 404, "NOT_FOUND")


@pytest.mark.parametrize("caller", CALLERS)
async def test_who_deletes_a_tag(content: Content, caller: str) -> None:
    digest, body = await content.v2.push_image("team/web/app", "v1")
    await content.v2.push_manifest("team/web/app", "v2", body)
    assert await pull_status(content, "v2") == (200, "")  # cached
    resp = await content.ui.client.delete(f"{APP}/artifacts/v1/tags/v2", headers=content.headers(caller))
    if caller in MAY_DELETE:
        assert resp.status == 200, await resp.text()
        assert await pull_status(content, "v2") == (404, "MANIFEST_UNKNOWN")
        assert await pull_status(content, "v1") == (200, "")  # the artifact stays
        (event,) = await content.ui.events("tag.delete")
        operator = "admin" if caller == "admin" else caller.replace("_", "")
        assert event["data"] == {
            "operator": operator,
            "repository": "team/web/app",
            "tag": "v2",
            "digest": digest,
        }
    else:
        await error(resp, *refusal(caller))
        assert await pull_status(content, "v2") == (200, "")


async def test_a_tag_is_deleted_only_from_its_own_artifact(content: Content) -> None:
    await content.v2.push_image("team/web/app", "v1")
    await content.v2.push_image("team/web/app", "other", seed="other")
    await error(
        await content.ui.client.delete(f"{APP}/artifacts/v1/tags/other", headers=ADMIN), 404, "NOT_FOUND"
    )
    await error(
        await content.ui.client.delete(f"{APP}/artifacts/v1/tags/none", headers=ADMIN), 404, "NOT_FOUND"
    )
    assert await pull_status(content, "other") == (200, "")
    # The last tag goes; the artifact stays, untagged.
    assert (await content.ui.client.delete(f"{APP}/artifacts/v1/tags/v1", headers=ADMIN)).status == 200
    listed = await (await content.ui.client.get(f"{APP}/artifacts", headers=ADMIN)).json()
    assert sorted(len(a["tags"]) for a in listed) == [0, 1]


@pytest.mark.parametrize("name", ["web%2Fapp", "web%252Fapp"])
async def test_links_keep_the_names_encoding(content: Content, name: str) -> None:
    """A client follows `Link` as given: the repository's name stays one path segment."""
    _, body = await content.v2.push_image("team/web/app", "t0")
    for i in range(1, 3):
        await content.v2.push_manifest("team/web/app", f"t{i}", body)
    path = f"{API}/projects/team/repositories/{name}/artifacts/t0/tags"
    resp = await content.ui.client.get(path, headers=ADMIN, params={"page_size": "1"})
    link = resp.headers["Link"]
    assert link == f'<{path}?page_size=1&page=2>; rel="next"'
    followed = await content.ui.client.get(link[1 : link.index(">")], headers=ADMIN)
    assert followed.status == 200
    assert len(await followed.json()) == 1
