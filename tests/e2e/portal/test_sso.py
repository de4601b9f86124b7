"""Single sign-on in a browser: a Wharf of its own (the auth mode changes only while `admin` is
the only user, so not on the shared site) switched to `cas_auth` against a real CAS server
(django-mama-cas). The sign-in page's "Sign in with CAS" leads to CAS's form and back, signed in;
the account page shows the CLI secret, which Harbor's API and skopeo (a push through the front
door) then take with the username."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.portal.conftest import PORTAL, Site
from tests.images import make_image, write_layout
from tests.support.cas_server import CasServer, CasUserSeed, running_cas_server
from tests.support.portal import Portal

pytestmark = [pytest.mark.e2e, PORTAL, pytest.mark.timeout(300)]

USERS = {"carol": CasUserSeed("Carol-pass-1", "Carol Cas", "carol@example.test", ("devs",))}


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CasServer]:
    with running_cas_server(tmp_path_factory.mktemp("cas"), USERS) as server:
        yield server


@pytest.fixture(scope="module")
def cas_site(tmp_path_factory: pytest.TempPathFactory, cas: CasServer) -> Iterator[Site]:
    site = Site(tmp_path_factory.mktemp("sso-site"))
    try:
        site.started()
        change = {"auth_mode": "cas_auth", **cas.configuration()}
        status, _, answer = site.api("PUT", "/configurations", change)
        assert status == 200, answer
        yield site
    finally:
        site.stop()


def test_sign_in_with_cas_and_the_cli_secret(cas_site: Site, browser: Any, tmp_path: Path) -> None:
    portal = Portal(browser, cas_site.url, "carol")
    try:
        page = portal.page
        page.goto("/harbor/sign-in")
        portal.check("sign-in-cas")
        page.get_by_role("link", name="Sign in with CAS").click()
        page.locator("input[name=username]").fill("carol")
        page.locator("input[name=password]").fill("Carol-pass-1")
        page.locator("input[name=password]").press("Enter")
        expect(page).to_have_url(re.compile(re.escape(cas_site.url) + r"/harbor/projects"))
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        portal.console_errors.clear()  # CAS's own page asks for assets it does not have: not ours

        portal.visit("/harbor/account", shot="account-cli-secret")
        secret = page.locator("#cli-secret").inner_text().strip()
        assert len(secret) >= 32
        status, _, me = cas_site.api("GET", "/users/current", auth=("carol", secret))
        assert status == 200, me
        assert me["username"] == "carol"
        assert me["oidc_user_meta"]["secret"] == secret
    finally:
        portal.close()

    # docker/skopeo with the CLI secret, through the front door: a project of carol's, a push.
    status, _, answer = cas_site.api("POST", "/projects", {"project_name": "carols"}, auth=("carol", secret))
    assert status == 201, answer
    layout = tmp_path / "layout"
    write_layout(layout, [make_image("portal-sso-cli-secret", layer_sizes=(50_000,))])
    skopeo = cas_site.skopeo("carol")
    ref = f"docker://{cas_site.address}/carols/app:v1"
    creds = f"carol:{secret}"
    skopeo.ok("copy", "--dest-tls-verify=false", "--dest-creds", creds, f"oci:{layout}:latest", ref)
    skopeo.ok("inspect", "--tls-verify=false", "--creds", creds, ref)
