"""A repository in the portal, as each role sees it: a developer pushes an image and a multi-arch
index with skopeo and an SBOM and a signature that refer to the image (plain `/v2/` pushes with
a `subject`), then finds tag, digest, pull command, platforms and accessories in the browser and
adds a tag; a guest sees it all read-only and cannot forge a delete; a maintainer deletes a tag
and the artifact."""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.portal.conftest import PORTAL, Site
from tests.images import OCI_MANIFEST, Image, make_image, make_index, sha256, write_layout
from tests.support.portal import Portal

pytestmark = [pytest.mark.e2e, PORTAL, pytest.mark.timeout(300)]

PASSWORD = "Repos-pass-1"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SBOM_TYPE = "application/spdx+json"
SIGNATURE_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"


class V2:
    """Plain `/v2/` pushes through the site's front door as one user (a token from the token
    service): what skopeo cannot push, a manifest addressed by its digest."""

    def __init__(self, site: Site, username: str, password: str, repository: str) -> None:
        self.base = site.url
        self.repository = repository
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        query = urllib.parse.urlencode(
            {"service": "wharf-registry", "scope": f"repository:{repository}:pull,push"}
        )
        basic = base64.b64encode(f"{username}:{password}".encode()).decode()
        answer = self._send("GET", f"/service/token?{query}", headers={"Authorization": f"Basic {basic}"})
        self.token = json.loads(answer[1])["token"]

    def _send(
        self, method: str, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        url = path if path.startswith("http") else self.base + path
        request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310 - the site's http:// URL
        with self.opener.open(request, timeout=60) as response:
            return response.status, response.read(), dict(response.headers)

    def _auth(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **(extra or {})}

    def blob(self, data: bytes) -> dict[str, Any]:
        status, _, headers = self._send("POST", f"/v2/{self.repository}/blobs/uploads/", b"", self._auth())
        assert status == 202
        location = headers["Location"]
        separator = "&" if "?" in location else "?"
        status, _, _ = self._send(
            "PUT",
            f"{location}{separator}digest={sha256(data)}",
            data,
            self._auth({"Content-Type": "application/octet-stream"}),
        )
        assert status == 201
        return {"digest": sha256(data), "size": len(data)}

    def image(self, image: Image, tag: str) -> None:
        self.blob(image.config)
        for layer in image.layers:
            self.blob(layer)
        status, _, _ = self._send(
            "PUT",
            f"/v2/{self.repository}/manifests/{tag}",
            image.manifest,
            self._auth({"Content-Type": OCI_MANIFEST}),
        )
        assert status == 201

    def referrer(self, subject: Image, artifact_type: str, content: bytes, layer_type: str) -> str:
        """An artifact (SBOM, signature) whose `subject` is `subject`, pushed by its digest."""
        config = {"mediaType": OCI_EMPTY, **self.blob(b"{}")}
        layer = {"mediaType": layer_type, **self.blob(content)}
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": artifact_type,
                "config": config,
                "layers": [layer],
                "subject": {
                    "mediaType": OCI_MANIFEST,
                    "digest": subject.digest,
                    "size": len(subject.manifest),
                },
                "annotations": {"org.opencontainers.image.created": "2026-12-05T21:00:00Z"},
            }
        ).encode()
        digest = sha256(manifest)
        status, _, _ = self._send(
            "PUT",
            f"/v2/{self.repository}/manifests/{digest}",
            manifest,
            self._auth({"Content-Type": OCI_MANIFEST}),
        )
        assert status == 201
        return digest


