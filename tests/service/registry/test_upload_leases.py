"""An upload's lock blocks no one once its holder is known gone: a dead instance's lock is taken over
at once (a live one's is not), a request whose client hung up or whose handler was cancelled gives
it back at once, and a holder that was taken over cannot record what it writes afterwards. A PUT
whose instance died while publishing the upload is finished by the next PUT of the same digest,
and a PUT repeated after the upload was published is answered as the first one was.

Leases here are long (minutes): a request that waited for one to lapse would run into the test's
timeout, so each test passes only by the mechanism under test. (Processes killed with SIGKILL or
stopped with SIGSTOP: tests/e2e/test_instances.py.)
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from tests.service.registry.conftest import registry_settings
from tests.support import wire
from tests.support.oci import V2, digest_of, error_code
from tests.support.processes import free_port
from tests.support.storage_suite import pattern
from wharf_registry.app import create_app
from wharf_registry.liveness import Heartbeat, alive_key
from wharf_registry.uploads import Uploads, UploadState
from wharf_registry.uploads import _key as upload_key
from wharf_registry.uploads import _tombstone_key as tombstone_key
from wharf_shared.accel import UPLOAD_WRITE
from wharf_shared.db.engine import Database
from wharf_shared.digests import Digest
from wharf_shared.errors.domain import InvalidUpload, UploadBusy, UploadNotFound
from wharf_shared.redis import open_redis
from wharf_shared.storage import paths
from wharf_shared.storage.base import PathNotFoundError, StorageDriver
from wharf_shared.storage.filesystem import FilesystemDriver

pytestmark = pytest.mark.timeout(60)

MiB = 1024 * 1024
R = "library/leased"
LONG_LEASE_MS = 600_000
SHORT_LEASE_MS = 3_000
# A live instance's key outlives any stall of a loaded test machine: "alive" never lapses by accident.
ALIVE_TTL = 20.0
FIRST = pattern(MiB + 3, seed=11)  # recorded before the holder starts
HELD = pattern(3 * MiB + 1, seed=12)  # the holder's body; it stops after its first MiB until released
SECOND = pattern(2 * MiB + 5, seed=13)  # what the next request writes at the same offset


@pytest.fixture
def db_kind() -> str:
    return "postgresql"  # production's database; locks live in Redis


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=2)
    yield database
    await database.close()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = open_redis(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def storage(tmp_path: Path) -> StorageDriver:
    return FilesystemDriver(tmp_path / "storage")


class Held:
    """A request body whose client sends its first MiB, then nothing until `go` is set."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._position = 0
        self.waiting = asyncio.Event()
        self.go = asyncio.Event()

    async def read(self, n: int = -1) -> bytes:
        if self._position >= MiB and not self.go.is_set():
            self.waiting.set()
            await self.go.wait()
        end = len(self._data) if n < 0 else min(len(self._data), self._position + n)
        if self._position < MiB:
            end = min(end, MiB)
        piece = bytes(self._data[self._position : end])
        self._position = end
        return piece

    async def readany(self) -> bytes:
        return await self.read(256 * 1024)


class Whole:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._position = 0

    async def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else min(len(self._data), self._position + n)
        piece = self._data[self._position : end]
        self._position = end
        return piece

    async def readany(self) -> bytes:
        return await self.read(256 * 1024)


def sha256(data: bytes) -> Digest:
    return Digest.parse("sha256:" + hashlib.sha256(data).hexdigest())


async def until(condition: Callable[[], Awaitable[Any]], what: str) -> None:
    deadline = time.monotonic() + 30
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def lock_of(state: UploadState) -> str:
    return upload_key(state.id) + ":lock"


