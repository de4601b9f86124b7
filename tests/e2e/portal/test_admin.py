"""The administration and account pages as their users walk them: a system admin manages users
(create, find, admin flag on and off, password reset, delete) and the configuration (project
creation for admins only, read-only mode), a normal user is kept out of the admin pages and
changes their own profile and password, a visitor signs up while self-registration is on, and
the audit log shows what was done.

The site is shared with the other portal tests: every configuration change is put back in a
`finally`. Settings reach the other processes of `wharf run` within a second (announced over
Redis), so what another browser sees is waited for."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.portal.conftest import PORTAL, Site
from tests.support.portal import Portal

pytestmark = [pytest.mark.e2e, PORTAL, pytest.mark.timeout(300)]

READ_ONLY_MESSAGE = "The system is in read only mode. Any modification is prohibited."


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def eventually(page: Page, path: str, ready: Callable[[], bool], timeout: float = 20) -> None:
    """Open `path` until `ready()` holds: a setting or an audit row that is on its way."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(path)
        if ready():
            return
        assert time.monotonic() < deadline, f"{path}: not as expected after {timeout} s"
        time.sleep(0.5)


@contextmanager
def configuration_restored(site: Site) -> Iterator[dict[str, Any]]:
    """The runtime configuration as it was, put back however the test ends."""
    status, _, shown = site.api("GET", "/configurations")
    assert status == 200, shown
    keys = ("project_creation_restriction", "read_only", "self_registration", "token_expiration")
    keep = {k: shown[k]["value"] for k in keys}
    try:
        yield keep
    finally:
        status, _, answer = site.api("PUT", "/configurations", keep)
        assert status == 200, answer


def refused_as_expected(portal: Portal) -> None:
    """Chromium logs every 4xx answer as a console error; those a test asked for are no fault."""
    portal.console_errors[:] = [e for e in portal.console_errors if "status of 4" not in e]


def user_id(site: Site, username: str) -> int | None:
    status, _, found = site.api("GET", f"/users?q=username%3D{username}")
    assert status == 200, found
    return int(found[0]["user_id"]) if found else None


def test_admin_creates_finds_promotes_resets_and_deletes_users(
    site: Site, admin: Portal, open_portal: Any
) -> None:
    name, other = unique("ann"), unique("old")
    site.create_user(other, "Other-pass-1")
    page = admin.page
    admin.visit("/harbor/users")
    page.get_by_text("New user").click()
    page.get_by_label("Username", exact=True).fill(name)
    page.get_by_label("E-mail").fill(f"{name}@example.com")
    page.get_by_label("Real name").fill("Ann Example")
    page.get_by_label("Password", exact=True).fill("weak")
    page.get_by_role("button", name="Create user").click()
    # The browser's own check stops a too-short password; a long one without a digit reaches
    # the API, whose rule is shown.
    page.get_by_label("Password", exact=True).fill("NoDigitsHere")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("alert")).to_contain_text("at least 1 uppercase letter")
    refused_as_expected(admin)
    page.get_by_label("Password", exact=True).fill("First-pass-1")
    page.get_by_role("button", name="Create user").click()
    expect(page).to_have_url(re.compile(rf".*/harbor/users\?username={name}$"))
    expect(page.locator("#flash")).to_have_text("User created.")
    row = page.get_by_role("row").filter(has_text=name)
    expect(row).to_contain_text("Ann Example")

    # Found by a search typed in the page (the filter lands in the URL).
    page.goto("/harbor/users")
    page.get_by_label("Username contains").fill(name[:6])
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(rf".*/harbor/users\?username={name[:6]}$"))
    expect(row).to_have_count(1)
    # The admin's own row offers no flag change and no delete (the API refuses both).
    page.goto("/harbor/users?username=admin")
    expect(page.get_by_role("button", name="Delete user admin")).to_have_count(0)
    expect(page.get_by_role("button", name="Remove system admin from admin")).to_have_count(0)
    page.goto(f"/harbor/users?username={name}")

    page.get_by_role("button", name=f"Make {name} a system admin").click()
    expect(page.get_by_role("button", name=f"Remove system admin from {name}")).to_be_visible()
    expect(row).to_contain_text("System admin")
    admin.check("users")
    assert site.api("GET", f"/users/{user_id(site, name)}")[2]["sysadmin_flag"] is True
    page.get_by_role("button", name=f"Remove system admin from {name}").click()
    expect(page.get_by_role("button", name=f"Make {name} a system admin")).to_be_visible()
    assert site.api("GET", f"/users/{user_id(site, name)}")[2]["sysadmin_flag"] is False

    page.locator(f'summary[aria-label="Reset the password of {name}"]').click()
    page.get_by_label(f"New password for {name}").fill("Second-pass-2")
    page.get_by_role("button", name=f"Set the new password of {name}").click()
    expect(page.locator("#flash")).to_have_text(f"Password of {name} reset.")
    theirs: Portal = open_portal(name)
    theirs.sign_in(name, "Second-pass-2")
    expect(theirs.page.get_by_role("link", name=f"Your account: {name}")).to_be_visible()

    page.goto(f"/harbor/users?username={other}")
    admin.accept_next_dialog()
    page.get_by_role("button", name=f"Delete user {other}").click()
    expect(page.locator("#flash")).to_have_text(f"User {other} deleted.")
    expect(page.get_by_text(f"No user's name contains “{other}”.")).to_be_visible()
    assert user_id(site, other) is None

    # The audit log, filtered from the URL, shows the creation.
    eventually(
        page,
        f"/harbor/logs?operation=create&resource_type=user&resource={name}",
        lambda: page.get_by_role("cell", name=name, exact=True).count() == 1,
    )
    expect(page.get_by_label("Operation")).to_have_value("create")
    page.goto(f"/harbor/logs?operation=delete&resource={other}")
    expect(page.get_by_role("cell", name=other, exact=True)).to_be_visible()