def _setup(site: Site, tmp_path: Path) -> dict[str, Any]:
    """A private project; dev (developer), guest (guest), maint (maintainer); dev pushes the image
    `app:v1`, the index `app:multi` (linux/amd64, linux/arm64/v8) and two accessories of v1."""
    suffix = uuid.uuid4().hex[:6]
    project = f"repos{suffix}"
    names = {role: f"{role}{suffix}" for role in ("dev", "guest", "maint")}
    status, _, answer = site.api(
        "POST", "/projects", {"project_name": project, "metadata": {"public": "false"}}
    )
    assert status == 201, answer
    for role, role_id in (("dev", 2), ("guest", 3), ("maint", 4)):
        site.create_user(names[role], PASSWORD)
        status, _, answer = site.api(
            "POST",
            f"/projects/{project}/members",
            {"role_id": role_id, "member_user": {"username": names[role]}},
        )
        assert status == 201, answer

    image = make_image(f"portal-{suffix}")
    write_layout(tmp_path / "image", [image], tag="v1")
    amd64 = make_image(f"portal-{suffix}-multi", arch="amd64")
    arm64 = make_image(f"portal-{suffix}-multi", arch="arm64", layer_sizes=(3000,))
    arm64.platform["variant"] = "v8"
    index = make_index([amd64, arm64])
    write_layout(tmp_path / "index", [amd64, arm64], tag="multi", index=index)
    skopeo = site.skopeo(f"dev{suffix}")
    creds = f"--dest-creds={names['dev']}:{PASSWORD}"
    target = f"docker://{site.address}/{project}/app"
    skopeo.ok("copy", "--dest-tls-verify=false", creds, f"oci:{tmp_path / 'image'}:v1", f"{target}:v1")
    skopeo.ok(
        "copy",
        "--all",
        "--dest-tls-verify=false",
        creds,
        f"oci:{tmp_path / 'index'}:multi",
        f"{target}:multi",
    )

    status, _, pushed = site.api("GET", f"/projects/{project}/repositories/app/artifacts/v1")
    assert status == 200, pushed
    assert pushed["digest"] == image.digest, pushed  # skopeo kept the bytes
    v2 = V2(site, names["dev"], PASSWORD, f"{project}/app")
    sbom = v2.referrer(image, SBOM_TYPE, b'{"spdxVersion": "SPDX-2.3"}', SBOM_TYPE)
    signature = v2.referrer(
        image, SIGNATURE_TYPE, b"signed", "application/vnd.dev.cosign.simplesigning.v1+json"
    )
    return {
        "project": project,
        "names": names,
        "image": image,
        "index": sha256(index),
        "children": {"linux/amd64": amd64.digest, "linux/arm64/v8": arm64.digest},
        "sbom": sbom,
        "signature": signature,
    }


def test_repository_and_artifacts_as_each_role(site: Site, open_portal: Any, tmp_path: Path) -> None:
    data = _setup(site, tmp_path)
    project, names, image = data["project"], data["names"], data["image"]
    repo_page = f"/harbor/projects/{project}/repositories/app"
    pull_v1 = f"docker pull {site.address}/{project}/app:v1"

    # The developer finds the project, then (by its URL) the repository.
    dev: Portal = open_portal("dev")
    dev.sign_in(names["dev"], PASSWORD)
    page = dev.page
    dev.visit("/harbor/projects")
    expect(page.get_by_role("link", name=project, exact=True)).to_be_visible()
    dev.visit(repo_page)
    expect(page.get_by_role("heading", level=1)).to_contain_text("app")
    rows = page.locator("table.artifacts tbody tr")
    expect(rows).to_have_count(2)  # the image and the index: children and accessories go with them
    v1_row = rows.filter(has=page.locator(".tag", has_text=re.compile(r"^v1$")))
    expect(v1_row.get_by_role("link", name=image.digest)).to_be_visible()
    copy_v1 = v1_row.get_by_role("button", name="Copy pull command for v1", exact=True)
    expect(copy_v1).to_have_attribute("data-copy", pull_v1)
    expect(
        v1_row.get_by_role("button", name=f"Copy pull command by digest {image.digest}")
    ).to_have_attribute("data-copy", f"docker pull {site.address}/{project}/app@{image.digest}")
    accessories = v1_row.get_by_role("list", name=re.compile("Accessories of"))
    expect(accessories.get_by_text("SBOM", exact=True)).to_be_visible()
    expect(accessories.get_by_text("Signature", exact=True)).to_be_visible()
    expect(accessories.get_by_role("link", name=data["sbom"])).to_be_visible()
    index_row = rows.filter(has=page.locator(".tag", has_text=re.compile(r"^multi$")))
    expect(index_row.get_by_text("Image index")).to_be_visible()
    platforms = index_row.get_by_role("list", name=re.compile("Platforms of"))
    expect(platforms.get_by_role("link")).to_have_text(["linux/amd64", "linux/arm64/v8"])
    copy_v1.click()
    expect(page.locator("#flash")).to_have_text(f"Copied: {pull_v1}")
    dev.check("repository")

    # The filter keeps to tags containing the text, and says so when none does.
    page.get_by_label("Tag contains").fill("mul")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".tag")).to_have_text("multi")
    page.get_by_label("Tag contains").fill("nothing-like-it")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No artifact has a tag containing")).to_be_visible()

    # The index: its platforms, each a link to its manifest's page.
    dev.visit(repo_page)
    index_row.get_by_role("link", name=data["index"]).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Image index")
    platform_rows = page.get_by_role("table", name="Manifests of this index by platform").locator("tbody tr")
    expect(platform_rows).to_have_count(2)
    expect(platform_rows.nth(1)).to_contain_text("linux/arm64/v8")
    dev.check("artifact (index)")
    platform_rows.nth(1).get_by_role("link").click()
    expect(page.get_by_text("linux/arm64/v8", exact=True)).to_be_visible()  # the child's platform
    expect(page.get_by_role("link", name=re.compile(r"^index "))).to_be_visible()
    expect(page.get_by_role("heading", name="Delete this artifact")).to_have_count(0)  # not a developer's
    dev.check("artifact (platform manifest)")

    # The image: tag, digest, pull commands, accessories; the developer adds a tag.
    dev.visit(repo_page)
    v1_row.get_by_role("link", name=image.digest).click()
    expect(page.locator("code.full-digest")).to_have_text(image.digest)
    expect(page.get_by_role("button", name="Copy pull command for v1").first).to_have_attribute(
        "data-copy", pull_v1
    )
    accessory_rows = page.get_by_role("table", name=re.compile("refer to this one")).locator("tbody tr")
    expect(accessory_rows).to_have_count(2)
    expect(accessory_rows.first).to_contain_text(SBOM_TYPE)
    expect(page.get_by_role("button", name=re.compile("^Delete tag"))).to_have_count(0)  # developers may not
    expect(page.get_by_role("button", name="Delete artifact")).to_have_count(0)
    page.get_by_label("New tag").fill("v1-extra")
    page.get_by_role("button", name="Add tag").click()
    expect(page.locator("#flash")).to_have_text("Tag added.")
    expect(page.locator("td .tag", has_text="v1-extra")).to_be_visible()
    dev.check("artifact (image)")
    artifact_page = urllib.parse.urlsplit(page.url).path

    # The guest: the same page, nothing to change on it, and a forged delete refused.
    guest: Portal = open_portal("guest")
    guest.sign_in(names["guest"], PASSWORD)
    guest.visit(artifact_page)
    expect(guest.page.locator("code.full-digest")).to_have_text(image.digest)
    expect(guest.page.get_by_label("New tag")).to_have_count(0)
    expect(guest.page.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)
    guest.check("artifact (guest)")
    token = guest.page.get_attribute('meta[name="csrf-token"]', "content")
    assert token
    api_path = f"/api/v2.0/projects/{project}/repositories/app/artifacts/{image.digest}"
    status, answer = guest.api("DELETE", api_path, headers={"X-Harbor-CSRF-Token": token})
    assert status == 403, answer
    status, _, _ = site.api("GET", f"/projects/{project}/repositories/app/artifacts/{image.digest}")
    assert status == 200

    # The maintainer deletes the tag the developer added, then the artifact.
    maint: Portal = open_portal("maint")
    maint.sign_in(names["maint"], PASSWORD)
    maint.visit(artifact_page)
    mpage = maint.page
    maint.accept_next_dialog()
    mpage.get_by_role("button", name="Delete tag v1-extra").click()
    expect(mpage.locator("#flash")).to_have_text("Tag v1-extra deleted.")
    expect(mpage.locator("td .tag", has_text="v1-extra")).to_have_count(0)
    maint.accept_next_dialog()
    mpage.get_by_role("button", name="Delete artifact").click()
    expect(mpage).to_have_url(re.compile(re.escape(site.url + repo_page) + "$"))
    expect(mpage.locator("#flash")).to_have_text("Artifact deleted.")
    expect(mpage.locator("table.artifacts .tag", has_text=re.compile(r"^v1$"))).to_have_count(0)
    status, _, _ = site.api("GET", f"/projects/{project}/repositories/app/artifacts/{image.digest}")
    assert status == 404


