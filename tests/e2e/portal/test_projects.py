"""A project in the portal, as its admin and as a guest: created from the projects list, found by
name and visibility, opened; members added and re-roled; visibility flipped in the settings; a
project holding a repository explained as not deletable yet (Harbor's 412), emptied from its
repositories page and deleted. A guest sees the repositories and members read-only, and a
forged delete with the guest's session is refused by the API with or without the CSRF token."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.portal.conftest import ADMIN_PASSWORD, PORTAL, Site
from tests.images import make_image, write_layout
from tests.support.portal import Portal

pytestmark = [pytest.mark.e2e, PORTAL, pytest.mark.timeout(300)]

PASSWORD = "Portal-member-1"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("portal-image") / "layout"
    write_layout(path, [make_image("portal-projects")])
    return path


def push(site: Site, layout: Path, repository: str) -> None:
    """One small image to `repository:v1`, pushed by the admin with skopeo."""
    skopeo = site.skopeo(unique("push"))
    skopeo.ok(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"admin:{ADMIN_PASSWORD}",
        f"oci:{layout}:latest",
        f"docker://{site.address}/{repository}:v1",
    )


def create_project(site: Site, name: str, *, public: bool = False) -> int:
    status, headers, answer = site.api(
        "POST", "/projects", {"project_name": name, "metadata": {"public": str(public).lower()}}
    )
    assert status == 201, answer
    return int(headers["location"].rsplit("/", 1)[1])


def member_roles(site: Site, project_id: int) -> dict[str, int]:
    status, _, members = site.api("GET", f"/projects/{project_id}/members")
    assert status == 200, members
    return {m["entity_name"]: m["role_id"] for m in members}


def flashed(page: Page, message: str) -> None:
    """The page reloaded after a change and says so (`#flash`)."""
    expect(page.locator("#flash")).to_have_text(message)


def test_an_admin_creates_finds_and_manages_a_project(site: Site, admin: Portal) -> None:
    page = admin.page
    name = unique("crew")
    admin.visit("/harbor/projects")
    page.get_by_text("New project").click()
    page.get_by_label("Project name").fill(name)
    page.get_by_role("button", name="Create project").click()
    expect(page).to_have_url(re.compile(rf".*/harbor/projects/{name}/repositories$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    facts = page.get_by_role("region", name="About this project")
    expect(facts).to_contain_text("Private")
    expect(facts).to_contain_text("Project admin")  # its creator
    expect(page.get_by_text("No repositories yet")).to_be_visible()

    # Found by name, and by visibility through the URL: private, so not among the public ones.
    admin.visit(f"/harbor/projects?name={name}&public=true")
    expect(page.get_by_text("No project matches.")).to_be_visible()
    admin.visit(f"/harbor/projects?name={name}&public=false")
    expect(page.get_by_label("Access level")).to_have_value("false")
    page.get_by_role("link", name=name, exact=True).click()
    expect(page).to_have_url(re.compile(rf".*/harbor/projects/{name}/repositories$"))
    tabs = page.get_by_role("navigation", name=f"Project {name}")
    expect(tabs.get_by_role("link")).to_have_text(["Repositories", "Members", "Logs", "Settings"])
    expect(tabs.get_by_role("link", name="Repositories")).to_have_attribute("aria-current", "page")

    # A developer joins, becomes a maintainer, and is a developer again.
    user = unique("dev")
    site.create_user(user, PASSWORD)
    tabs.get_by_role("link", name="Members").click()
    page.get_by_label("Username").fill(user)
    page.get_by_label("Role", exact=True).select_option(label="Developer")
    page.get_by_role("button", name="Add member").click()
    flashed(page, "Member added.")
    role = page.get_by_label(f"Role of {user}", exact=True)
    expect(role).to_have_value("2")
    role.select_option(label="Maintainer")
    page.get_by_role("button", name=f"Change the role of {user}").click()
    flashed(page, f"Role of {user} changed.")
    expect(page.get_by_label(f"Role of {user}", exact=True)).to_have_value("4")
    expect(page.get_by_role("region", name="About this project")).to_contain_text("1 maintainer")
    admin.check("project members")
    page.get_by_label(f"Role of {user}", exact=True).select_option(label="Developer")
    with page.expect_navigation():  # the page reloads once the API took the change
        page.get_by_role("button", name=f"Change the role of {user}").click()
    expect(page.get_by_label(f"Role of {user}", exact=True)).to_have_value("2")
    status, _, project = site.api("GET", f"/projects/{name}", None)
    assert status == 200, project
    assert member_roles(site, project["project_id"])[user] == 2

    # The settings flip the visibility.
    page.get_by_role("navigation", name=f"Project {name}").get_by_role("link", name="Settings").click()
    public = page.get_by_label("Public")
    expect(public).not_to_be_checked()
    public.check()
    page.get_by_role("button", name="Save visibility").click()
    flashed(page, "Visibility saved.")
    expect(page.get_by_label("Public")).to_be_checked()
    expect(page.get_by_role("region", name="About this project")).to_contain_text("Public")
    assert site.api("GET", f"/projects/{name}")[2]["metadata"]["public"] == "true"
    admin.check("project settings")

    # The log holds what happened (the job service writes it a moment after each change).
    logs = f"/harbor/projects/{name}/logs"
    deadline = time.monotonic() + 30
    admin.visit(f"{logs}?resource_type=member")
    while page.locator("tbody tr").count() < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
        page.reload()
    expect(page.locator("tbody tr")).to_have_count(3)
    expect(page.get_by_label("Resource type")).to_have_value("member")
    admin.visit(f"{logs}?operation=update&resource_type=member")
    expect(page.locator("tbody tr")).to_have_count(2)
    admin.visit(logs)
    admin.check("project logs")


def test_a_project_with_a_repository_is_explained_then_emptied_and_deleted(
    site: Site, admin: Portal, layout: Path
) -> None:
    page = admin.page
    name = unique("ship")
    create_project(site, name)
    push(site, layout, f"{name}/tools/app")

    admin.visit(f"/harbor/projects/{name}/settings")
    danger = page.get_by_role("region", name="Delete the project")
    expect(danger).to_contain_text("the project holds 1 repository: delete it first")
    expect(page.get_by_role("button", name=re.compile("Delete project"))).to_have_count(0)
    expect(danger.get_by_role("link", name="Open its repositories")).to_be_visible()
    # The API says the same (the 412 the page explains).
    status, _, answer = site.api("DELETE", f"/projects/{name}")
    assert status == 412, answer

    admin.visit(f"/harbor/projects?name={name}")
    expect(page.get_by_role("button", name=f"Delete project {name}")).to_have_count(0)
    expect(page.get_by_text("Not deletable yet")).to_be_visible()
    admin.check("projects list")

    admin.visit(f"/harbor/projects/{name}/repositories")
    row = page.get_by_role("row", name="tools/app")
    expect(row.get_by_role("link", name="tools/app")).to_have_attribute(
        "href", f"/harbor/projects/{name}/repositories/tools%2Fapp"
    )
    expect(row.locator("code")).to_have_text(f"docker pull {site.address}/{name}/tools/app:latest")
    expect(row.get_by_role("cell").nth(1)).to_have_text("1")  # one artifact
    expect(row.get_by_role("cell").nth(3)).not_to_have_text("0 B")  # its layers' size
    admin.check("project repositories")
    admin.accept_next_dialog()
    row.get_by_role("button", name=f"Delete repository {name}/tools/app").click()
    flashed(page, "Repository deleted.")
    expect(page.get_by_text("No repositories yet")).to_be_visible()

    admin.visit(f"/harbor/projects/{name}/settings")
    admin.accept_next_dialog()
    page.get_by_role("button", name=f"Delete project {name}").click()
    expect(page).to_have_url(re.compile(r".*/harbor/projects$"))
    flashed(page, f"Project {name} deleted.")
    status, _, _ = site.api("GET", f"/projects/{name}")
    assert status == 404


def test_a_guest_reads_and_cannot_change(site: Site, open_portal: Any, layout: Path) -> None:
    name = unique("guests")
    project_id = create_project(site, name)
    push(site, layout, f"{name}/app")
    guest_name = unique("guest")
    site.create_user(guest_name, PASSWORD)
    status, _, answer = site.api(
        "POST", f"/projects/{project_id}/members", {"role_id": 3, "member_user": {"username": guest_name}}
    )
    assert status == 201, answer

    guest: Portal = open_portal("guest")
    guest.sign_in(guest_name, PASSWORD)
    page = guest.visit(f"/harbor/projects/{name}/repositories")
    tabs = page.get_by_role("navigation", name=f"Project {name}")
    expect(tabs.get_by_role("link")).to_have_text(["Repositories", "Members", "Settings"])
    expect(page.get_by_role("region", name="About this project")).to_contain_text("Guest")
    expect(page.get_by_role("link", name="app", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Delete repository"))).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Copy the pull command"))).to_have_count(1)

    tabs.get_by_role("link", name="Members").click()
    expect(page.get_by_role("cell", name=guest_name, exact=False)).to_be_visible()
    expect(page.get_by_text("Add a member")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Change the role|Remove"))).to_have_count(0)
    expect(page.get_by_role("combobox")).to_have_count(0)

    page.get_by_role("navigation", name=f"Project {name}").get_by_role("link", name="Settings").click()
    expect(page.get_by_text("Only its project admins can change that.")).to_be_visible()
    expect(page.get_by_role("button")).to_have_text(["Sign out"])  # nothing to press but that

    # A forged delete with the guest's session: refused without the CSRF token, and with it.
    status, _ = guest.api("DELETE", f"/api/v2.0/projects/{project_id}")
    assert status == 403
    token = page.get_attribute('meta[name="csrf-token"]', "content")
    assert token
    status, answer = guest.api(
        "DELETE", f"/api/v2.0/projects/{project_id}", headers={"X-Harbor-CSRF-Token": token}
    )
    assert status == 403, answer
    assert site.api("GET", f"/projects/{project_id}")[0] == 200
    # Nor does the page of a tab the guest may not open show anything.
    response = page.goto(f"/harbor/projects/{name}/logs")
    assert response is not None
    assert response.status == 403
