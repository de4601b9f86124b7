"""Replication from the portal, as an admin sets it up: Debian's docker-registry as the peer, a
registry created and tested in the browser, a manual push policy for a project holding an image,
started from its page, its execution watched until it succeeds (the page reloads itself), a
task's log read; the manifest is then on the docker-registry with the same digest. The policy
is then edited on its page (a tag filter, a schedule). Deleting the
registry a policy uses is refused with the API's message."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.portal.conftest import ADMIN_PASSWORD, PORTAL, Site
from tests.e2e.test_replication import digest
from tests.images import make_image, write_layout
from tests.support.distribution import distribution
from tests.support.portal import Portal

pytestmark = [pytest.mark.e2e, PORTAL, pytest.mark.timeout(300)]


def test_a_push_policy_to_a_docker_registry_from_the_browser(
    site: Site, admin: Portal, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    project, registry, policy = f"rep{suffix}", f"plain-{suffix}", f"to-plain-{suffix}"
    status, _, answer = site.api(
        "POST", "/projects", {"project_name": project, "metadata": {"public": "false"}}
    )
    assert status == 201, answer
    layout = tmp_path / "layout"
    write_layout(layout, [make_image(f"portal-replication-{suffix}", layer_sizes=(120_000, 30_000))])
    skopeo = site.skopeo(f"replication-{suffix}")
    skopeo.ok(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"admin:{ADMIN_PASSWORD}",
        f"oci:{layout}:latest",
        f"docker://{site.address}/{project}/app:v1",
    )
    pushed = digest(skopeo, f"docker://{site.address}/{project}/app:v1", creds=ADMIN_PASSWORD)
    assert pushed is not None
    page = admin.page

    with distribution(tmp_path / "plain") as plain:
        # The registry, created and tested in the browser.
        admin.visit("/harbor/registries")
        page.get_by_text("New registry").click()
        page.get_by_label("Name", exact=True).fill(registry)
        page.get_by_label("Type").select_option(label="Docker registry (distribution)")
        page.get_by_label("URL").fill(plain.url)
        page.get_by_role("button", name="Create registry").click()
        row = page.get_by_role("row").filter(has_text=registry)
        expect(row).to_contain_text("unknown")
        row.get_by_role("button", name=f"Test connection to {registry}").click()
        expect(page.get_by_role("row").filter(has_text=registry)).to_contain_text("healthy")
        admin.check("registries")

        # A manual push policy for the project.
        admin.visit("/harbor/replications")
        page.get_by_text("New replication policy").click()
        page.get_by_label("Name", exact=True).fill(policy)
        page.get_by_label("Direction and registry").select_option(label=f"Push to {registry}")
        page.get_by_label("Repositories").fill(f"{project}/**")
        page.get_by_label("Trigger", exact=True).select_option(label="Manual")
        page.get_by_role("button", name="Create policy").click()
        expect(page).to_have_url(re.compile(r".*/harbor/replications$"))
        page.get_by_role("link", name=policy, exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(policy)

        # Started from its page, watched until it succeeds (the page reloads while it runs).
        page.get_by_role("button", name="Replicate now").click()
        execution_link = page.get_by_role("link", name=re.compile(r"^#\d+$"))
        expect(execution_link).to_have_count(1)
        execution_link.click()
        expect(page.locator("#execution-status")).to_have_text("Succeed", timeout=60_000)
        expect(page.get_by_role("table")).to_contain_text(f"{project}/app")
        admin.check("replication execution")

        # The task's log shows the copy.
        page.get_by_role("link", name=re.compile(r"^Log of task")).first.click()
        expect(page.locator("pre.log")).to_contain_text(f"copy {project}/app:v1")
        admin.check("replication task log")

        # The manifest is on the docker-registry, with the same digest.
        assert digest(skopeo, f"docker://{plain.host}:{plain.port}/{project}/app:v1", creds=None) == pushed

        # The policy's page and the list, with the run.
        page.get_by_role("link", name=policy).click()
        expect(page.get_by_role("table")).to_contain_text("Succeed")
        admin.check("replication policy")

        # Edited on its page: a tag filter and a schedule (the form's arrays and nested fields).
        policy_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
        page.get_by_label("Tag pattern").fill("v*")
        page.get_by_label("Tags that").select_option(label="matching")
        page.get_by_label("Trigger", exact=True).select_option(label="Scheduled")
        page.get_by_label("Schedule (scheduled trigger)").fill("0 0 3 * * *")
        page.get_by_role("button", name="Save policy").click()
        expect(page.locator("#flash")).to_have_text("Policy saved.")
        status, _, stored = site.api("GET", f"/replication/policies/{policy_id}")
        assert status == 200, stored
        assert stored["dest_registry"]["name"] == registry
        assert stored["trigger"] == {"type": "scheduled", "trigger_settings": {"cron": "0 0 3 * * *"}}
        assert {"type": "tag", "value": "v*", "decoration": "matches"} in stored["filters"]
        assert {"type": "name", "value": f"{project}/**", "decoration": "matches"} in stored["filters"]
        admin.visit("/harbor/replications")
        expect(page.get_by_role("row").filter(has_text=policy)).to_contain_text("Succeed")
        admin.check("replications")

        # A registry that a policy uses cannot be deleted: the API's message says why.
        admin.visit("/harbor/registries")
        admin.accept_next_dialog()
        page.get_by_role("button", name=f"Delete registry {registry}").click()
        expect(page.get_by_role("alert").filter(has_text=re.compile(r"polic", re.I))).to_be_visible()