async def holding(
    uploads: Uploads, redis: Redis, state: UploadState
) -> tuple[asyncio.Task[UploadState], Held]:
    """A PATCH at the upload's offset that holds its lock, its body stopped after the first MiB."""
    body = Held(HELD)
    task = asyncio.create_task(uploads.write(await uploads.get(R, state.id), body, start=state.offset))
    await until(lambda: asyncio.wait_for(body.waiting.wait(), 0.05), "the holder to read its body")
    assert await redis.exists(lock_of(state))
    return task, body


async def published(storage: StorageDriver, data: bytes) -> None:
    stored = await storage.get_content(paths.blob_path(sha256(data)))
    assert stored == data


async def nothing_left(storage: StorageDriver, redis: Redis, state: UploadState) -> None:
    with pytest.raises(PathNotFoundError):
        await storage.list(paths.upload_dir(state.id))
    assert not await redis.exists(upload_key(state.id), lock_of(state))


# -- instances and their heartbeats ------------------------------------------------------------


async def test_heartbeat_keeps_its_key_alive_and_deletes_it_on_close(redis: Redis) -> None:
    heartbeat = Heartbeat(redis, interval_seconds=0.05, ttl_seconds=ALIVE_TTL)
    await heartbeat.start()
    key = alive_key(heartbeat.instance)
    try:
        first = await redis.pttl(key)
        assert 0 < first <= ALIVE_TTL * 1000
        # Without a refresh the key's time to live only falls.
        last = first

        async def refreshed() -> bool:
            nonlocal last
            now = await redis.pttl(key)
            assert now > 0, "the liveness key lapsed while its instance ran"
            grew, last = now > last, now
            return grew

        await until(refreshed, "a refresh of the liveness key")
    finally:
        await heartbeat.close()
    assert not await redis.exists(key)  # a clean stop leaves no one waiting


async def test_heartbeat_starts_without_redis() -> None:
    """The registry serves pulls while Redis is down: its heartbeat must not stop the start."""
    dead = open_redis(f"redis://127.0.0.1:{free_port()}/0")
    try:
        heartbeat = Heartbeat(dead, interval_seconds=0.05, ttl_seconds=1.0)
        await heartbeat.start()
        await asyncio.sleep(0.2)  # a few failed beats, none of them fatal
        await heartbeat.close()
    finally:
        await dead.aclose()


def test_heartbeat_refuses_a_key_that_lapses_between_beats() -> None:
    with pytest.raises(ValueError, match="outlive"):
        Heartbeat(Redis(), interval_seconds=1.0, ttl_seconds=1.0)


# -- taking over a dead holder's lock ----------------------------------------------------------


async def test_a_dead_instances_lock_is_taken_over_at_once_and_fences_it(
    redis: Redis, db: Database, storage: StorageDriver
) -> None:
    """A holds the lock mid-body, and its instance has no liveness key (as after SIGKILL; here its
    request is still running, as in a process that only stalled). B takes the lock over at once
    and writes at A's offset; A, resuming, records nothing; the blob is exactly B's bytes."""
    a = Uploads(redis, storage, db, expiry_seconds=3600, lock_lease_ms=LONG_LEASE_MS, instance="dead-a")
    b = Uploads(redis, storage, db, expiry_seconds=3600, lock_lease_ms=LONG_LEASE_MS, instance="b")
    state = await b.write(await b.start(R), Whole(FIRST))
    a_patch, body = await holding(a, redis, state)
    assert (await redis.get(lock_of(state))).startswith(b"dead-a:")

    state = await b.write(await b.get(R, state.id), Whole(SECOND), start=len(FIRST))
    assert state.offset == len(FIRST) + len(SECOND)
    body.go.set()
    with pytest.raises(InvalidUpload):
        await a_patch

    current = await b.get(R, state.id)
    assert current.offset == len(FIRST) + len(SECOND)
    blob = await b.complete(current, sha256(FIRST + SECOND))
    assert blob.size == len(FIRST) + len(SECOND)
    await published(storage, FIRST + SECOND)
    await nothing_left(storage, redis, state)