def test_configuration_restricts_project_creation_and_turns_read_only(
    site: Site, admin: Portal, open_portal: Any
) -> None:
    member = unique("cfg")
    site.create_user(member, "Member-pass-1")
    them: Portal = open_portal(member)
    them.sign_in(member, "Member-pass-1")
    page = admin.page
    with configuration_restored(site):
        admin.visit("/harbor/configs")
        expect(page.get_by_label("Everyone signed in")).to_be_checked()
        page.get_by_label("System admins only").check()
        page.get_by_role("button", name="Save configuration").click()
        expect(page.locator("#flash")).to_have_text("Configuration saved.")
        expect(page.get_by_label("System admins only")).to_be_checked()
        admin.check("configuration")

        # The normal user is no longer offered a new project, and a forged one is refused.
        eventually(them.page, "/harbor/projects", lambda: them.page.get_by_text("New project").count() == 0)
        token = them.page.locator('meta[name="csrf-token"]').get_attribute("content")
        assert token
        forged = them.context.request.post(
            site.url + "/api/v2.0/projects",
            data={"project_name": unique("forged"), "metadata": {"public": "false"}},
            headers={"X-Harbor-CSRF-Token": token},
        )
        assert forged.status == 403, forged.text()
        assert "adminonly" in forged.text()

        # Read-only mode: the banner on every page, and a change refused with the API's words.
        page.goto("/harbor/configs")
        page.get_by_label("Everyone signed in").check()
        page.get_by_label("Read-only mode").check()
        page.get_by_role("button", name="Save configuration").click()
        expect(page.locator("#flash")).to_have_text("Configuration saved.")
        banner = page.get_by_role("note")
        expect(banner).to_contain_text("Read-only mode")
        eventually(them.page, "/harbor/account", lambda: them.page.get_by_role("note").count() == 1)
        them.page.get_by_label("Real name").fill("Not Now")
        them.page.get_by_role("button", name="Save profile").click()
        expect(them.page.get_by_role("alert")).to_have_text(READ_ONLY_MESSAGE)
        refused_as_expected(them)
        them.check("account-read-only")

        page.goto("/harbor/configs")
        page.get_by_label("Read-only mode").uncheck()
        page.get_by_role("button", name="Save configuration").click()
        expect(page.locator("#flash")).to_have_text("Configuration saved.")
        expect(page.get_by_role("note")).to_have_count(0)
        eventually(them.page, "/harbor/projects", lambda: them.page.get_by_text("New project").count() == 1)

    # Each change is in the audit log, named by the keys it changed.
    eventually(
        page,
        "/harbor/logs?resource_type=configuration&resource=read_only",
        lambda: page.get_by_role("cell", name=re.compile("read_only")).count() >= 2,
    )
    page.goto("/harbor/logs?resource_type=configuration&operation=update&username=admin")
    expect(page.get_by_role("cell", name="project_creation_restriction", exact=True).first).to_be_visible()
    admin.check("audit-log")


