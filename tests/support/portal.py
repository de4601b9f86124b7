"""The portal as a person sees it: Debian's Chromium driven by Playwright, a signed-in browser
context per user, and `Portal.visit`, which opens a page, checks it with axe-core (no serious or
critical violation), and saves screenshots at desktop and phone width under `SCREENSHOTS`.

`make test` prints where the screenshots are at its end (`WHARF_TEST_SCREENSHOTS` moves them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import axe_playwright_python
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests.support import backends
from tests.support.processes import ROOT

SCREENSHOTS = Path(os.environ.get("WHARF_TEST_SCREENSHOTS", ROOT / "test-results" / "portal-screenshots"))
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
# axe-core comes bundled with axe-playwright-python (no download at test time).
AXE_SOURCE = (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()
BLOCKING = ("serious", "critical")
TIMEOUT_MS = 20_000


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@contextmanager
def chromium() -> Iterator[tuple[Playwright, Browser]]:
    binary = chromium_path()
    if binary is None:
        backends.unavailable("chromium", FileNotFoundError("Debian's chromium is not installed"))
    assert binary is not None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=binary, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield playwright, browser
        finally:
            browser.close()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class AccessibilityViolations(AssertionError):
    pass


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_SOURCE)  # not a script tag: the portal's CSP refuses inline scripts
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v.get("impact") in BLOCKING]


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for violation in violations:
        targets = [" ".join(map(str, node.get("target", []))) for node in violation["nodes"][:5]]
        lines.append(f"{violation['impact']}: {violation['id']} ({violation['help']}) at {targets}")
    return "\n".join(lines)


class Portal:
    """One user's browser (its own context: cookies, storage) on the site at `base`."""

    def __init__(self, browser: Browser, base: str, who: str) -> None:
        self.base = base.rstrip("/")
        self.who = who
        self.context: BrowserContext = browser.new_context(viewport=DESKTOP, base_url=self.base)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page: Page = self.context.new_page()
        self.shots: list[Path] = []
        self.console_errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.console_errors.append(str(error)))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def close(self) -> None:
        self.context.close()

    def sign_in(self, username: str, password: str) -> None:
        self.page.goto("/harbor/sign-in")
        self.page.get_by_label("Username or e-mail").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page.get_by_role("button", name="Sign out")).to_be_visible()

    def sign_out(self) -> None:
        self.page.get_by_role("button", name="Sign out").click()
        self.page.wait_for_url(re.compile(r".*/harbor/sign-in.*"))

    def visit(self, path: str, shot: str | None = None) -> Page:
        """Open `path` (through the proxy, as a person would), then `check` it."""
        response = self.page.goto(path)
        assert response is not None, path
        assert response.status < 400, (path, response.status)
        if shot:
            self.check(shot)
        return self.page

    def check(self, shot: str) -> None:
        """The page as it is now, at desktop and phone width: no serious accessibility violation,
        nothing wider than the screen, no script error, and a screenshot of each (`<shot>.png`,
        `<shot>-phone.png`)."""
        page = self.page
        page.wait_for_load_state("load")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        problems = []
        for label, viewport in (("", DESKTOP), ("-phone", PHONE)):
            page.set_viewport_size(viewport)
            violations = axe_violations(page)
            if violations:
                problems.append(f"{shot}{label} ({page.url}):\n{describe(violations)}")
            # Nothing wider than the screen: a phone user never scrolls sideways to read a page.
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > viewport["width"]:
                problems.append(
                    f"{shot}{label} ({page.url}): {width} px wide on a {viewport['width']} px screen"
                )
            target = SCREENSHOTS / f"{slug(shot)}{label}.png"
            page.screenshot(path=str(target), full_page=True)
            self.shots.append(target)
        page.set_viewport_size(DESKTOP)
        if problems:
            raise AccessibilityViolations("\n".join(problems))
        assert not self.console_errors, self.console_errors

    def accept_next_dialog(self) -> None:
        """The next `confirm()` the page asks is answered OK (Playwright dismisses it otherwise)."""
        self.page.once("dialog", lambda dialog: dialog.accept())

    def api(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """A call to the API with this browser's cookies and no CSRF header unless `headers`
        holds one (a test may read the page's token to send it): what a forged request can and
        cannot do."""
        sent = {"Content-Type": "application/json"} if body is not None else {}
        response = self.context.request.fetch(
            self.base + path,
            method=method,
            data=json.dumps(body) if body is not None else None,
            headers={**sent, **(headers or {})},
        )
        try:
            answer = response.json()
        except Exception:
            answer = response.text()
        return response.status, answer
