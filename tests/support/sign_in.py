"""Driving a single sign-on peer's login page as a browser would, with aiohttp's client: fetch
the page, fill its form (hidden fields, CSRF token and cookies kept), post it, and stop at the
redirect back to the relying party (which need not exist: it is never followed)."""

from __future__ import annotations

from html.parser import HTMLParser

import aiohttp
from yarl import URL


class _Form(HTMLParser):
    """The first form of a page: its action, method and the values of its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.method = "get"
        self.fields: dict[str, str] = {}
        self._inside = False
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and not self._done and not self._inside:
            self._inside = True
            self.action = values.get("action", "")
            self.method = values.get("method", "get").lower()
        elif (
            tag == "input"
            and self._inside
            and values.get("name")
            and values.get("type", "text").lower() not in ("submit", "button", "checkbox")
        ):
            self.fields[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._inside:
            self._inside, self._done = False, True


class SignInRefused(Exception):
    """The peer answered the form with a page again (wrong credentials), or not at all as expected."""


async def sign_in(session: aiohttp.ClientSession, url: str, username: str, password: str) -> URL:
    """Where the peer sends the browser once `username` signed in at `url` (its Location)."""
    async with session.get(url, allow_redirects=True) as response:
        page = await response.text()
        if response.status != 200:
            raise SignInRefused(f"{url} answered {response.status}: {page[:500]}")
        page_url = response.url
    form = _Form()
    form.feed(page)
    if form.action is None:
        raise SignInRefused(f"{page_url} has no form: {page[:500]}")
    action = page_url.join(URL(form.action)) if form.action else page_url
    fields = {**form.fields, "username": username, "password": password}
    async with session.post(action, data=fields, allow_redirects=False) as response:
        if response.status in (301, 302, 303, 307):
            return page_url.join(URL(response.headers["Location"]))
        raise SignInRefused(f"{action} answered {response.status}: {(await response.text())[:500]}")


def browser(*, verify: bool = True) -> aiohttp.ClientSession:
    """A client that keeps cookies for IP addresses too (the peers listen on 127.0.0.1); one that
    does not `verify` takes any certificate, like a user clicking through the warning."""
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True), connector=aiohttp.TCPConnector(ssl=verify)
    )
