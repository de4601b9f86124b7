"""A write to an upload whose body the proxy holds goes on to the next instance when the first
died with it, under one id of the proxy's (`X-Wharf-Upload-Write`) by which the registry takes
it once; a body the proxy does not hold, or a write to anything but an upload, is not sent twice.
The upstreams are real HTTP servers on loopback that take the request and drop the connection
(an instance killed) until told otherwise, and record what they received."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.service.proxy.test_proxy import proxy_client, proxy_settings
from tests.support.processes import free_port
from wharf_shared.accel import UPLOAD_WRITE, WRITE_ID

MiB = 1024 * 1024
UPLOAD = "/v2/team/app/blobs/uploads/0123456789abcdef0123456789abcdef"


@dataclass
class Instance:
    dies: bool  # takes each request whole, then drops the connection without an answer
    seen: list[tuple[str, str, str, int]] = field(default_factory=list)  # method, path, write id, size


async def start(instance: Instance) -> TestServer:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        instance.seen.append((request.method, request.path, request.headers.get(UPLOAD_WRITE, ""), len(body)))
        if instance.dies:
            assert request.transport is not None
            request.transport.abort()
            raise web.HTTPServiceUnavailable()
        return web.Response(status=202, headers={"Range": f"0-{len(body) - 1}"})

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=1024**3)
    app.router.add_get("/health", health)
    app.router.add_get("/health/ready", health)  # what the proxy's checks ask
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    return server


@pytest.fixture
async def instances() -> AsyncIterator[tuple[Instance, Instance, list[str]]]:
    dying, alive = Instance(dies=True), Instance(dies=False)
    servers = [await start(dying), await start(alive)]
    yield dying, alive, [f"http://{s.host}:{s.port}" for s in servers]
    for server in servers:
        await server.close()


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_a_held_upload_write_goes_on_to_the_next_instance_under_one_id(
    method: str, aiohttp_client: Any, tmp_path: Path, instances: tuple[Instance, Instance, list[str]]
) -> None:
    dying, alive, urls = instances
    # Health checks off (an hour apart): the rotation starts at the dying instance.
    client = await proxy_client(
        aiohttp_client,
        proxy_settings(tmp_path, urls, [], health_interval_seconds=3600, eject_after_failures=99),
    )
    body = b"layer bytes " * 1000
    # The client's own id is not the proxy's: it is dropped, and the proxy sets its own.
    resp = await client.request(method, UPLOAD, data=body, headers={UPLOAD_WRITE: "f" * 32})
    assert resp.status == 202, await resp.text()
    assert UPLOAD_WRITE not in resp.headers
    (first,), (second,) = dying.seen, alive.seen
    assert first == second, "the repeat differs from the write the dead instance took"
    assert first[:2] == (method, UPLOAD)
    assert first[3] == len(body)
    assert WRITE_ID.match(first[2])
    assert first[2] != "f" * 32

    # Another write is another id.
    resp = await client.request(method, UPLOAD, data=body)
    assert resp.status == 202
    assert len({seen[2] for seen in alive.seen}) == 2


async def test_writes_the_proxy_cannot_name_are_not_sent_twice(aiohttp_client: Any, tmp_path: Path) -> None:
    """A PATCH of a body larger than the proxy holds (streamed, never replayed), and a PATCH to
    something not an upload, die with the instance they went to: 503, sent once, with no id."""
    both = [Instance(dies=True), Instance(dies=True)]
    servers = [await start(instance) for instance in both]
    try:
        settings = proxy_settings(
            tmp_path,
            [f"http://{s.host}:{s.port}" for s in servers],
            [],
            health_interval_seconds=3600,
            eject_after_failures=99,
            retry_body_bytes=MiB,
        )
        client = await proxy_client(aiohttp_client, settings)
        for path, size in ((UPLOAD, 2 * MiB), ("/v2/team/app/manifests/v1", 100)):
            resp = await client.patch(path, data=io.BytesIO(b"x" * size))
            assert resp.status == 503, await resp.text()
    finally:
        for server in servers:
            await server.close()
    # Bodies sent (the continuation's offset probes are GETs, without one).
    seen = sorted((path, write) for instance in both for m, path, write, _ in instance.seen if m == "PATCH")
    assert seen == sorted([(UPLOAD, ""), ("/v2/team/app/manifests/v1", "")])
