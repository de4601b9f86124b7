"""A CMDB stand-in for the ownership sync's tests: a real HTTP server on a free port serving a JSON
document at `/api/projects` to requests with the right `Authorization` header (401 otherwise).

The test changes it while it runs: `document` (what is served), `delay` (seconds before
answering), `status` (answer every request with it), `garbage` (a 200 that is not JSON).
`requests` counts what arrived.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

TOKEN = "Bearer cmdb-t0ken"


@dataclass
class Cmdb:
    document: Any = field(default_factory=dict)
    authorization: str = TOKEN
    delay: float = 0.0
    status: int | None = None
    garbage: bool = False
    requests: int = 0
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/api/projects"))

    async def _projects(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.headers.get("Authorization") != self.authorization:
            return web.json_response({"error": "unauthorized"}, status=401)
        if self.status is not None:
            return web.json_response({"error": "broken"}, status=self.status)
        if self.garbage:
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        return web.Response(body=json.dumps(self.document).encode(), content_type="application/json")

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        """On a free port; over HTTPS with `tls` (a server context)."""
        app = web.Application()
        app.router.add_get("/api/projects", self._projects)
        self.server = TestServer(app, host="127.0.0.1", scheme="https" if tls else "http")
        await self.server.start_server(ssl=tls)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()