def test_admin_pages_are_not_for_a_normal_user(site: Site, open_portal: Any) -> None:
    name = unique("nav")
    site.create_user(name, "Normal-pass-1")
    portal: Portal = open_portal(name)
    portal.sign_in(name, "Normal-pass-1")
    page = portal.page
    nav = page.get_by_role("navigation", name="Main")
    for label in ("Users", "Audit log", "Configuration"):
        expect(nav.get_by_role("link", name=label)).to_have_count(0)
    for path in ("/harbor/users", "/harbor/configs", "/harbor/logs"):
        response = page.goto(path)
        assert response is not None
        assert response.status == 403, path
        expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    refused_as_expected(portal)
    portal.check("not-allowed")


def test_account_changes_profile_and_password(site: Site, open_portal: Any) -> None:
    name = unique("acc")
    site.create_user(name, "Account-pass-1")
    portal: Portal = open_portal(name)
    portal.sign_in(name, "Account-pass-1")
    page = portal.page
    portal.visit("/harbor/account")
    expect(page.get_by_label("E-mail")).to_have_value(f"{name}@example.com")
    page.get_by_label("Real name").fill("Alex Account")
    page.get_by_role("button", name="Save profile").click()
    expect(page.locator("#flash")).to_have_text("Profile saved.")
    expect(page.get_by_label("Real name")).to_have_value("Alex Account")
    assert site.api("GET", f"/users/{user_id(site, name)}")[2]["realname"] == "Alex Account"

    page.get_by_label("Current password").fill("Account-pass-1")
    page.get_by_label("New password", exact=True).fill("Account-pass-2")
    page.get_by_label("New password again").fill("Account-pass-3")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert").filter(has_text="differ")).to_have_text("The two new passwords differ.")
    portal.check("account")
    page.get_by_label("New password again").fill("Account-pass-2")
    page.get_by_label("Current password").fill("Wrong-pass-1")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert").filter(has_text="old password")).to_have_text(
        "the old password is incorrect"
    )
    page.get_by_label("Current password").fill("Account-pass-1")
    page.get_by_role("button", name="Change password").click()
    # The session ended with the old password: sign in again, and come back to the account.
    expect(page).to_have_url(re.compile(r".*/harbor/sign-in\?next=/harbor/account$"))
    expect(page.locator("#flash")).to_have_text("Password changed: sign in with the new one.")
    page.get_by_label("Username or e-mail").fill(name)
    page.get_by_label("Password").fill("Account-pass-2")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r".*/harbor/account$"))
    expect(page.get_by_label("Real name")).to_have_value("Alex Account")


def test_a_visitor_signs_up_while_self_registration_is_on(site: Site, open_portal: Any) -> None:
    name = unique("new")
    portal: Portal = open_portal("visitor")
    page = portal.page
    with configuration_restored(site):
        status, _, answer = site.api("PUT", "/configurations", {"self_registration": True})
        assert status == 200, answer
        eventually(page, "/harbor/sign-in", lambda: page.get_by_role("link", name="Create one").count() == 1)
        page.get_by_role("link", name="Create one").click()
        expect(page).to_have_url(re.compile(r".*/harbor/sign-up$"))
        page.get_by_label("Username").fill(name)
        page.get_by_label("E-mail").fill(f"{name}@example.com")
        page.get_by_label("Password", exact=True).fill("Signup-pass-1")
        page.get_by_label("Password again").fill("Signup-pass-1")
        portal.check("sign-up")
        page.get_by_role("button", name="Create account").click()
        expect(page).to_have_url(re.compile(r".*/harbor/sign-in$"))
        expect(page.locator("#flash")).to_have_text("Account created: sign in with it.")
        portal.sign_in(name, "Signup-pass-1")
    # Self-registration off again: no link, and no page.
    portal.sign_out()
    eventually(page, "/harbor/sign-in", lambda: page.get_by_role("link", name="Create one").count() == 0)
    response = page.goto("/harbor/sign-up")
    assert response is not None
    assert response.status == 404