def test_a_nested_repository_and_one_that_is_not_there(site: Site, admin: Portal) -> None:
    """A nested repository is one path segment (`team%2Fapp`, or Harbor's `team%252Fapp`); a tag
    added on its page goes through the API with the name twice encoded; a page for a repository
    that does not exist says so."""
    suffix = uuid.uuid4().hex[:6]
    project = f"nested{suffix}"
    status, _, answer = site.api(
        "POST", "/projects", {"project_name": project, "metadata": {"public": "true"}}
    )
    assert status == 201, answer
    image = make_image(f"nested-{suffix}")
    V2(site, "admin", site.admin[1], f"{project}/team/app").image(image, "v1")

    page = admin.page
    for name in ("team%2Fapp", "team%252Fapp"):
        admin.visit(f"/harbor/projects/{project}/repositories/{name}")
        expect(page.get_by_role("heading", level=1)).to_have_text(f"{project} / team/app")
    page.get_by_role("link", name=image.digest).click()
    expect(page).to_have_url(re.compile(f"/repositories/team%2Fapp/artifacts/{image.digest}$"))
    page.get_by_label("New tag").fill("stable")
    page.get_by_role("button", name="Add tag").click()
    expect(page.locator("#flash")).to_have_text("Tag added.")
    expect(page.get_by_role("button", name="Copy pull command for stable")).to_have_attribute(
        "data-copy", f"docker pull {site.address}/{project}/team/app:stable"
    )

    response = page.goto(f"/harbor/projects/{project}/repositories/team%2Fnothing")
    assert response is not None
    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
