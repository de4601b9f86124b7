"""An OA stand-in for `http_auth` tests: a real HTTP server on a free port that checks passwords
the way an in-house system would answer Wharf (`wharf_shared.auth.http`): a POST with a JSON
body and Basic auth, 200 with the user's JSON record when the password is right, 401 when not.

The test changes its behaviour while it runs: `delay` (seconds before answering), `status`
(answer every request with it, e.g. 500), `garbage` (a 200 that is not JSON), `users`.
`requests` records what arrived (username, whether JSON body and Basic header agreed).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class OaUser:
    password: str
    record: dict[str, Any] = field(default_factory=dict)  # what the OA answers about them


@dataclass
class Oa:
    users: dict[str, OaUser] = field(default_factory=dict)
    delay: float = 0.0
    status: int | None = None
    garbage: bool = False
    requests: list[tuple[str, bool]] = field(default_factory=list)
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/api/login"))

    async def _login(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            basic = base64.b64decode(encoded).decode().partition(":") if scheme == "Basic" else ("", "", "")
        except (binascii.Error, UnicodeDecodeError):
            basic = ("", "", "")
        username, password = str(body.get("username", "")), str(body.get("password", ""))
        self.requests.append((username, (basic[0], basic[2]) == (username, password)))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status is not None:
            return web.json_response({"error": "broken"}, status=self.status)
        if self.garbage:
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        user = self.users.get(username)
        if user is None or user.password != password:
            return web.json_response({"error": "invalid credentials"}, status=401)
        return web.json_response(user.record)

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        """On a free port; over HTTPS with `tls` (a server context)."""
        app = web.Application()
        app.router.add_post("/api/login", self._login)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server(ssl=tls)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()


@contextmanager
def serving(oa: Oa) -> Iterator[Oa]:
    """The stand-in served from an event loop in a thread of its own, for tests that are not
    async (the browser's): change its fields from the test as usual."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="oa-stand-in", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(oa.start(), loop).result(timeout=30)
        try:
            yield oa
        finally:
            asyncio.run_coroutine_threadsafe(oa.stop(), loop).result(timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
