"""The dashboard: an admin sees the storage and activity charts (a project they pushed to and
pulled from among them) and every instance behind the proxy, healthy; a normal user sees the
charts of what they may see and no instance list."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.portal.conftest import ADMIN_PASSWORD, PORTAL, Site
from tests.e2e.test_harbor_routine import _eventually
from tests.images import make_image, write_layout
from tests.support.portal import Portal

pytestmark = [pytest.mark.e2e, PORTAL, pytest.mark.timeout(240)]


def test_charts_and_instances_for_an_admin_and_charts_only_for_a_user(
    site: Site, admin: Portal, open_portal: Any, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    project = f"dash{suffix}"
    status, _, answer = site.api(
        "POST", "/projects", {"project_name": project, "metadata": {"public": "true"}}
    )
    assert status == 201, answer
    layout = tmp_path / "layout"
    write_layout(layout, [make_image(f"portal-dashboard-{suffix}", layer_sizes=(200_000, 50_000))])
    skopeo = site.skopeo(f"dashboard-{suffix}")
    ref = f"docker://{site.address}/{project}/app:v1"
    skopeo.ok(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"admin:{ADMIN_PASSWORD}",
        f"oci:{layout}:latest",
        ref,
    )
    skopeo.ok("inspect", "--tls-verify=false", "--creds", f"admin:{ADMIN_PASSWORD}", ref)  # a pull

    # The push and the pull reach the audit log through the event stream: wait till they are there.
    def logged() -> bool:
        status, _, rows = site.api("GET", f"/projects/{project}/logs")
        return status == 200 and {"create", "pull"} <= {row["operation"] for row in rows}

    _eventually(logged, f"the push and the pull in {project}'s audit log", timeout=60)

    page = admin.page
    admin.visit("/harbor/dashboard")
    storage = page.get_by_role("img", name="Storage by project", exact=False)
    expect(storage).to_be_visible()
    expect(page.locator("svg.hchart")).to_contain_text(project)
    expect(page.get_by_role("img", name="Pushes and pulls per day over the last 14 days")).to_be_visible()
    expect(page.locator("#activity-heading + p")).not_to_have_text(re.compile(r"^0 pushes"))
    instances = page.get_by_role("region", name="Instances")
    expect(instances).to_be_visible()
    expect(instances).to_contain_text("Reachable")
    for service in ("Registry", "Token service", "UI and API"):
        row = instances.get_by_role("row").filter(has_text=service)
        expect(row.first).to_contain_text("In rotation")
    expect(instances).not_to_contain_text("Out of rotation")
    admin.check("dashboard")

    user, password = f"dash{suffix}", "Dash-user-1"
    site.create_user(user, password)
    portal: Portal = open_portal(user)
    portal.sign_in(user, password)
    portal.visit("/harbor/dashboard")
    expect(portal.page.locator("svg.hchart")).to_contain_text(project)  # public: they see it
    expect(portal.page.get_by_role("region", name="Instances")).to_have_count(0)
    expect(portal.page.get_by_text("Stored in projects you can see")).to_be_visible()
    portal.check("dashboard as a user")
