"""The portal's browser tests share one `wharf run` (what `make run` starts: the portal at the URL
it prints, through the proxy): every module here is in the xdist group `portal`, so they run on
one worker, one after another, against the same site; each test has a Chromium of its own.

Tests create what they need under names of their own (a project per test), so their order does
not matter. `site.api(...)` is Harbor's API as the admin (curl), for set-up and for checking
what the portal did; what a test proves is done in the browser.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from tests.e2e.conftest import Registry, Skopeo, make_skopeo
from tests.e2e.test_harbor_routine import Curl
from tests.support.portal import Portal, chromium
from tests.support.processes import ServiceProcess, free_port, service_env
from tests.support.wharf_run import Run

ADMIN_PASSWORD = "Portal-admin-1"
PORTAL = pytest.mark.xdist_group("portal")


class Site:
    """One `wharf run`, started as a new user would: a data dir, a front port, the admin's password."""

    def __init__(self, tmp: Path, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self.tmp = tmp
        env = service_env(
            {
                "WHARF_DATA_DIR": str(tmp / "site"),
                "WHARF_HTTP_PORT": str(self.port),
                "WHARF_ADMIN_PASSWORD": ADMIN_PASSWORD,
                **(env or {}),
            }
        )
        env.pop("WHARF_REDIS_URL", None)  # the private Redis, as make run
        self.run = Run(tmp, env, "wharf-run")
        self.curl = Curl(self.url)
        self.admin = ("admin", ADMIN_PASSWORD)

    def started(self) -> None:
        self.run.wait_for(re.escape(f"Wharf is running at {self.url}"), timeout=120)

    def api(
        self, method: str, path: str, body: Any = None, auth: tuple[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        return self.curl(method, "/api/v2.0" + path, auth or self.admin, body)

    def create_user(self, username: str, password: str, *, sysadmin: bool = False) -> int:
        status, headers, answer = self.api(
            "POST",
            "/users",
            {
                "username": username,
                "password": password,
                "email": f"{username}@example.com",
                "realname": username.title(),
            },
        )
        assert status == 201, answer
        user_id = int(headers["location"].rsplit("/", 1)[1])
        if sysadmin:
            status, _, answer = self.api("PUT", f"/users/{user_id}/sysadmin", {"sysadmin_flag": True})
            assert status == 200, answer
        return user_id

    def skopeo(self, name: str) -> Skopeo:
        holder = ServiceProcess("wharf-run", [], {}, "127.0.0.1", self.port, self.run.log)
        return make_skopeo(Registry(holder, "token", "sqlite", self.tmp, None), self.tmp / f"skopeo-{name}")

    def stop(self) -> None:
        if self.run.process.poll() is None:
            self.run.interrupt()


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    site = Site(tmp_path_factory.mktemp("portal"))
    try:
        site.started()
        yield site
    finally:
        site.stop()


@pytest.fixture
def browser() -> Iterator[Browser]:
    """One Chromium per test, never longer: Playwright's sync API runs its event loop in this
    thread while it is started, and every asyncio test after it on this worker (`asyncio.run`,
    pytest-asyncio) would find a loop already running."""
    with chromium() as (_, browser):
        yield browser


@pytest.fixture
def open_portal(browser: Browser, site: Site) -> Iterator[Any]:
    """`open_portal("alice")`: a browser of its own for each user a test plays; closed after."""
    opened: list[Portal] = []

    def open_one(who: str) -> Portal:
        portal = Portal(browser, site.url, who)
        opened.append(portal)
        return portal

    yield open_one
    for portal in opened:
        portal.close()


@pytest.fixture
def admin(open_portal: Any) -> Portal:
    portal: Portal = open_portal("admin")
    portal.sign_in("admin", ADMIN_PASSWORD)
    return portal
