"""The portal's repository and artifact pages in-process, over each database: who sees them and
what each role is offered, nested names once or twice encoded, an index's platforms (from the
database: the registry's storage may be out of the ui's reach) and those not known, accessories
shown with their subject, and the error pages."""

# ruff: noqa: F811  (the `content` fixture is imported from its module, then named by the tests)

from __future__ import annotations

import re
import shutil
from typing import Any

import pytest
import sqlalchemy as sa

from tests.service.ui.conftest import ADMIN_PASSWORD
from tests.service.ui.content import PASSWORD, Content, content  # noqa: F401
from tests.support.oci import OCI_INDEX, OCI_MANIFEST, digest_of, index_manifest
from wharf_shared.db import tables as t

PAGE = "/harbor/projects/team/repositories"
SBOM = "application/spdx+json"


async def session(content: Content, username: str) -> dict[str, str]:
    """A signed-in browser's cookie."""
    client = content.ui.client
    password = ADMIN_PASSWORD if username == "admin" else PASSWORD
    resp = await client.post("/c/login", data={"principal": username, "password": password})
    assert resp.status == 200, await resp.text()
    client.session.cookie_jar.clear()  # each request says which cookie it sends
    return {"Cookie": f"sid={resp.cookies['sid'].value}"}


async def get(content: Content, path: str, headers: dict[str, str]) -> tuple[int, str]:
    resp = await content.ui.client.get(path, headers=headers, allow_redirects=False)
    return resp.status, await resp.text()


async def push_all(content: Content) -> dict[str, Any]:
    """In `team/web/app`: the image `v1` with an SBOM referring to it, and the index `multi`."""
    v2 = content.v2
    image, body = await v2.push_image("team/web/app", "v1", seed="one")
    subject = {"mediaType": OCI_MANIFEST, "digest": image, "size": len(body)}
    sbom, _ = await v2.push_image("team/web/app", None, seed="sbom", subject=subject, artifact_type=SBOM)
    children = []
    for seed in ("amd", "arm"):
        _, child = await v2.push_image("team/web/app", None, seed=seed)
        children.append((child, OCI_MANIFEST))
    index = index_manifest(children)  # platforms linux/arch0, linux/arch1
    resp = await v2.push_manifest("team/web/app", "multi", index, OCI_INDEX)
    assert resp.status == 201, await resp.text()
    return {
        "image": image,
        "sbom": sbom,
        "index": digest_of(index),
        "children": [digest_of(body) for body, _ in children],
    }


@pytest.mark.parametrize(
    ("caller", "add", "delete"),
    [
        ("admin", True, True),
        ("maintainer", True, True),
        ("developer", True, False),
        ("guest", False, False),
        ("limitedguest", False, False),
    ],
)
async def test_each_role_sees_the_pages_and_is_offered_what_it_may_do(
    content: Content, caller: str, add: bool, delete: bool
) -> None:
    pushed = await push_all(content)
    headers = await session(content, caller)
    status, html = await get(content, f"{PAGE}/web%2Fapp", headers)
    assert status == 200, html
    status, html = await get(content, f"{PAGE}/web%2Fapp/artifacts/{pushed['image']}", headers)
    assert status == 200, html
    assert ('name="name"' in html) is add  # the new tag's field
    assert ("Delete tag v1" in html) is delete
    assert ("Delete artifact" in html) is delete


async def test_the_list_shows_platforms_and_accessories_with_their_artifact(content: Content) -> None:
    pushed = await push_all(content)
    # Platforms come from the database: the ui opens no storage (a ui host has none to open).
    shutil.rmtree(content.ui.settings.storage_root)
    headers = await session(content, "guest")
    for name in ("web%2Fapp", "web%252Fapp"):  # once, or twice as Harbor's clients encode
        status, html = await get(content, f"{PAGE}/{name}", headers)
        assert status == 200, html
        # The image and the index; children and the SBOM are shown with them, not as rows.
        assert len(re.findall(r"<tr>", html)) == 1 + 2
        assert ">linux/arch0<" in html
        assert ">linux/arch1<" in html
        assert ">SBOM<" in html
        assert pushed["sbom"] in html
        assert 'data-copy="docker pull wharf.example.test/team/web/app:v1"' in html
        assert 'href="/harbor/projects/team/repositories/web%2Fapp/artifacts/' in html
    status, html = await get(content, f"{PAGE}/web%2Fapp?tag=mul", headers)
    assert len(re.findall(r"<tr>", html)) == 1 + 1
    status, html = await get(content, f"{PAGE}/web%2Fapp/artifacts/{pushed['index']}", headers)
    assert status == 200, html
    assert re.findall(r'<span class="platform">([^<]*)</span>', html) == ["linux/arch0", "linux/arch1"]
    # A platform manifest's own page names the platform its index gives it.
    status, html = await get(content, f"{PAGE}/web%2Fapp/artifacts/{pushed['children'][1]}", headers)
    assert status == 200, html
    assert "<dt>Platform</dt><dd>linux/arch1</dd>" in html
    # The tag forms' API address names the repository twice encoded.
    status, html = await get(content, f"{PAGE}/web%2Fapp/artifacts/v1", await session(content, "developer"))
    assert status == 200, html
    api = f"/api/v2.0/projects/team/repositories/web%252Fapp/artifacts/{pushed['image']}/tags"
    assert f'data-api="{api}"' in html


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/web%2Fapp/artifacts/sha256:" + "0" * 64, 404),
        ("/web%2Fapp/artifacts/sha256:zz", 400),
        ("/nothing", 404),
    ],
)
async def test_what_is_not_there(content: Content, path: str, status: int) -> None:
    await push_all(content)
    found, html = await get(content, PAGE + path, await session(content, "guest"))
    assert found == status, html
    assert "<h1>" in html


async def test_outsiders_and_anonymous_callers(content: Content) -> None:
    await push_all(content)
    status, html = await get(content, f"{PAGE}/web%2Fapp", await session(content, "outsider"))
    assert status == 403, html
    status, _ = await get(content, f"{PAGE}/web%2Fapp", {})
    assert status == 303


async def test_pages_of_artifacts_keep_the_name_one_segment(content: Content) -> None:
    await push_all(content)
    headers = await session(content, "guest")
    status, html = await get(content, f"{PAGE}/web%2Fapp?page_size=1", headers)
    assert status == 200, html
    assert 'href="/harbor/projects/team/repositories/web%2Fapp?page_size=1&amp;page=2" rel="next"' in html
    status, html = await get(content, f"{PAGE}/web%2Fapp?page_size=1&page=2", headers)
    assert status == 200, html
    assert "page 2 of 2" in html


async def test_platforms_not_known_are_said_so(content: Content) -> None:
    # An index recorded before the platforms were kept (0008) has none: the pages say so.
    pushed = await push_all(content)

    async def forget(conn: Any) -> None:
        await conn.execute(sa.update(t.manifest_child).values(os=None, architecture=None, variant=None))

    await content.ui.db_call(forget)
    headers = await session(content, "guest")
    status, html = await get(content, f"{PAGE}/web%2Fapp", headers)
    assert status == 200, html
    assert html.count(">unknown platform<") == 2
    status, html = await get(content, f"{PAGE}/web%2Fapp/artifacts/{pushed['index']}", headers)
    assert status == 200, html
    assert html.count('<span class="muted">unknown</span>') == 2
    status, html = await get(content, f"{PAGE}/web%2Fapp/artifacts/{pushed['children'][0]}", headers)
    assert status == 200, html
    assert "<dt>Platform</dt>" not in html
    assert "Part of" in html
