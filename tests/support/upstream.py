"""A stand-in upstream for proxy tests: a real HTTP server that tells what it received."""

from __future__ import annotations

import asyncio
import hashlib

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.processes import free_port

MiB = 1024 * 1024


def upstream_app(label: str) -> web.Application:
    """An upstream that tells what it received; `/v2/bytes/{n}` streams n bytes."""

    async def echo(request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_chunked(MiB):
            digest.update(chunk)
            size += len(chunk)
        body = {
            "upstream": label,
            "method": request.method,
            "path": request.path_qs,
            "headers": dict(request.headers),
            "size": size,
            "sha256": digest.hexdigest(),
        }
        return web.json_response(body, headers={"X-Upstream": label})

    async def stream_bytes(request: web.Request) -> web.StreamResponse:
        size = int(request.match_info["n"])
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        block = bytes(range(256)) * 4096  # 1 MiB
        sent = 0
        while sent < size:
            piece = block[: min(len(block), size - sent)]
            await response.write(piece)
            sent += len(piece)
        return response

    async def redirect(request: web.Request) -> web.Response:
        own = f"http://{request.host}"
        return web.Response(status=201, headers={"Location": f"{own}/v2/x/blobs/sha256:1"})

    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 10 * MiB
        await response.prepare(request)
        await response.write(b"x" * MiB)
        assert request.transport is not None
        request.transport.abort()  # dies mid-body
        return response

    async def slow(request: web.Request) -> web.StreamResponse:
        """8 MiB over about 1.5 seconds: long enough to be in flight when the proxy is told to stop."""
        response = web.StreamResponse()
        response.content_length = 8 * MiB
        await response.prepare(request)
        for _ in range(32):
            await response.write(b"s" * (MiB // 4))
            await asyncio.sleep(0.05)
        return response

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=1024**3)
    app.router.add_get("/health", health)
    app.router.add_get("/v2/bytes/{n}", stream_bytes)
    app.router.add_get("/v2/redirect", redirect)
    app.router.add_get("/v2/cut", cut)
    app.router.add_get("/v2/slow", slow)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def start_upstream(label: str, host: str = "127.0.0.1") -> TestServer:
    server = TestServer(upstream_app(label), host=host, port=free_port(host))
    await server.start_server()
    return server
