"""An upload's life: it expires when abandoned and is purged, survives its client hanging up,
moves between registry instances, and stays whole when many requests race for one blob or
one upload. On every database backend, against the app served as `serve_forever` serves it.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from sqlalchemy import select

from tests.support import wire
from tests.support.oci import V2, digest_of, error_code
from tests.support.uploads import stored_bytes, stored_upload
from wharf_registry.app import create_app
from wharf_registry.keys import UPLOADS
from wharf_registry.uploads import BLOCK
from wharf_registry.uploads import _key as upload_key
from wharf_shared.accel import UPLOAD_OFFSET
from wharf_shared.config import Settings
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.storage import paths

R = "library/app"
FIRST = b"acknowledged chunk " * 64
TAIL = b"the rest of the blob " * 16
SENT = BLOCK + 1024 * 1024  # what a client that hangs up got out before it did: past one storage block
BIG = bytes(range(251)) * (2 * SENT // 251)
ORPHAN_GRACE = 600  # Uploads.purge leaves an upload directory this young alone
PURGE_LOCK = "wharf:uploads:purge"  # one purge per interval across instances


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    return await aiohttp_client(wire.ProductionServer(create_app(settings)))


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=1)
    yield database
    await database.close()


def upload_id(location: str) -> str:
    return location.rsplit("/", 1)[-1]


async def start_upload(v2: V2, data: bytes = b"", name: str = R) -> str:
    resp = await v2.request("POST", f"/v2/{name}/blobs/uploads/")
    assert resp.status == 202, await resp.text()
    location = resp.headers["Location"]
    if data:
        resp = await v2.request("PATCH", location, data=data, headers={"Content-Range": f"0-{len(data) - 1}"})
        assert resp.status == 202, await resp.text()
    return location


async def hang_up_on(
    client: TestClient[Any, Any], method: str, target: str, declared: bytes, root: Path
) -> None:
    """Announce `declared`, send part of it, and close once the server has stored unacknowledged
    bytes; return when the server is done with the request."""
    upload = upload_id(target.split("?")[0])
    before = stored_bytes(root, upload)
    head = wire.request_head(method, target, {"Content-Length": str(len(declared))})

    async def stored() -> None:
        await wire.wait_until(lambda: stored_bytes(root, upload) > before, "unacknowledged bytes on disk")

    await wire.hang_up(client.server.host, client.server.port, head, declared[:SENT], before_close=stored)
    await wire.wait_idle(client.app)


async def status_range(v2: V2, location: str) -> str:
    resp = await v2.request("GET", location)
    assert resp.status == 204, await resp.text()
    return resp.headers["Range"]


async def pulled(v2: V2, name: str, digest: str) -> bytes:
    resp = await v2.request("GET", f"/v2/{name}/blobs/{digest}")
    assert resp.status == 200, await resp.text()
    return await resp.read()


async def upload_keys(redis: Redis) -> set[str]:
    return {k.decode() async for k in redis.scan_iter(match=upload_key("*"))}


def upload_dirs(settings: Settings) -> set[str]:
    base = settings.storage_root / paths.UPLOADS
    return {p.name for p in base.iterdir()} if base.is_dir() else set()


# -- abandoned uploads -----------------------------------------------------------------------


async def test_abandoned_upload_expires_and_is_purged(
    v2: V2,
    client: TestClient[Any, Any],
    settings: Settings,
    redis: Redis,
    db: Database,
) -> None:
    uploads = client.app[UPLOADS]
    expiry = settings.registry.upload_expiry_seconds
    abandoned, live, fresh = [await start_upload(v2, FIRST) for _ in range(3)]
    directory = {
        loc: settings.storage_root / paths.upload_dir(upload_id(loc)) for loc in (abandoned, live, fresh)
    }

    # A session lives `upload_expiry_seconds` past its last chunk.
    assert expiry - 5 <= await redis.ttl(upload_key(upload_id(abandoned))) <= expiry
    await redis.expire(upload_key(upload_id(live)), 100)
    resp = await v2.request("PATCH", live, data=TAIL)
    assert resp.status == 202
    assert await redis.ttl(upload_key(upload_id(live))) > expiry - 5

    # The sessions of `abandoned` and `fresh` run out; to the client they no longer exist.
    for location in (abandoned, fresh):
        await redis.pexpire(upload_key(upload_id(location)), 1)
    deadline = time.monotonic() + 5
    while await redis.exists(*(upload_key(upload_id(loc)) for loc in (abandoned, fresh))):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    for method, kwargs in (
        ("GET", {}),
        ("PATCH", {"data": TAIL}),
        ("PUT", {"params": {"digest": digest_of(FIRST)}}),
        ("DELETE", {}),
    ):
        resp = await v2.request(method, abandoned, **kwargs)
        assert (resp.status, await error_code(resp)) == (404, "BLOB_UPLOAD_UNKNOWN"), method

    # Within the orphan grace nothing is purged: a new upload's session may lag its directory.
    assert await uploads.purge(60) == 0
    assert all(d.exists() for d in directory.values())

    # Past it, the abandoned upload goes; the live one (old, but with a session) stays.
    aged = time.time() - ORPHAN_GRACE - 5
    for location in (abandoned, live):
        os.utime(directory[location], (aged, aged))
    await redis.delete(PURGE_LOCK)  # the next interval
    assert await uploads.purge(60) == 1
    assert not directory[abandoned].exists()
    assert directory[live].exists()
    assert directory[fresh].exists()

    # One purge per interval, whichever instance runs it.
    os.utime(directory[fresh], (aged, aged))
    assert await uploads.purge(60) == 0
    assert directory[fresh].exists()
    await redis.delete(PURGE_LOCK)
    assert await uploads.purge(60) == 1
    assert not directory[fresh].exists()

    # The live upload is whole and completes; nothing of the purged ones became a blob.
    resp = await v2.request("PUT", live, params={"digest": digest_of(FIRST + TAIL)})
    assert resp.status == 201, await resp.text()
    assert await pulled(v2, R, digest_of(FIRST + TAIL)) == FIRST + TAIL
    assert (await v2.request("HEAD", f"/v2/{R}/blobs/{digest_of(FIRST)}")).status == 404
    async with db.read() as conn:
        digests = (await conn.execute(select(t.blob.c.digest))).scalars().all()
    assert digests == [digest_of(FIRST + TAIL)]
    assert upload_dirs(settings) == set()
    assert await upload_keys(redis) == set()


# -- many pushes of one blob -----------------------------------------------------------------

SHARED = bytes(range(256)) * 3000  # 768 KB, under aiohttp's warning size for a bytes body
REPOSITORIES = {
    "one-repository": [R] * 10,
    "several-repositories": [f"team{i % 5}/app" for i in range(10)],
}


@pytest.mark.parametrize("where", list(REPOSITORIES))
async def test_concurrent_pushes_of_one_blob(
    v2: V2,
    client: TestClient[Any, Any],
    settings: Settings,
    redis: Redis,
    db: Database,
    where: str,
) -> None:
    """Ten pushes at once, monolithic and chunked: all succeed, one blob row, one link per
    repository, the bytes intact, and no upload left over."""
    repositories = REPOSITORIES[where]
    digest = digest_of(SHARED)
    pushes = [
        v2.push_blob(name, SHARED) if i % 2 else v2.push_blob_chunked(name, SHARED, 200_000)
        for i, name in enumerate(repositories)
    ]
    assert await asyncio.gather(*pushes) == [digest] * len(repositories)

    async with db.read() as conn:
        blobs = (await conn.execute(select(t.blob.c.digest, t.blob.c.size))).all()
        links = (
            await conn.execute(
                select(t.repository.c.name, t.blob.c.digest).select_from(
                    t.repository_blob.join(
                        t.repository, t.repository.c.id == t.repository_blob.c.repository_id
                    ).join(t.blob, t.blob.c.id == t.repository_blob.c.blob_id)
                )
            )
        ).all()
    assert [tuple(row) for row in blobs] == [(digest, len(SHARED))]
    assert sorted(tuple(row) for row in links) == sorted((name, digest) for name in set(repositories))
    for name in set(repositories):
        assert await pulled(v2, name, digest) == SHARED
    assert upload_dirs(settings) == set()
    assert await upload_keys(redis) == set()
    assert wire.server_errors(client.app) == {}


# -- hang-ups, and another instance finishing the job -------------------------------------------


async def test_resume_on_another_instance_after_hang_ups(
    aiohttp_client: Any,
    v2: V2,
    client: TestClient[Any, Any],
    settings: Settings,
) -> None:
    """The client hangs up mid-PATCH and then mid-PUT on instance A; instance B, which has no
    running hash for the upload, reports only acknowledged bytes and finishes the blob."""
    other: TestClient[Any, Any] = await aiohttp_client(wire.ProductionServer(create_app(settings)))
    b = V2(other)
    location = await start_upload(v2, FIRST)
    root = settings.storage_root
    acked = len(FIRST)

    await hang_up_on(client, "PATCH", location, BIG, root)
    assert await status_range(b, location) == f"0-{acked - 1}"
    assert stored_bytes(root, upload_id(location)) == acked
    resp = await b.request("PATCH", location, data=io.BytesIO(BIG))
    assert resp.status == 202, await resp.text()

    whole = FIRST + BIG + BIG[::-1]
    await hang_up_on(client, "PUT", f"{location}?digest={digest_of(whole)}", BIG[::-1], root)
    assert await status_range(b, location) == f"0-{acked + len(BIG) - 1}"
    assert stored_bytes(root, upload_id(location)) == acked + len(BIG)
    assert (await v2.request("HEAD", f"/v2/{R}/blobs/{digest_of(whole)}")).status == 404

    resp = await b.request("PUT", location, params={"digest": digest_of(whole)}, data=io.BytesIO(BIG[::-1]))
    assert resp.status == 201, await resp.text()
    resp = await v2.request("GET", f"/v2/{R}/blobs/{digest_of(whole)}")
    assert await resp.read() == whole
    assert wire.server_errors(client.app) == {}
    assert wire.server_errors(other.app) == {}


# -- requests racing on one upload -----------------------------------------------------------


def slowly(data: bytes, pieces: int = 6, pause: float = 0.02) -> AsyncIterator[bytes]:
    """A streamed body that takes a while, so that requests overlap for real."""

    async def gen() -> AsyncIterator[bytes]:
        step = -(-len(data) // pieces)
        for start in range(0, len(data), step):
            yield data[start : start + step]
            await asyncio.sleep(pause)

    return gen()


async def test_a_body_of_unknown_length_is_fenced_by_the_front_doors_offset(
    client: TestClient[Any, Any],
) -> None:
    """A chunked body carrying `X-Wharf-Upload-Offset` (the front door continuing a body whose
    length it does not know) is taken only where the upload stands, in a PATCH as in the
    closing PUT; elsewhere it is 416 and changes nothing."""
    v2 = V2(client)
    data = BIG[: 3 * len(FIRST)]
    location = await start_upload(v2, FIRST)

    async def chunked(piece: bytes) -> AsyncIterator[bytes]:
        yield piece

    middle = data[len(FIRST) : 2 * len(FIRST)]
    resp = await v2.request("PATCH", location, data=chunked(middle), headers={UPLOAD_OFFSET: "0"})
    assert resp.status == 416
    assert resp.headers["Range"] == f"0-{len(FIRST) - 1}"
    resp = await v2.request("PATCH", location, data=chunked(middle), headers={UPLOAD_OFFSET: str(len(FIRST))})
    assert resp.status == 202, await resp.text()
    assert resp.headers["Range"] == f"0-{2 * len(FIRST) - 1}"
    whole = FIRST + middle + data[2 * len(FIRST) :]
    last = whole[2 * len(FIRST) :]
    resp = await v2.request(
        "PUT",
        location,
        params={"digest": digest_of(whole)},
        data=chunked(last),
        headers={UPLOAD_OFFSET: str(len(FIRST))},
    )
    assert resp.status == 416
    resp = await v2.request(
        "PUT",
        location,
        params={"digest": digest_of(whole)},
        data=chunked(last),
        headers={UPLOAD_OFFSET: str(2 * len(FIRST))},
    )
    assert resp.status == 201, await resp.text()
    assert await pulled(v2, R, digest_of(whole)) == whole


async def test_patches_racing_for_one_range(
    v2: V2, client: TestClient[Any, Any], settings: Settings, redis: Redis
) -> None:
    """Two PATCHes claim bytes 0-n at once: one is taken whole, the other refused whole."""
    location = await start_upload(v2)
    bodies = [b"A" * 3000, b"B" * 3000]
    responses: list[ClientResponse] = await asyncio.gather(
        *(
            v2.request("PATCH", location, data=slowly(body), headers={"Content-Range": "0-2999"})
            for body in bodies
        )
    )
    assert sorted(r.status for r in responses) == [202, 416]
    winner = bodies[[r.status for r in responses].index(202)]
    loser = responses[[r.status for r in responses].index(416)]
    assert await error_code(loser) == "BLOB_UPLOAD_INVALID"
    assert await status_range(v2, location) == "0-2999"
    assert await stored_upload(redis, settings.storage_root, upload_id(location)) == winner
    resp = await v2.request("PUT", location, params={"digest": digest_of(winner)})
    assert resp.status == 201, await resp.text()
    assert await pulled(v2, R, digest_of(winner)) == winner
    assert wire.server_errors(client.app) == {}


async def test_racing_appends_are_taken_one_after_another(
    v2: V2,
    client: TestClient[Any, Any],
    settings: Settings,
    redis: Redis,
) -> None:
    """PATCHes without a Content-Range append at the offset they find: all are taken, each
    whole, in some order, and the upload is exactly their concatenation in that order."""
    location = await start_upload(v2, FIRST)
    pieces = [bytes([65 + i]) * (1000 + 100 * i) for i in range(6)]
    responses = await asyncio.gather(*(v2.request("PATCH", location, data=slowly(p)) for p in pieces))
    assert [r.status for r in responses] == [202] * len(pieces)
    ends = [int(r.headers["Range"].split("-")[1]) + 1 for r in responses]
    order = sorted(range(len(pieces)), key=ends.__getitem__)
    offset = len(FIRST)
    for i in order:  # each response acknowledged its piece right after the previous one's
        offset += len(pieces[i])
        assert ends[i] == offset
    whole = FIRST + b"".join(pieces[i] for i in order)
    assert await stored_upload(redis, settings.storage_root, upload_id(location)) == whole
    resp = await v2.request("PUT", location, params={"digest": digest_of(whole)})
    assert resp.status == 201, await resp.text()
    assert await pulled(v2, R, digest_of(whole)) == whole
    assert wire.server_errors(client.app) == {}


async def test_patch_racing_the_closing_put(v2: V2, client: TestClient[Any, Any], redis: Redis) -> None:
    """A PATCH that arrives while the closing PUT runs finds the upload finished, and is refused."""
    location = await start_upload(v2, FIRST)
    digest = digest_of(FIRST + TAIL)
    put = asyncio.ensure_future(v2.request("PUT", location, params={"digest": digest}, data=slowly(TAIL)))
    deadline = time.monotonic() + 5
    while not await redis.exists(upload_key(upload_id(location)) + ":lock"):  # the PUT has the upload
        assert time.monotonic() < deadline
        await asyncio.sleep(0.002)
    patch = await v2.request("PATCH", location, data=b"late")
    assert (patch.status, await error_code(patch)) == (404, "BLOB_UPLOAD_UNKNOWN")
    assert (await put).status == 201
    assert await pulled(v2, R, digest) == FIRST + TAIL
    assert wire.server_errors(client.app) == {}


# -- a publish that fails ------------------------------------------------------------------------


async def test_a_failed_publish_leaves_the_upload_to_retry(
    v2: V2, client: TestClient[Any, Any], settings: Settings, redis: Redis
) -> None:
    """Storage refuses the blob's path when the closing PUT publishes it: the client gets an error
    and the upload is as it was, so the same PUT, retried, completes it."""
    location = await start_upload(v2, FIRST)
    digest = digest_of(FIRST + TAIL)
    resp = await v2.request("PATCH", location, data=TAIL)
    assert resp.status == 202, await resp.text()
    # A file where the blob's directory must go.
    obstacle = settings.storage_root / paths.BLOBS / "sha256" / digest[7:9]
    obstacle.parent.mkdir(parents=True, exist_ok=True)
    obstacle.write_bytes(b"in the way")
    resp = await v2.request("PUT", location, params={"digest": digest})
    assert resp.status == 500, await resp.text()
    assert await status_range(v2, location) == f"0-{len(FIRST + TAIL) - 1}"
    assert await stored_upload(redis, settings.storage_root, upload_id(location)) == FIRST + TAIL

    obstacle.unlink()
    resp = await v2.request("PUT", location, params={"digest": digest})
    assert resp.status == 201, await resp.text()
    assert await pulled(v2, R, digest) == FIRST + TAIL
    assert upload_dirs(settings) == set()
    assert await upload_keys(redis) == set()
