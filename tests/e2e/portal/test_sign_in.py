"""Signing in and out of the portal: the way in from `/`, a wrong password told plainly, the way
back to the page that asked for a sign-in, and a session that ends with sign-out."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.portal.conftest import ADMIN_PASSWORD, PORTAL, Site
from tests.support.portal import DESKTOP, PHONE, Portal

pytestmark = [pytest.mark.e2e, PORTAL, pytest.mark.timeout(180)]


def test_the_way_in_wrong_password_and_sign_out(site: Site, open_portal: Any) -> None:
    portal: Portal = open_portal("visitor")
    page = portal.page
    page.goto("/")
    expect(page).to_have_url(re.compile(r".*/harbor/sign-in"))
    portal.check("sign-in")

    page.get_by_label("Username or e-mail").fill("admin")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")

    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r".*/harbor/projects"))
    expect(page.get_by_role("link", name="Your account: admin")).to_be_visible()

    portal.sign_out()
    # The session is over: a page that needs one sends to sign in, and back after.
    page.goto("/harbor/projects?name=x")
    expect(page).to_have_url(re.compile(r".*/harbor/sign-in\?next=.*"))
    asked = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)
    assert asked["next"] == ["/harbor/projects?name=x"]
    page.get_by_label("Username or e-mail").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r".*/harbor/projects\?name=x"))


def test_a_next_that_leads_elsewhere_is_not_followed(site: Site, open_portal: Any) -> None:
    portal: Portal = open_portal("visitor")
    page = portal.page
    page.goto("/harbor/sign-in?next=//evil.example/steal")
    page.get_by_label("Username or e-mail").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(re.escape(site.url) + r"/harbor/projects"))


def test_signing_in_with_the_keyboard_only(site: Site, open_portal: Any) -> None:
    """The sign-in page starts in its first field; Tab goes on to the password, Enter submits.
    On every page the first Tab reaches the skip link, which takes the keyboard past the
    navigation to the page's content."""
    portal: Portal = open_portal("keyboard")
    page = portal.page
    page.goto("/harbor/sign-in")
    expect(page.get_by_label("Username or e-mail")).to_be_focused()
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r".*/harbor/projects"))
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Name contains")).to_be_focused()


def test_on_a_phone_the_navigation_folds_behind_a_menu_button(site: Site, open_portal: Any) -> None:
    portal: Portal = open_portal("phone")
    portal.sign_in("admin", ADMIN_PASSWORD)
    page = portal.page
    page.set_viewport_size(PHONE)
    page.goto("/harbor/projects")
    menu = page.get_by_role("button", name="Menu")
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_role("link", name="Dashboard")).to_be_focused()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    portal.check("phone menu open")  # it leaves the page at desktop width
    page.set_viewport_size(PHONE)
    page.keyboard.press("Escape")
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(menu).to_be_focused()
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    # At desktop width there is no menu button: the navigation is always there.
    page.set_viewport_size(DESKTOP)
    expect(menu).to_be_hidden()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    expect(page).to_have_url(re.compile(r".*/harbor/dashboard$"))
