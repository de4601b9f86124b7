"""Each identity mode as its users meet it, against real peers: a directory user signs in to the
portal in the browser, their project role comes from a group the directory (or provider) says
they are in, skopeo pushes through the front door with their password (ldap_auth, http_auth) or
CLI secret (oidc_auth, cas_auth), and the directory's word is followed: removed from the group,
their next push is refused after the sync (LDAP's and OIDC's group syncs, the OA's next
answer; CAS says nothing between sign-ins); the peer down, its users are refused with the usual
message while the local admin still signs in.

Each mode is a `wharf run` of its own: the auth mode changes only while `admin` is the only user,
so not on the shared site."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.portal.conftest import ADMIN_PASSWORD, PORTAL, Site
from tests.images import make_image, write_layout
from tests.support.cas_server import CasUserSeed, running_cas_server
from tests.support.front_door import wait_until
from tests.support.oa import Oa, OaUser, serving
from tests.support.oidc_provider import OidcUserSeed, running_oidc_provider
from tests.support.portal import Portal
from tests.support.processes import free_port
from tests.support.slapd import USERS, group_dn, running_slapd

pytestmark = [pytest.mark.e2e, PORTAL, pytest.mark.timeout(300)]

DEVELOPER = 2
LDAP, HTTP, OIDC, CAS = 1, 2, 3, 4  # Harbor's group types
DENIED = ("unauthorized", "denied", "authentication required")


def configure(site: Site, settings: Mapping[str, Any]) -> None:
    status, _, answer = site.api("PUT", "/configurations", dict(settings))
    assert status == 200, answer


@contextmanager
def site_in_mode(
    tmp: Path,
    settings: Mapping[str, Any] | None,
    env: Mapping[str, str] | None = None,
    site: Site | None = None,
) -> Iterator[Site]:
    """A `wharf run` switched to `settings` (auth_mode and the mode's keys) by the admin's API."""
    site = site or Site(tmp, env)
    try:
        site.started()
        if settings:
            configure(site, settings)
        yield site
    finally:
        site.stop()


def team_for_group(site: Site, group: dict[str, Any]) -> None:
    """A private project `team` where the directory's `group` is a developer."""
    status, _, answer = site.api(
        "POST", "/projects", {"project_name": "team", "metadata": {"public": "false"}}
    )
    assert status == 201, answer
    status, _, answer = site.api(
        "POST", "/projects/team/members", {"role_id": DEVELOPER, "member_group": group}
    )
    assert status == 201, answer


class Pusher:
    """skopeo as one user, through the site's front door (the proxy), with their credentials."""

    def __init__(self, site: Site, tmp: Path, username: str, password: str) -> None:
        self.skopeo = site.skopeo(username)
        self.creds = f"{username}:{password}"
        self.address = site.address
        self.layout = tmp / f"layout-{username}"
        write_layout(self.layout, [make_image(f"identity-{username}", layer_sizes=(40_000,))])

    def push(self, tag: str) -> Any:
        return self.skopeo.run(
            "copy", "--dest-tls-verify=false", "--dest-creds", self.creds,
            f"oci:{self.layout}:latest", f"docker://{self.address}/team/app:{tag}",
        )  # fmt: skip

    def pushes(self, tag: str) -> None:
        result = self.push(tag)
        assert result.returncode == 0, self.skopeo.describe(result)
        self.skopeo.ok(
            "inspect", "--tls-verify=false", "--creds", self.creds, f"docker://{self.address}/team/app:{tag}"
        )

    def is_refused(self, tag: str) -> None:
        result = self.push(tag)
        assert result.returncode != 0
        assert self.skopeo.mentions(result, *DENIED), self.skopeo.describe(result)


def sees_team(page: Page, member: bool = True) -> None:
    """The projects page lists `team` (private) only to a member: the group membership (or its
    end) reached the portal too."""
    page.goto("/harbor/projects")
    expect(page.get_by_role("link", name="library", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="team", exact=True)).to_have_count(1 if member else 0)


def form_sign_in_refused(browser: Browser, site: Site, username: str, password: str) -> None:
    portal = Portal(browser, site.url, f"{username}-refused")
    try:
        page = portal.page
        page.goto("/harbor/sign-in")
        page.get_by_label("Username or e-mail").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    finally:
        portal.close()


def admin_still_signs_in(browser: Browser, site: Site) -> None:
    """A directory outage never locks ops out: the local admin signs in in every mode."""
    portal = Portal(browser, site.url, "admin")
    try:
        portal.sign_in("admin", ADMIN_PASSWORD)
    finally:
        portal.close()


def group_sync(site: Site, path: str) -> dict[str, Any]:
    """An admin's group sync request (`/ldap/groups/sync`, `/system/oidc/groups/sync`), answered
    by the job service's leader: its report."""
    status, _, asked = site.api("POST", path)
    assert status == 202, asked
    reports: list[dict[str, Any]] = []

    def answered() -> bool:
        status, _, answer = site.api("GET", path)
        if status == 200 and answer["request_id"] == asked["request_id"] and answer["finished_at"]:
            reports.append(answer)
        return bool(reports)

    wait_until(answered, f"the job service answered the request at {path}", timeout=60)
    return reports[0]


def test_ldap_auth(browser: Browser, tmp_path: Path) -> None:
    bob = USERS["bob"]
    with (
        running_slapd(tmp_path / "slapd") as slapd,
        site_in_mode(tmp_path, {"auth_mode": "ldap_auth", **slapd.configuration("ldaps")}) as site,
    ):
        team_for_group(site, {"ldap_group_dn": group_dn("developers")})
        portal = Portal(browser, site.url, "bob")
        try:
            portal.sign_in("bob", bob.password)
            sees_team(portal.page)
            portal.check("ldap-projects")
        finally:
            portal.close()
        pusher = Pusher(site, tmp_path, "bob", bob.password)
        pusher.pushes("1")

        slapd.remove_member("developers", bob.dn)
        report = group_sync(site, "/ldap/groups/sync")
        assert (report["removed"], report["failed"]) == (1, []), str(report)
        pusher.is_refused("2")

        slapd.stop()
        # alice, never signed in before (bob's password is still in the credential cache, which
        # answers as it would for a database user until it expires)
        form_sign_in_refused(browser, site, "alice", USERS["alice"].password)
        admin_still_signs_in(browser, site)


def test_http_auth(browser: Browser, tmp_path: Path) -> None:
    record = {"user": {"name": "olga", "mail": "olga@corp.test", "display": "Olga Oa"}, "groups": ["dev"]}
    oa = Oa(users={"olga": OaUser("Olga-oa-1", record)})
    settings = {
        "auth_mode": "http_auth",
        "http_authproxy_timeout": 2,
        "http_authproxy_username_field": "user.name",
        "http_authproxy_email_field": "user.mail",
        "http_authproxy_realname_field": "user.display",
        "http_authproxy_groups_field": "groups",
    }
    # Under http_auth the OA's answer at each cold login is the sync; the credential cache's window
    # (token.credential_cache_seconds) is off here so that the next login is cold.
    env = {"WHARF_TOKEN__CREDENTIAL_CACHE_SECONDS": "0"}
    with serving(oa), site_in_mode(tmp_path, {**settings, "http_authproxy_endpoint": oa.url}, env) as site:
        team_for_group(site, {"group_name": "dev", "group_type": HTTP})
        portal = Portal(browser, site.url, "olga")
        try:
            portal.sign_in("olga", "Olga-oa-1")
            sees_team(portal.page)
            portal.visit("/harbor/account", shot="http-auth-account")
            # The OA's attributes made the profile; the password is the OA's, not changed here.
            expect(portal.page.get_by_label("E-mail")).to_have_value("olga@corp.test")
            expect(portal.page.get_by_label("Real name")).to_have_value("Olga Oa")
            expect(portal.page.locator("#directory-password")).to_be_visible()
        finally:
            portal.close()
        pusher = Pusher(site, tmp_path, "olga", "Olga-oa-1")
        pusher.pushes("1")

        oa.users["olga"] = OaUser("Olga-oa-1", {**record, "groups": ["ops"]})
        pusher.is_refused("2")

        oa.status = 503  # the OA is down: its users are refused, the admin is not
        form_sign_in_refused(browser, site, "olga", "Olga-oa-1")
        admin_still_signs_in(browser, site)


def sso_sign_in(
    browser: Browser, site: Site, mode: str, button: str, username: str, password: str, *, member: bool = True
) -> str:
    """Through the sign-in page's button, the provider's own form and back, signed in: the CLI
    secret the account page shows (both pages checked and shot as `<mode>-…`); `member`: whether
    the provider's groups make them a member of `team`."""
    portal = Portal(browser, site.url, username)
    try:
        page = portal.page
        page.goto("/harbor/sign-in")
        portal.check(f"{mode}-sign-in")
        page.get_by_role("link", name=button).click()
        page.locator("input[name=username]").fill(username)
        page.locator("input[name=password]").fill(password)
        page.locator("input[name=password]").press("Enter")
        expect(page).to_have_url(re.compile(re.escape(site.url) + r"/harbor/projects"))
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        portal.console_errors.clear()  # the peer's own page asks for assets it does not have: not ours
        sees_team(page, member)
        portal.visit("/harbor/account", shot=f"{mode}-account-cli-secret")
        secret = page.locator("#cli-secret").inner_text().strip()
    finally:
        portal.close()
    assert len(secret) >= 32
    status, _, me = site.api("GET", "/users/current", auth=(username, secret))
    assert status == 200, me
    assert me["username"] == username
    return secret


def sso_outage_refused(browser: Browser, site: Site, button: str) -> None:
    portal = Portal(browser, site.url, "sso-refused")
    try:
        page = portal.page
        page.goto("/harbor/sign-in")
        page.get_by_role("link", name=button).click()
        expect(page.get_by_text("cannot be reached")).to_be_visible()
    finally:
        portal.close()


def test_oidc_auth(browser: Browser, tmp_path: Path) -> None:
    users = {"olivia": OidcUserSeed("Olivia-pass-1", "Olivia Oidc", "olivia@example.test", ("devs",))}
    site = Site(tmp_path)  # its port first: the provider must know the callback
    callback = f"{site.url}/c/oidc/callback"
    with site_in_mode(tmp_path, None, site=site):
        with running_oidc_provider(tmp_path / "oidc", users, redirect_uris=[callback]) as provider:
            configure(site, {"auth_mode": "oidc_auth", **provider.configuration()})
            team_for_group(site, {"group_name": "devs", "group_type": OIDC})
            secret = sso_sign_in(
                browser, site, "oidc", "Sign in with Test provider", "olivia", "Olivia-pass-1"
            )
            pusher = Pusher(site, tmp_path, "olivia", secret)
            pusher.pushes("1")
            # The provider drops her from `devs`: the next group sync (her refresh token) tells.
            provider.set_groups("olivia", [])
            report = group_sync(site, "/system/oidc/groups/sync")
            assert (report["checked"], report["changed"], report["failed"]) == (1, 1, []), report
            pusher.is_refused("2")
            provider.set_groups("olivia", ["devs"])
            report = group_sync(site, "/system/oidc/groups/sync")
            assert report["changed"] == 1, report
            pusher.pushes("3")
        # The provider is down: the CLI secret does not depend on it (the field report's
        # "docker login 401" once the SSO session ended)...
        pusher.pushes("4")
        # ...and its button says so plainly. The ui remembers discovery for minutes, so the
        # provider to reach at sign-in is one on a closed port.
        configure(site, {"oidc_endpoint": f"http://127.0.0.1:{free_port()}"})
        sso_outage_refused(browser, site, "Sign in with Test provider")
        admin_still_signs_in(browser, site)


def test_cas_auth(browser: Browser, tmp_path: Path) -> None:
    users = {"carol": CasUserSeed("Carol-pass-1", "Carol Cas", "carol@example.test", ("devs",))}
    with site_in_mode(tmp_path, None) as site:
        with running_cas_server(tmp_path / "cas", users) as cas:
            configure(site, {"auth_mode": "cas_auth", **cas.configuration()})
            team_for_group(site, {"group_name": "devs", "group_type": CAS})
            secret = sso_sign_in(browser, site, "cas", "Sign in with CAS", "carol", "Carol-pass-1")
            pusher = Pusher(site, tmp_path, "carol", secret)
            pusher.pushes("1")
            # CAS has no way to ask about someone between sign-ins: her next sign-in is the sync.
            cas.set_groups("carol", [])
            again = sso_sign_in(
                browser, site, "cas", "Sign in with CAS", "carol", "Carol-pass-1", member=False
            )
            assert again == secret  # the CLI secret outlives sign-ins
            pusher.is_refused("2")
            cas.set_groups("carol", ["devs"])
            sso_sign_in(browser, site, "cas", "Sign in with CAS", "carol", "Carol-pass-1")
        pusher.pushes("3")  # CAS is down: the CLI secret still works, and so does the admin
        admin_still_signs_in(browser, site)
