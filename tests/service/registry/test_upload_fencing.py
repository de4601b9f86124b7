"""A writer that lost its lease can neither change what another wrote nor publish.

Two registry instances share one upload (one Redis, one storage, on the filesystem and on S3):
instance A runs on an event loop of its own, in a thread, and its request body stalls that loop
mid-body, so its lease renewal stops and the lease lapses (300 ms here) while A has bytes in
storage. Instance B takes the upload over; then A resumes and finishes its body. Whatever the
order, the published blob is exactly B's bytes and hashes to its digest, A is refused, and
nothing of A's is left in storage.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.support import s3
from tests.support.storage_suite import pattern
from wharf_registry.uploads import Uploads, UploadState
from wharf_registry.uploads import _key as upload_key
from wharf_shared.db.engine import Database
from wharf_shared.digests import Digest
from wharf_shared.errors.domain import InvalidUpload, UploadNotFound
from wharf_shared.storage import paths
from wharf_shared.storage.base import PathNotFoundError, StorageDriver
from wharf_shared.storage.filesystem import FilesystemDriver
from wharf_shared.storage.s3 import S3Driver

MiB = 1024 * 1024
CHUNK = 256 * 1024
R = "library/fenced"
LEASE_MS = 300
FIRST = pattern(MiB + 17, seed=1)  # acknowledged before A starts, in the "later" cases
STALLED = pattern(12 * MiB + 5, seed=2)  # A's body: it stalls after 9 MiB
STALL_AT = 9 * MiB
THEIRS = pattern(6 * MiB + 3, seed=3)  # what B writes while A stalls


@pytest.fixture
def db_kind() -> str:
    return "postgresql"  # production's database; fencing does not depend on it


@pytest.fixture(params=["filesystem", "s3"])
def new_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], StorageDriver]:
    """A driver of the kind under test, one per instance (each on its own event loop)."""
    if request.param == "filesystem":
        return lambda: FilesystemDriver(tmp_path / "storage")
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return lambda: S3Driver(
        bucket=bucket,
        endpoint_url=endpoint,
        region=s3.REGION,
        access_key=s3.ACCESS_KEY,
        secret_key=s3.SECRET_KEY,
        path_style=True,
        part_size=5 * MiB,
        copy_limit=6 * MiB,
    )


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=2)
    yield database
    await database.close()


@pytest.fixture
async def b(redis_url: str, db: Database, new_storage: Callable[[], StorageDriver]) -> AsyncIterator[Uploads]:
    redis = Redis.from_url(redis_url)
    yield Uploads(redis, new_storage(), db, expiry_seconds=3600, lock_lease_ms=LEASE_MS)
    await redis.aclose()


class Body:
    """A request body that blocks its event loop once `stall_at` bytes were read and stored, until
    released: a stalled loop renews no lease."""

    def __init__(self, data: bytes, stall_at: int, stored: Callable[[], int]) -> None:
        self._data = data
        self._position = 0
        self._stall_at = stall_at
        self._stored = stored
        self.stalled = threading.Event()
        self.resume = threading.Event()

    async def read(self, n: int = -1) -> bytes:
        if self._position >= self._stall_at and not self.stalled.is_set():
            # Let A's storage catch up, so that A has bytes stored when it stalls.
            deadline = time.monotonic() + 30
            while self._stored() < 5 * MiB:
                assert time.monotonic() < deadline, "A's bytes never reached storage"
                await asyncio.sleep(0.01)
            self.stalled.set()
            assert self.resume.wait(60), "never released"  # blocks A's whole event loop
        end = len(self._data) if n < 0 else min(len(self._data), self._position + n)
        if self._position < self._stall_at:
            end = min(end, self._stall_at)
        piece = self._data[self._position : end]
        self._position = end
        return piece

    async def readany(self) -> bytes:
        return await self.read(CHUNK)  # in pieces, as aiohttp receives them


class Whole:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._position = 0

    async def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else min(len(self._data), self._position + n)
        piece = bytes(self._data[self._position : end])
        self._position = end
        return piece

    async def readany(self) -> bytes:
        return await self.read(CHUNK)


def stored_bytes(storage: StorageDriver, upload_id: str) -> Callable[[], int]:
    """What storage holds for the upload, written or committed (a probe outside the driver)."""
    if isinstance(storage, FilesystemDriver):
        directory = storage.root / paths.upload_dir(upload_id)
        return lambda: sum(p.stat().st_size for p in directory.glob("*") if p.is_file())
    assert isinstance(storage, S3Driver)
    client = storage.client

    def listed() -> int:
        found = client.list_objects_v2(Bucket=storage.bucket, Prefix=f"uploads/{upload_id}/")
        return sum(int(item["Size"]) for item in found.get("Contents") or [])

    return listed


def in_thread(make: Callable[[], Coroutine[Any, Any, Any]]) -> concurrent.futures.Future[Any]:
    """Run a coroutine on an event loop of its own, in a thread: another registry instance."""
    done: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run() -> None:
        try:
            done.set_result(asyncio.run(make()))
        except BaseException as exc:
            done.set_exception(exc)

    threading.Thread(target=run, daemon=True, name="instance-a").start()
    return done


async def until(condition: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + 30
    while not await condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def stall_a_writer(
    b: Uploads, state: UploadState, redis_url: str, new_storage: Callable[[], StorageDriver], db: Database
) -> tuple[concurrent.futures.Future[Any], Body]:
    """Start A's PATCH at the upload's offset and return once it stalled and its lease lapsed."""
    storage = new_storage()
    body = Body(STALLED, STALL_AT, stored_bytes(storage, state.id))

    async def patch() -> BaseException | UploadState:
        redis = Redis.from_url(redis_url)
        a = Uploads(redis, storage, db, expiry_seconds=3600, lock_lease_ms=LEASE_MS)
        try:
            current = await a.get(R, state.id)
            return await a.write(current, body, start=current.offset)
        except (InvalidUpload, UploadNotFound) as exc:
            return exc
        finally:
            await redis.aclose()

    running = in_thread(patch)
    await until(lambda: asyncio.to_thread(body.stalled.wait, 0.05), "A never stalled")
    redis = Redis.from_url(redis_url)
    try:
        await until(
            lambda: _gone(redis, upload_key(state.id) + ":lock"), "A's lease did not lapse while it stalled"
        )
    finally:
        await redis.aclose()
    return running, body


async def _gone(redis: Redis, key: str) -> bool:
    return not await redis.exists(key)


def digest_of(data: bytes) -> Digest:
    return Digest.parse("sha256:" + hashlib.sha256(data).hexdigest())


async def published(storage: StorageDriver, data: bytes) -> bytes:
    stored = await storage.get_content(paths.blob_path(digest_of(data)))
    assert hashlib.sha256(stored).hexdigest() == digest_of(data).hex, "a blob that does not match its digest"
    return stored


async def nothing_left(storage: StorageDriver, upload_id: str) -> None:
    probe = stored_bytes(storage, upload_id)
    assert await asyncio.to_thread(probe) == 0
    with pytest.raises(PathNotFoundError):
        await storage.list(paths.upload_dir(upload_id))


@pytest.mark.parametrize("who", ["first", "later"], ids=["a-writes-first", "a-writes-later"])
async def test_a_writer_that_lost_its_lease_cannot_change_the_upload(
    who: str, b: Uploads, db: Database, redis_url: str, new_storage: Callable[[], StorageDriver]
) -> None:
    state = await b.start(R)
    before = b""
    if who == "later":
        state = await b.write(state, Whole(FIRST))
        before = FIRST
    running, body = await stall_a_writer(b, state, redis_url, new_storage, db)

    # B takes the upload over and writes at the offset A started from.
    state = await b.write(await b.get(R, state.id), Whole(THEIRS), start=len(before))
    assert state.offset == len(before) + len(THEIRS)
    body.resume.set()
    refused = await asyncio.wrap_future(running)
    assert isinstance(refused, InvalidUpload), refused

    current = await b.get(R, state.id)
    assert current.offset == len(before) + len(THEIRS)
    expected = before + THEIRS
    blob = await b.complete(current, digest_of(expected))
    assert blob.size == len(expected)
    storage = new_storage()
    assert await published(storage, expected) == expected
    await nothing_left(storage, state.id)


@pytest.mark.parametrize("who", ["first", "later"], ids=["a-writes-first", "a-writes-later"])
async def test_a_stalled_writer_resuming_after_the_upload_was_published(
    who: str, b: Uploads, db: Database, redis_url: str, new_storage: Callable[[], StorageDriver]
) -> None:
    state = await b.start(R)
    before = b""
    if who == "later":
        state = await b.write(state, Whole(FIRST))
        before = FIRST
    running, body = await stall_a_writer(b, state, redis_url, new_storage, db)

    expected = before + THEIRS
    current = await b.get(R, state.id)
    await b.complete(current, digest_of(expected), Whole(THEIRS), start=len(before), length=len(THEIRS))
    storage = new_storage()
    assert await published(storage, expected) == expected

    body.resume.set()
    refused = await asyncio.wrap_future(running)
    assert isinstance(refused, InvalidUpload | UploadNotFound), refused
    assert await published(storage, expected) == expected
    await nothing_left(storage, state.id)


async def test_publishing_takes_only_the_recorded_bytes_of_a_file_a_stalled_writer_appends_to(
    b: Uploads, db: Database, redis_url: str, new_storage: Callable[[], StorageDriver]
) -> None:
    """A stalls appending to what was recorded (on the filesystem it took the upload's file); B
    closes the upload with no body of its own: the blob is the recorded bytes, not A's."""
    state = await b.write(await b.start(R), Whole(FIRST))
    running, body = await stall_a_writer(b, state, redis_url, new_storage, db)
    await b.complete(await b.get(R, state.id), digest_of(FIRST))
    storage = new_storage()
    assert await published(storage, FIRST) == FIRST
    body.resume.set()
    refused = await asyncio.wrap_future(running)
    assert isinstance(refused, InvalidUpload | UploadNotFound), refused
    assert await published(storage, FIRST) == FIRST
    await nothing_left(storage, state.id)