async def test_a_live_instances_lock_is_not_taken(redis: Redis, db: Database, storage: StorageDriver) -> None:
    """A's instance beats: B waits out A's (short, renewed) lease and is refused; A, whose lock was
    never taken, records its whole body."""
    heartbeat = Heartbeat(redis, interval_seconds=0.05, ttl_seconds=ALIVE_TTL)
    await heartbeat.start()
    try:
        # Short enough for B to wait it out, long enough that a loaded machine's stalls never
        # let A's renewal lapse (a 300 ms lease did, once, on CI).
        a = Uploads(
            redis, storage, db, expiry_seconds=3600, lock_lease_ms=SHORT_LEASE_MS, instance=heartbeat.instance
        )
        b = Uploads(redis, storage, db, expiry_seconds=3600, lock_lease_ms=SHORT_LEASE_MS, instance="b")
        state = await b.write(await b.start(R), Whole(FIRST))
        a_patch, body = await holding(a, redis, state)
        with pytest.raises(UploadBusy):
            await b.write(await b.get(R, state.id), Whole(SECOND), start=len(FIRST))
        body.go.set()
        state = await a_patch
        assert state.offset == len(FIRST) + len(HELD)
        await b.complete(await b.get(R, state.id), sha256(FIRST + HELD))
        await published(storage, FIRST + HELD)
    finally:
        await heartbeat.close()


async def test_a_waiting_request_takes_the_lock_once_its_holder_stops(
    redis: Redis, db: Database, storage: StorageDriver
) -> None:
    """B waits on a live holder; the holder's instance stops (its key goes): B gets the lock then,
    not when the lease would have lapsed."""
    heartbeat = Heartbeat(redis, interval_seconds=0.05, ttl_seconds=ALIVE_TTL)
    await heartbeat.start()
    try:
        a = Uploads(
            redis, storage, db, expiry_seconds=3600, lock_lease_ms=LONG_LEASE_MS, instance=heartbeat.instance
        )
        b = Uploads(redis, storage, db, expiry_seconds=3600, lock_lease_ms=LONG_LEASE_MS, instance="b")
        state = await b.write(await b.start(R), Whole(FIRST))
        a_patch, body = await holding(a, redis, state)
        b_patch = asyncio.create_task(b.write(await b.get(R, state.id), Whole(SECOND), start=len(FIRST)))
        await asyncio.sleep(0.3)  # B polls the live holder a few times
        assert not b_patch.done()
    finally:
        await heartbeat.close()
    state = await b_patch
    assert state.offset == len(FIRST) + len(SECOND)
    body.go.set()
    with pytest.raises(InvalidUpload):
        await a_patch
    await b.complete(await b.get(R, state.id), sha256(FIRST + SECOND))
    await published(storage, FIRST + SECOND)
    await nothing_left(storage, redis, state)


# -- a request that ends early gives its lock back at once --------------------------------------


@pytest.mark.parametrize("times", [1, 2], ids=["cancelled", "cancelled-twice"])
async def test_a_cancelled_request_releases_its_lock(
    times: int, redis: Redis, db: Database, storage: StorageDriver
) -> None:
    a = Uploads(redis, storage, db, expiry_seconds=3600, lock_lease_ms=LONG_LEASE_MS, instance="a")
    state = await a.write(await a.start(R), Whole(FIRST))
    a_patch, _body = await holding(a, redis, state)
    for _ in range(times):
        a_patch.cancel()
        await asyncio.sleep(0)  # the second lands while the first is being handled
    with pytest.raises(asyncio.CancelledError):
        await a_patch
    await until(lambda: _gone(redis, lock_of(state)), "the cancelled request's lock to go")
    # The upload is as it was: another request continues it at once.
    state = await a.write(await a.get(R, state.id), Whole(SECOND), start=len(FIRST))
    await a.complete(state, sha256(FIRST + SECOND))
    await published(storage, FIRST + SECOND)


