"""Harbor's daily routine, as one story told by each role in its own browser (the only things
done outside one: the developer's skopeo push, and curl to check what the browser changed):

- the system admin creates two users, a private project, and makes one user a developer and the
  other a guest of it;
- the developer pushes with skopeo, then finds the project, the repository, its tag and the pull
  command in the portal;
- the guest sees the repository read-only, and a delete forged with their session and its CSRF
  token is refused;
- the system admin changes the configuration, registers Debian's docker-registry, creates a
  replication policy for the project, runs it and watches the execution to success;
- the audit log shows all of it.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.portal.conftest import PORTAL, Site
from tests.e2e.portal.test_admin import configuration_restored, eventually, refused_as_expected
from tests.images import make_image, write_layout
from tests.support.distribution import distribution
from tests.support.portal import Portal

pytestmark = [pytest.mark.e2e, PORTAL, pytest.mark.timeout(420)]

DEV_PASSWORD = "Journey-dev-1"
GUEST_PASSWORD = "Journey-guest-1"


def create_user(page: Page, username: str, password: str) -> None:
    page.goto("/harbor/users")
    page.get_by_text("New user").click()
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("E-mail").fill(f"{username}@example.com")
    page.get_by_label("Real name").fill(username.title())
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Create user").click()
    expect(page.locator("#flash")).to_have_text("User created.")


def add_member(page: Page, username: str, role: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Role", exact=True).select_option(label=role)
    page.get_by_role("button", name="Add member").click()
    expect(page.locator("#flash")).to_have_text("Member added.")
    expect(page.get_by_role("row").filter(has_text=username)).to_be_visible()


def test_the_daily_routine_as_each_role(site: Site, admin: Portal, open_portal: Any, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:6]
    project, dev, guest = f"journey{suffix}", f"dev{suffix}", f"guest{suffix}"
    registry, policy = f"dr-{suffix}", f"to-dr-{suffix}"
    page = admin.page

    # -- the system admin: users, a private project, its members --------------------------------
    create_user(page, dev, DEV_PASSWORD)
    create_user(page, guest, GUEST_PASSWORD)
    admin.visit("/harbor/projects")
    page.get_by_text("New project").click()
    page.get_by_label("Project name").fill(project)
    expect(page.get_by_label("Public: anyone may pull its images")).not_to_be_checked()
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(project)
    expect(page.get_by_role("region", name="About this project")).to_contain_text("Private")
    page.get_by_role("navigation", name=f"Project {project}").get_by_role("link", name="Members").click()
    add_member(page, dev, "Developer")
    add_member(page, guest, "Guest")

    # -- the developer: a push with skopeo, then the image in the portal ------------------------
    layout = tmp_path / "layout"
    write_layout(layout, [make_image(f"journey-{suffix}", layer_sizes=(90_000, 20_000))])
    skopeo = site.skopeo(dev)
    skopeo.ok(
        "copy",
        "--dest-tls-verify=false",
        f"--dest-creds={dev}:{DEV_PASSWORD}",
        f"oci:{layout}:latest",
        f"docker://{site.address}/{project}/web:1.0",
    )
    developer: Portal = open_portal(dev)
    developer.sign_in(dev, DEV_PASSWORD)
    dpage = developer.page
    dpage.get_by_role("link", name=project, exact=True).click()
    expect(dpage.get_by_role("region", name="About this project")).to_contain_text("Developer")
    dpage.get_by_role("link", name="web", exact=True).click()
    expect(dpage.get_by_role("heading", level=1)).to_contain_text("web")
    row = dpage.locator("table.artifacts tbody tr").filter(has=dpage.locator(".tag", has_text="1.0"))
    expect(row).to_have_count(1)
    expect(row.get_by_role("button", name="Copy pull command for 1.0", exact=True)).to_have_attribute(
        "data-copy", f"docker pull {site.address}/{project}/web:1.0"
    )
    repository_page = dpage.url
    row.get_by_role("link").first.click()
    expect(dpage).to_have_url(re.compile(r".*/artifacts/sha256:[0-9a-f]{64}$"))
    digest = dpage.url.rsplit("/", 1)[1]
    expect(dpage.get_by_role("button", name=re.compile("Add tag"))).to_be_visible()  # developers tag

    # -- the guest: read-only, and a forged delete is refused -----------------------------------
    visitor: Portal = open_portal(guest)
    visitor.sign_in(guest, GUEST_PASSWORD)
    gpage = visitor.page
    for seen, heading in ((repository_page, "web"), (dpage.url, digest)):
        gpage.goto(seen)
        expect(gpage.get_by_role("heading", level=1)).to_contain_text(heading)
        expect(gpage.get_by_role("button", name=re.compile("Delete|Add tag"))).to_have_count(0)
    visitor.check("journey guest artifact")
    token = gpage.get_attribute('meta[name="csrf-token"]', "content")
    assert token
    status, _ = visitor.api(
        "DELETE",
        f"/api/v2.0/projects/{project}/repositories/web/artifacts/{digest}",
        headers={"X-Harbor-CSRF-Token": token},
    )
    assert status == 403
    status, _, still = site.api("GET", f"/projects/{project}/repositories/web/artifacts/{digest}")
    assert status == 200, still

    # -- the system admin: configuration, then replication watched to success -------------------
    with configuration_restored(site) as before:
        admin.visit("/harbor/configs")
        minutes = int(before["token_expiration"]) + 15
        page.get_by_label("Token lifetime in minutes").fill(str(minutes))
        page.get_by_role("button", name="Save configuration").click()
        expect(page.locator("#flash")).to_have_text("Configuration saved.")
        expect(page.get_by_label("Token lifetime in minutes")).to_have_value(str(minutes))
        status, _, shown = site.api("GET", "/configurations")
        assert shown["token_expiration"]["value"] == minutes

    with distribution(tmp_path / "docker-registry") as plain:
        admin.visit("/harbor/registries")
        page.get_by_text("New registry").click()
        page.get_by_label("Name", exact=True).fill(registry)
        page.get_by_label("Type").select_option(label="Docker registry (distribution)")
        page.get_by_label("URL").fill(plain.url)
        page.get_by_role("button", name="Create registry").click()
        page.get_by_role("row").filter(has_text=registry).get_by_role(
            "button", name=f"Test connection to {registry}"
        ).click()
        expect(page.get_by_role("row").filter(has_text=registry)).to_contain_text("healthy")

        admin.visit("/harbor/replications")
        page.get_by_text("New replication policy").click()
        page.get_by_label("Name", exact=True).fill(policy)
        page.get_by_label("Direction and registry").select_option(label=f"Push to {registry}")
        page.get_by_label("Repositories").fill(f"{project}/**")
        page.get_by_label("Trigger", exact=True).select_option(label="Manual")
        page.get_by_role("button", name="Create policy").click()
        page.get_by_role("link", name=policy, exact=True).click()
        page.get_by_role("button", name="Replicate now").click()
        page.get_by_role("link", name=re.compile(r"^#\d+$")).click()
        expect(page.locator("#execution-status")).to_have_text("Succeed", timeout=90_000)
        expect(page.get_by_role("table")).to_contain_text(f"{project}/web:1.0")
        copied = skopeo.ok(
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            f"docker://{plain.host}:{plain.port}/{project}/web:1.0",
        )
        assert copied.stdout.decode().strip() == digest

    # -- the audit log shows it all ---------------------------------------------------------------
    expected = [
        ("user", "create", dev),
        ("user", "create", guest),
        ("project", "create", project),
        ("member", "create", f"{project}/{dev}"),
        ("member", "create", f"{project}/{guest}"),
        ("artifact", "create", f"{project}/web:1.0"),
        ("configuration", "update", "token_expiration"),
        ("registry", "create", registry),
        ("replication_policy", "create", policy),
        ("replication", "start", f"{policy}#"),
    ]
    for resource_type, operation, resource in expected:
        eventually(
            page,
            f"/harbor/logs?resource_type={resource_type}&operation={operation}&resource={resource}",
            lambda: page.locator("table tbody tr").count() >= 1,
            timeout=30,
        )
    eventually(
        page,
        f"/harbor/logs?username={dev}",
        lambda: page.locator("table tbody tr").filter(has_text=f"{project}/web:1.0").count() >= 1,
    )
    admin.check("journey audit log")
    refused_as_expected(visitor)
