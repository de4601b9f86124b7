"""A stand-in upstream for proxy tests: a real HTTP server that tells what it received."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.processes import ServiceProcess, free_port

MiB = 1024 * 1024
GATE = web.AppKey("gate", asyncio.Event)  # opened by the test: `/v2/slow` sends the rest
HUNG = web.AppKey("hung", asyncio.Event)  # set once a hanging route holds a request
SEEN = web.AppKey("seen", list[str])
# What `/health/ready` reports, as a service's readiness does: every check "ok", or a cause.
# Change it to make the upstream unready.
READINESS = web.AppKey("readiness", dict[str, str])
# Set when the server shuts down: a hanging handler ends, rather than hold the shutdown for its
# whole timeout (a paused reader never notices that the proxy dropped its connection).
SHUTDOWN = web.AppKey("shutdown", asyncio.Event)


def upstream_app(label: str, *, misbehaving: bool = True) -> web.Application:
    """An upstream that tells what it received; `/v2/bytes/{n}` streams n bytes; the other
    routes misbehave on purpose (hang, fall silent, drip, ignore the body) unless `misbehaving`
    is off (then the echo answers their paths). `SEEN` lists the paths the echo answered."""

    async def echo(request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_chunked(MiB):
            digest.update(chunk)
            size += len(chunk)
        request.app[SEEN].append(request.path_qs)
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
        """8 MiB: a quarter MiB at once, the rest when the test opens the gate (`release`)."""
        response = web.StreamResponse()
        response.content_length = 8 * MiB
        await response.prepare(request)
        await response.write(b"s" * (MiB // 4))
        await request.app[GATE].wait()
        for _ in range(31):
            await response.write(b"s" * (MiB // 4))
        return response

    async def hang(request: web.Request) -> web.StreamResponse:
        """Takes the request (body included), then never answers: a hung instance."""
        await request.read()
        request.app[HUNG].set()
        await request.app[SHUTDOWN].wait()
        raise web.HTTPServiceUnavailable()

    async def hang_mid_body(request: web.Request) -> web.StreamResponse:
        """Answers 200 with 1 MiB of a promised 4 MiB, then falls silent."""
        response = web.StreamResponse()
        response.content_length = 4 * MiB
        await response.prepare(request)
        await response.write(b"h" * MiB)
        await request.app[SHUTDOWN].wait()
        raise web.HTTPServiceUnavailable()

    async def ignore_body(request: web.Request) -> web.StreamResponse:
        """Reads none of the body and never answers: its connection stops taking bytes."""
        request.app[HUNG].set()
        await request.app[SHUTDOWN].wait()
        raise web.HTTPServiceUnavailable()

    async def drip(request: web.Request) -> web.StreamResponse:
        """`n` pieces of 64 KiB, `ms` apart: slow but steady. The pauses are the behaviour
        under test (an upstream that takes long in total but is never silent for long)."""
        pieces, pause = int(request.match_info["n"]), int(request.match_info["ms"]) / 1000
        response = web.StreamResponse()
        response.content_length = pieces * 64 * 1024
        await response.prepare(request)
        for _ in range(pieces):
            await response.write(b"d" * 64 * 1024)
            await asyncio.sleep(pause)
        return response

    async def reset(request: web.Request) -> web.StreamResponse:
        """Takes the request, then drops the connection without a word: an instance killed."""
        await request.read()
        assert request.transport is not None
        request.transport.abort()
        raise web.HTTPServiceUnavailable()

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(request: web.Request) -> web.Response:
        checks = request.app[READINESS]
        ok = all(value == "ok" for value in checks.values())
        body = {"status": "ok" if ok else "unavailable", "checks": checks}
        return web.json_response(body, status=200 if ok else 503)

    app = web.Application(client_max_size=1024**3)
    app[GATE] = asyncio.Event()
    app[HUNG] = asyncio.Event()
    app[SEEN] = []
    app[SHUTDOWN] = asyncio.Event()
    app[READINESS] = {"database": "ok", "redis": "ok"}

    async def release(app: web.Application) -> None:
        app[SHUTDOWN].set()

    app.on_shutdown.append(release)
    app.router.add_get("/health", health)
    app.router.add_get("/health/ready", ready)
    if misbehaving:
        app.router.add_route("*", "/v2/hang", hang)
        app.router.add_get("/v2/hang-mid-body", hang_mid_body)
        app.router.add_route("*", "/v2/ignore-body", ignore_body)
        app.router.add_get("/v2/drip/{n}/{ms}", drip)
        app.router.add_route("*", "/v2/reset/{tail:.*}", reset)
    app.router.add_get("/v2/bytes/{n}", stream_bytes)
    app.router.add_get("/v2/redirect", redirect)
    app.router.add_get("/v2/cut", cut)
    app.router.add_get("/v2/slow", slow)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def start_upstream(label: str, host: str = "127.0.0.1", *, misbehaving: bool = True) -> TestServer:
    """A started upstream; its app is `server.app` (`GATE`, `HUNG`, `SEEN`)."""
    server = TestServer(upstream_app(label, misbehaving=misbehaving), host=host, port=free_port(host))
    await server.start_server()
    return server


def upstream_process(label: str, host: str, port: int, log_dir: Path) -> ServiceProcess:
    """The stand-in (not misbehaving) as a process of its own, not started: one a test can kill
    outright, as an instance dies, and start again on the same port."""
    argv = [sys.executable, "-m", "tests.support.upstream", label, host, str(port)]
    return ServiceProcess(
        f"upstream-{label}", argv, dict(os.environ), host, port, log_dir / f"upstream-{label}.log"
    )


if __name__ == "__main__":
    name, address, number = sys.argv[1:4]
    web.run_app(upstream_app(name, misbehaving=False), host=address, port=int(number), print=None)