async def test_a_request_cancelled_while_waiting_for_the_lock_leaves_no_lock(
    redis: Redis, db: Database, storage: StorageDriver
) -> None:
    heartbeat = Heartbeat(redis, interval_seconds=0.05, ttl_seconds=ALIVE_TTL)
    await heartbeat.start()
    try:
        a = Uploads(
            redis, storage, db, expiry_seconds=3600, lock_lease_ms=LONG_LEASE_MS, instance=heartbeat.instance
        )
        b = Uploads(redis, storage, db, expiry_seconds=3600, lock_lease_ms=LONG_LEASE_MS, instance="b")
        state = await a.write(await a.start(R), Whole(FIRST))
        a_patch, body = await holding(a, redis, state)
        b_patch = asyncio.create_task(b.write(await b.get(R, state.id), Whole(SECOND), start=len(FIRST)))
        await asyncio.sleep(0.2)
        b_patch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await b_patch
        assert (await redis.get(lock_of(state))).startswith(heartbeat.instance.encode())
        body.go.set()
        state = await a_patch
    finally:
        await heartbeat.close()
    assert not await redis.exists(lock_of(state))


async def _gone(redis: Redis, key: str) -> bool:
    return not await redis.exists(key)


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_a_client_hanging_up_mid_body_releases_the_lock_at_once(
    method: str, aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str, redis: Redis
) -> None:
    """Served as in production (the handler is not cancelled; it reads the lost connection as an
    error): the lock is gone as soon as the handler is, and another instance continues at once."""
    settings = registry_settings(tmp_path, database_url, redis_url, upload_lease_seconds=LONG_LEASE_MS / 1000)
    a: TestClient[Any, Any] = await aiohttp_client(wire.ProductionServer(create_app(settings)))
    b: TestClient[Any, Any] = await aiohttp_client(wire.ProductionServer(create_app(settings)))
    resp = await V2(a).request("POST", f"/v2/{R}/blobs/uploads/")
    assert resp.status == 202, await resp.text()
    location = resp.headers["Location"]
    lock = upload_key(location.rsplit("/", 1)[-1]) + ":lock"
    whole = HELD + SECOND
    target = location if method == "PATCH" else f"{location}?digest={digest_of(whole)}"
    head = wire.request_head(method, target, {"Content-Length": str(len(HELD))})

    async def locked() -> None:
        await until(lambda: redis.exists(lock), "the request to take the upload's lock")

    await wire.hang_up(a.server.host, a.server.port, head, HELD[:MiB], before_close=locked)
    await until(lambda: _gone(redis, lock), "the lock of the request whose client hung up to go")
    await wire.wait_idle(a.app)

    resp = await V2(b).request("PUT", location, params={"digest": digest_of(whole)}, data=io.BytesIO(whole))
    assert resp.status == 201, await resp.text()
    resp = await V2(a).request("GET", f"/v2/{R}/blobs/{digest_of(whole)}")
    assert await resp.read() == whole
    assert wire.server_errors(a.app) == {}
    assert wire.server_errors(b.app) == {}


# -- publishing survives its instance ----------------------------------------------------------


class StallingStorage(FilesystemDriver):
    """The filesystem, except that putting an upload's bytes in place waits until `go` is set."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.publishing = asyncio.Event()
        self.go = asyncio.Event()

    async def _stall(self) -> None:
        self.publishing.set()
        await self.go.wait()

    async def move(self, source: str, dest: str, *, size: int | None = None) -> None:
        await self._stall()
        await super().move(source, dest, size=size)

    async def join(self, sources: Any, dest: str) -> None:
        await self._stall()
        await super().join(sources, dest)


@pytest.mark.parametrize("chunks", [1, 2], ids=["one-part", "two-parts"])
async def test_a_publish_whose_instance_died_is_finished_by_the_next_put(
    chunks: int, redis: Redis, db: Database, tmp_path: Path
) -> None:
    """A verified the upload and marked it published as D, then stalled putting its bytes in place
    (its instance has no liveness key: as dead). Until then nothing else may use the upload; B's
    PUT of D takes the lock over and publishes the same bytes; A, resuming, finds them in place
    and answers with the same blob."""
    stalling = StallingStorage(tmp_path / "storage")
    storage = FilesystemDriver(tmp_path / "storage")
    a = Uploads(redis, stalling, db, expiry_seconds=3600, lock_lease_ms=LONG_LEASE_MS, instance="dead-a")
    b = Uploads(redis, storage, db, expiry_seconds=3600, lock_lease_ms=LONG_LEASE_MS, instance="b")
    data = FIRST + SECOND
    state = await b.write(await b.start(R), Whole(FIRST))
    if chunks == 2:  # a part of its own beside the accumulated file: published by joining them
        state = await a.write(await a.get(R, state.id), Whole(SECOND), start=len(FIRST))
    else:
        state = await b.write(await b.get(R, state.id), Whole(SECOND), start=len(FIRST))
    digest = sha256(data)
    a_put = asyncio.create_task(a.complete(await a.get(R, state.id, finishing=str(digest)), digest))
    await until(lambda: asyncio.wait_for(stalling.publishing.wait(), 0.05), "A to begin publishing")

    # Being published: unknown to anything but a PUT of the same digest.
    with pytest.raises(UploadNotFound):
        await b.get(R, state.id)
    with pytest.raises(UploadNotFound):
        await b.get(R, state.id, finishing=str(sha256(FIRST)))
    with pytest.raises(UploadNotFound):
        await b.write(state, Whole(b"late"))

    blob = await b.complete(await b.get(R, state.id, finishing=str(digest)), digest)
    assert (blob.digest, blob.size) == (str(digest), len(data))
    await published(storage, data)
    stalling.go.set()
    assert await a_put == blob
    await published(storage, data)
    await nothing_left(storage, redis, state)
    assert 0 < await redis.ttl(tombstone_key(state.id)) <= 3600


async def test_a_put_repeated_after_the_upload_was_published(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str, redis: Redis
) -> None:
    """Its answer was lost (the instance died after publishing; a proxy or the client sends it
    again, perhaps to another instance): the same PUT is answered 201 again, body or none. Any
    other request on the upload finds it unknown, as before."""
    settings = registry_settings(tmp_path, database_url, redis_url)
    a = V2(await aiohttp_client(wire.ProductionServer(create_app(settings))))
    b = V2(await aiohttp_client(wire.ProductionServer(create_app(settings))))
    resp = await a.request("POST", f"/v2/{R}/blobs/uploads/")
    location = resp.headers["Location"]
    resp = await a.request("PATCH", location, data=io.BytesIO(FIRST))
    assert resp.status == 202, await resp.text()
    digest = digest_of(FIRST + SECOND)
    for node, body in ((a, SECOND), (b, b""), (b, SECOND), (a, b"")):
        resp = await node.request("PUT", location, params={"digest": digest}, data=io.BytesIO(body))
        assert (resp.status, resp.headers.get("Docker-Content-Digest")) == (201, digest), await resp.text()
    resp = await a.request("GET", f"/v2/{R}/blobs/{digest}")
    assert await resp.read() == FIRST + SECOND

    other = digest_of(FIRST)
    refused = [
        await b.request("PUT", location, params={"digest": other}),
        await b.request("GET", location),
        await b.request("PATCH", location, data=b"more"),
        await b.request("DELETE", location),
        await b.request(
            "PUT",
            f"/v2/library/elsewhere/blobs/uploads/{location.rsplit('/', 1)[-1]}",
            params={"digest": digest},
        ),
    ]
    for resp in refused:
        assert (resp.status, await error_code(resp)) == (404, "BLOB_UPLOAD_UNKNOWN")
    assert not await redis.exists(upload_key(location.rsplit("/", 1)[-1]))


# -- a write the front door sends again ---------------------------------------------------------


async def test_a_write_the_front_door_repeats_is_taken_once(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    """The proxy held the body and sends it again to another instance under the same id (it
    cannot know whether the first took it): the upload takes it once, and the repeat is answered
    as the first was; another write, another id, is taken as usual."""
    settings = registry_settings(tmp_path, database_url, redis_url)  # loopback is a trusted proxy
    a = V2(await aiohttp_client(wire.ProductionServer(create_app(settings))))
    b = V2(await aiohttp_client(wire.ProductionServer(create_app(settings))))
    location = (await a.request("POST", f"/v2/{R}/blobs/uploads/")).headers["Location"]
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    acked = f"0-{len(FIRST) - 1}"
    for node, headers in (
        (a, {}),
        (b, {}),
        (a, {"Content-Range": f"0-{len(FIRST) - 1}"}),  # the repeat is known before its range is checked
    ):
        resp = await node.request(
            "PATCH", location, data=io.BytesIO(FIRST), headers={UPLOAD_WRITE: first, **headers}
        )
        assert (resp.status, resp.headers["Range"]) == (202, acked), await resp.text()
    resp = await b.request("PATCH", location, data=io.BytesIO(SECOND), headers={UPLOAD_WRITE: second})
    assert (resp.status, resp.headers["Range"]) == (202, f"0-{len(FIRST) + len(SECOND) - 1}")
    whole = FIRST + SECOND
    resp = await a.request("PUT", location, params={"digest": digest_of(whole)})
    assert resp.status == 201, await resp.text()
    assert await (await b.request("GET", f"/v2/{R}/blobs/{digest_of(whole)}")).read() == whole


async def test_a_closing_put_the_front_door_repeats_appends_its_body_once(
    redis: Redis, db: Database, storage: StorageDriver
) -> None:
    """A took the PUT's body and recorded it, and died before publishing; the repeat (same id)
    publishes what was recorded, without its body a second time."""
    a = Uploads(redis, storage, db, expiry_seconds=3600, lock_lease_ms=LONG_LEASE_MS, instance="dead-a")
    b = Uploads(redis, storage, db, expiry_seconds=3600, lock_lease_ms=LONG_LEASE_MS, instance="b")
    state = await b.write(await b.start(R), Whole(FIRST))
    write = uuid.uuid4().hex
    await a.write(replace(await a.get(R, state.id), write_id=write), Whole(SECOND), start=len(FIRST))
    whole = FIRST + SECOND
    repeat = replace(await b.get(R, state.id, finishing=str(sha256(whole))), write_id=write)
    blob = await b.complete(repeat, sha256(whole), Whole(SECOND), start=len(FIRST), length=len(SECOND))
    assert (blob.digest, blob.size) == (str(sha256(whole)), len(whole))
    await published(storage, whole)


@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted-peer", "malformed-id"])
async def test_a_write_id_is_the_trusted_front_doors_alone(
    trusted: bool, aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    settings = registry_settings(tmp_path, database_url, redis_url)
    if not trusted:
        settings = settings.model_copy(update={"trusted_proxies": ["10.0.0.0/8"]})
    a = V2(await aiohttp_client(wire.ProductionServer(create_app(settings))))
    location = (await a.request("POST", f"/v2/{R}/blobs/uploads/")).headers["Location"]
    write = uuid.uuid4().hex if not trusted else "not-an-id"
    responses = [
        await a.request("PATCH", location, data=io.BytesIO(FIRST), headers={UPLOAD_WRITE: write})
        for _ in range(2)
    ]
    if trusted:
        for resp in responses:
            assert (resp.status, await error_code(resp)) == (400, "BLOB_UPLOAD_INVALID")
    else:  # anyone else's id means nothing: two writes
        assert [r.headers["Range"] for r in responses] == [f"0-{len(FIRST) - 1}", f"0-{2 * len(FIRST) - 1}"]
