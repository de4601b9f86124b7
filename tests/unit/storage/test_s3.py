"""The S3 driver against moto's real S3 server: the shared conformance suite, then what only S3 promises.

moto enforces S3's 5 MiB minimum part size, so the multipart paths run with the smallest legal
part size (5 MiB) and a 6 MiB copy limit on blobs of 12-20 MiB.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
import time
import urllib.request
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support import s3
from tests.support.storage_suite import DriverSuite, pattern, read_all, write_file
from wharf_shared.config import Settings
from wharf_shared.metrics import Metrics
from wharf_shared.storage.base import (
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
    StorageDriver,
)
from wharf_shared.storage.factory import open_storage
from wharf_shared.storage.s3 import S3Driver, _PiecesReader, _ThreadPool

MiB = 1024 * 1024
SMALL = {"part_size": 5 * MiB, "copy_limit": 6 * MiB}
LISTING = ("ListObjectsV2", "ListObjects")
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def make_driver(endpoint: str, bucket: str, **overrides: Any) -> S3Driver:
    return S3Driver(
        bucket=bucket,
        endpoint_url=endpoint,
        region=s3.REGION,
        access_key=s3.ACCESS_KEY,
        secret_key=s3.SECRET_KEY,
        path_style=True,
        **overrides,
    )


@pytest.fixture
def new_driver(moto_endpoint: str, s3_bucket: str) -> Iterator[Callable[..., S3Driver]]:
    made: list[S3Driver] = []

    def new(**overrides: Any) -> S3Driver:
        driver = make_driver(moto_endpoint, s3_bucket, **overrides)
        made.append(driver)
        return driver

    yield new
    for driver in made:
        driver.close()


def keys_in(endpoint: str, bucket: str) -> list[str]:
    client = s3.client(endpoint)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


class Calls:
    """S3 requests a driver's client makes, by operation, and the threads that made them."""

    def __init__(self, driver: S3Driver) -> None:
        self.counts: Counter[str] = Counter()
        self.threads: set[str] = set()
        self._lock = threading.Lock()
        driver.client.meta.events.register("before-call.s3", self._seen)

    def _seen(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.counts[model.name] += 1
            self.threads.add(threading.current_thread().name)

    def listings(self) -> int:
        return sum(self.counts[name] for name in LISTING)


# -- the shared suite ----------------------------------------------------------------------------


class TestS3Driver(DriverSuite):
    @pytest.fixture
    def driver(self, new_driver: Callable[..., S3Driver]) -> StorageDriver:
        return new_driver()


class TestS3DriverSmallPartsWithPrefix(DriverSuite):
    """Every multipart path taken by the suite's 12 MiB write, under a key prefix."""

    @pytest.fixture
    def driver(self, new_driver: Callable[..., S3Driver]) -> StorageDriver:
        return new_driver(prefix="/tenant/wharf/", **SMALL)


# -- multipart: segments, server-side assembly, copies past the copy limit -------------------------


async def test_segmented_upload_moves_past_the_copy_limit(
    new_driver: Callable[..., S3Driver], moto_endpoint: str, s3_bucket: str
) -> None:
    driver = new_driver(**SMALL)
    calls = Calls(driver)
    total = 17 * MiB + 4321
    data = pattern(total, seed=7)
    # Three PATCH-like sessions with uneven chunks: 3 MiB, then 9 MiB, then the rest.
    offset = 0
    for end in (3 * MiB, 12 * MiB, total):
        writer = await driver.writer("uploads/u1/data", offset)
        for start in range(offset, end, 700_001):
            await writer.write(data[start : min(start + 700_001, end)])
        assert writer.size == end
        await writer.commit()
        offset = end
        assert (await driver.stat("uploads/u1/data")).size == end
    # Three full 5 MiB segments and a short last one; the re-read short segments are gone.
    layout = keys_in(moto_endpoint, s3_bucket)
    segments = [k for k in layout if k.startswith("uploads/u1/data.wharf-seg/")]
    assert layout == sorted(["uploads/u1/data.wharf-state", *segments])
    assert len(segments) == 4, layout
    assert await read_all(driver.reader("uploads/u1/data", 0, 1 << 20)) == data

    calls.counts.clear()
    await driver.move("uploads/u1/data", "blobs/big/data")
    # Assembled on the server, one part copy per segment: no byte went through the driver.
    assert calls.counts["UploadPartCopy"] == 4, calls.counts
    assert calls.counts["CompleteMultipartUpload"] == 1
    assert calls.counts["PutObject"] == calls.counts["UploadPart"] == 0
    assert calls.counts["GetObject"] == 1  # the state object
    assert keys_in(moto_endpoint, s3_bucket) == ["blobs/big/data"]
    raw = s3.client(moto_endpoint).get_object(Bucket=s3_bucket, Key="blobs/big/data")["Body"].read()
    assert hashlib.sha256(raw).digest() == hashlib.sha256(data).digest()
    with pytest.raises(PathNotFoundError):
        await driver.stat("uploads/u1/data")

    # A plain object larger than one copy request may be: copied in ranged parts.
    calls.counts.clear()
    await driver.move("blobs/big/data", "blobs/again/data")
    assert calls.counts["CopyObject"] == 0
    assert calls.counts["UploadPartCopy"] == 4, calls.counts  # 17 MiB in 5 MiB ranges
    assert await driver.get_content("blobs/again/data") == data
    assert keys_in(moto_endpoint, s3_bucket) == ["blobs/again/data"]


async def test_join_copies_on_the_server_what_s3_lets_it(new_driver: Callable[..., S3Driver]) -> None:
    """The parts of a chunked upload, joined: segments of at least S3's minimum part are copied
    on the server; a short segment goes through the driver with what completes it to that minimum,
    at most twice the minimum; the last piece is copied whatever its size."""
    driver = new_driver(**SMALL)
    calls = Calls(driver)
    full = [pattern(5 * MiB, seed) for seed in range(3)]
    for i, data in enumerate(full):
        await write_file(driver, f"uploads/j/{i}", data)
    await write_file(driver, "uploads/j/tail", b"the last chunk")
    calls.counts.clear()
    sources = [(f"uploads/j/{i}", 5 * MiB) for i in range(3)] + [("uploads/j/tail", 14)]
    await driver.join(sources, "blobs/j/data")
    assert calls.counts["UploadPartCopy"] == 4, calls.counts
    assert calls.counts["UploadPart"] == 0
    assert calls.counts["GetObject"] == 4  # the state objects
    assert await driver.get_content("blobs/j/data") == b"".join(full) + b"the last chunk"

    # 7 MiB (segments 5 + 2), 12 MiB (5 + 5 + 2), 3 MiB: the 2 MiB pieces are sent with what follows.
    uneven = [pattern(size, 10 + i) for i, size in enumerate((7 * MiB, 12 * MiB, 3 * MiB))]
    for i, data in enumerate(uneven):
        await write_file(driver, f"uploads/k/{i}", data)
    calls.counts.clear()
    await driver.join([(f"uploads/k/{i}", len(d)) for i, d in enumerate(uneven)], "blobs/k/data")
    assert (calls.counts["UploadPartCopy"], calls.counts["UploadPart"]) == (2, 2), calls.counts
    joined = await driver.get_content("blobs/k/data")
    assert hashlib.sha256(joined).digest() == hashlib.sha256(b"".join(uneven)).digest()


async def test_small_files_move_with_one_copy(new_driver: Callable[..., S3Driver]) -> None:
    driver = new_driver(**SMALL)
    calls = Calls(driver)
    await write_file(driver, "uploads/u2/data", b"a config blob")
    await driver.put_content("uploads/u3/data", b"x" * 1000)
    calls.counts.clear()
    await driver.move("uploads/u2/data", "blobs/c/data")
    await driver.move("uploads/u3/data", "blobs/d/data")
    assert calls.counts["CopyObject"] == 2, calls.counts
    assert calls.counts["CreateMultipartUpload"] == 0
    assert await driver.get_content("blobs/c/data") == b"a config blob"
    assert await driver.get_content("blobs/d/data") == b"x" * 1000


async def test_writer_holds_at_most_one_part(new_driver: Callable[..., S3Driver]) -> None:
    """Full parts leave as soon as they are complete: the buffer never reaches two parts."""
    driver = new_driver(**SMALL)
    calls = Calls(driver)
    writer = await driver.writer("w/big", 0)
    chunk = pattern(MiB + 17)
    for i in range(12):
        await writer.write(chunk)
        assert writer._buffer.size < 5 * MiB
        assert calls.counts["PutObject"] == (i + 1) * len(chunk) // (5 * MiB)
    await writer.commit()
    assert await driver.get_content("w/big") == chunk * 12


# -- uploads continued by another process ---------------------------------------------------------


async def test_writer_continues_on_another_driver(new_driver: Callable[..., S3Driver]) -> None:
    """Two driver objects (two registry processes): the second rereads and continues the first's upload."""
    first, second = new_driver(**SMALL), new_driver(**SMALL)
    data = pattern(16 * MiB, seed=3)
    path = "uploads/moving/data"
    acknowledged = 7 * MiB + 5

    writer = await first.writer(path, 0)
    await writer.write(data[:acknowledged])
    await writer.commit()
    # Then a crash mid-PATCH: a full segment written, never committed.
    crashed = await first.writer(path, acknowledged)
    await crashed.write(b"\xff" * (6 * MiB))
    assert crashed._written, "the crashed writer had put a segment"

    # The other process rehashes what is stored, then continues at the acknowledged offset.
    hasher = hashlib.sha256()
    async for chunk in second.reader(path, 0, 1 << 20):
        hasher.update(chunk)
    assert hasher.digest() == hashlib.sha256(data[:acknowledged]).digest()
    writer = await second.writer(path, acknowledged)
    assert writer.size == acknowledged
    await writer.write(data[acknowledged:])
    await writer.commit()
    assert await first.get_content(path) == data
    assert await read_all(first.reader(path, 11 * MiB, 333_333)) == data[11 * MiB :]


async def test_cancel_and_truncate_across_segments(
    new_driver: Callable[..., S3Driver], moto_endpoint: str, s3_bucket: str
) -> None:
    driver = new_driver(**SMALL)
    data = pattern(12 * MiB + 99, seed=11)
    await write_file(driver, "w/file", data)
    before = keys_in(moto_endpoint, s3_bucket)

    # Truncated in the first segment, rewritten past two of them, cancelled: nothing changed.
    writer = await driver.writer("w/file", 3 * MiB)
    await writer.write(b"\x00" * (8 * MiB))
    await writer.cancel()
    assert await driver.get_content("w/file") == data
    assert keys_in(moto_endpoint, s3_bucket) == before
    for gone in (1, 5 * MiB, 12 * MiB + 100):
        with pytest.raises(InvalidOffsetError):
            await read_all(driver.reader("w/file", 12 * MiB + 99 + gone))

    # Truncated inside the second segment and continued: the first segment stays as it is.
    tail = pattern(2 * MiB, seed=12)
    assert await write_file(driver, "w/file", tail, 7 * MiB) == 9 * MiB
    assert await driver.get_content("w/file") == data[: 7 * MiB] + tail
    first_segment = before[0]
    after = keys_in(moto_endpoint, s3_bucket)
    assert first_segment in after
    assert len(after) == 3, after  # the state, the kept 5 MiB segment, one new 4 MiB segment


async def test_plain_object_replaced_by_writer_and_back(
    new_driver: Callable[..., S3Driver], moto_endpoint: str, s3_bucket: str
) -> None:
    driver = new_driver(**SMALL)
    data = pattern(6 * MiB, seed=5)
    await driver.put_content("f", data)
    assert await write_file(driver, "f", b"tail", 6 * MiB - 10) == 6 * MiB - 6
    assert await driver.get_content("f") == data[: 6 * MiB - 10] + b"tail"
    assert "f" not in keys_in(moto_endpoint, s3_bucket)
    # A plain object written over a segmented file is the file; deleting it leaves nothing.
    await driver.put_content("f", b"plain again")
    assert await driver.get_content("f") == b"plain again"
    assert (await driver.stat("f")).size == 11
    await driver.delete("f")
    assert keys_in(moto_endpoint, s3_bucket) == []


# -- no listing on the push and pull paths ---------------------------------------------------------


async def test_files_are_never_found_by_listing(new_driver: Callable[..., S3Driver]) -> None:
    driver = new_driver(**SMALL)
    calls = Calls(driver)
    data = pattern(13 * MiB, seed=9)
    upload, blob = "uploads/0123/data", "blobs/sha256/ab/abcd/data"

    # Push: chunks through writers (one resumed), a rehash, the blob made visible, the upload gone.
    assert await write_file(driver, upload, data[: 4 * MiB]) == 4 * MiB
    writer = await driver.writer(upload, 4 * MiB)
    await writer.write(data[4 * MiB :])
    await writer.commit()
    assert (await driver.stat(upload)).size == len(data)
    assert hashlib.sha256(await read_all(driver.reader(upload))).digest() == hashlib.sha256(data).digest()
    await driver.move(upload, blob)
    # Manifests: written whole, read whole.
    await driver.put_content("blobs/sha256/cd/cdef/data", b"{}")
    assert await driver.get_content("blobs/sha256/cd/cdef/data") == b"{}"
    # Pull: stat, ranged and whole reads.
    assert (await driver.stat(blob)).size == len(data)
    assert await read_all(driver.reader(blob, 10 * MiB)) == data[10 * MiB :]
    assert await driver.get_content(blob) == data
    # An abandoned upload: cancel, then its file deleted.
    writer = await driver.writer("uploads/4567/data", 0)
    await writer.write(data[: 6 * MiB])
    await writer.cancel()
    await write_file(driver, "uploads/89ab/data", b"abandoned")
    await driver.delete("uploads/89ab/data")
    await driver.delete(blob)
    # What the registry asks of paths that may hold nothing: answered without a listing.
    for missing in (blob, upload, "uploads/4567/data"):
        with pytest.raises(PathNotFoundError):
            await driver.stat_file(missing)
        with pytest.raises(PathNotFoundError):
            await driver.delete_file(missing)
    assert sum(calls.counts.values()) > 30
    assert calls.listings() == 0, calls.counts

    # The hook sees listings where they belong: directories, and telling them from nothing.
    assert await driver.list("blobs/sha256") == ["blobs/sha256/cd"]
    assert calls.listings() == 1
    with pytest.raises(PathNotFoundError):
        await driver.stat(blob)
    assert calls.listings() == 2


async def test_calls_run_in_the_bounded_pool(new_driver: Callable[..., S3Driver]) -> None:
    driver = new_driver(max_threads=3, **SMALL)
    calls = Calls(driver)
    loop_thread = threading.current_thread().name

    async def one(i: int) -> None:
        await write_file(driver, f"c/{i}", pattern(6 * MiB, seed=i))
        assert await driver.get_content(f"c/{i}") == pattern(6 * MiB, seed=i)

    await asyncio.gather(*(one(i) for i in range(6)))
    assert loop_thread not in calls.threads
    assert calls.threads
    assert all(name.startswith("wharf-s3") for name in calls.threads), calls.threads
    assert len(calls.threads) <= 3
    assert driver.client.meta.config.max_pool_connections == 3


async def test_idle_threads_are_reused_last_in_first_out(new_driver: Callable[..., S3Driver]) -> None:
    """After a burst, one call at a time runs on one thread (each thread costs a malloc arena)."""
    driver = new_driver(max_threads=4)
    await driver.put_content("t", b"x")
    calls = Calls(driver)
    await asyncio.gather(*(driver.get_content("t") for _ in range(12)))
    assert len(calls.threads) > 1
    for _ in range(20):
        calls.threads.clear()
        await driver.get_content("t")
        last = set(calls.threads)
        assert len(last) == 1
    calls.threads.clear()
    for _ in range(20):
        await driver.get_content("t")
    assert calls.threads == last


def test_idle_threads_keep_nothing_of_their_calls() -> None:
    """A thread waiting for work must not keep its last call's arguments (a whole part) alive."""

    class Part:
        pass

    def call_on(part: Part) -> Callable[[], int]:
        return lambda: id(part)

    pool = _ThreadPool(2, "test-pool")
    try:
        part = Part()
        alive = weakref.ref(part)
        assert pool.submit(call_on(part)).result(timeout=5) == id(part)
        del part
        deadline = time.monotonic() + 5
        while alive() is not None:
            assert time.monotonic() < deadline, "the idle thread still holds the call"
            time.sleep(0.01)
    finally:
        pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: 1)


def test_pieces_reader_reads_and_seeks_across_pieces() -> None:
    data = pattern(10_000, seed=1)
    pieces = [memoryview(data)[a:b] for a, b in ((0, 1), (1, 4000), (4000, 4000), (4000, 10_000))]
    reader = _PiecesReader(pieces)
    assert reader.read(3) + reader.read(5000) + reader.read() == data
    assert reader.read(10) == b""
    assert reader.seek(3998) == 3998
    assert reader.tell() == 3998
    buffer = bytearray(5)
    assert reader.readinto(buffer) == 5
    assert bytes(buffer) == data[3998:4003]
    reader.seek(-2, io.SEEK_END)
    assert reader.read(100) == data[-2:]
    reader.seek(0)
    assert b"".join(iter(lambda: reader.read(999), b"")) == data


# -- redirects, prefixes, names, settings ------------------------------------------------------------


async def test_redirect_url_serves_the_bytes(new_driver: Callable[..., S3Driver]) -> None:
    plain = new_driver()
    assert await plain.redirect_url("blobs/x/data") is None
    driver = new_driver(redirect=True, redirect_ttl_seconds=90, **SMALL)
    data = pattern(11 * MiB, seed=2)
    await write_file(driver, "uploads/r/data", data)
    await driver.move("uploads/r/data", "blobs/x/data")
    url = await driver.redirect_url("blobs/x/data")
    assert url is not None
    assert "X-Amz-Expires=90" in url
    assert "X-Amz-Signature=" in url

    def fetch(target: str, method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
        request = urllib.request.Request(target, method=method)  # noqa: S310 - moto's http:// URL
        with _DIRECT.open(request, timeout=30) as response:
            return response.status, response.read(), dict(response.headers.items())

    status, body, _ = await asyncio.to_thread(fetch, url)
    assert status == 200
    assert body == data
    head_url = await driver.redirect_url("blobs/x/data", "HEAD")
    assert head_url is not None
    status, body, headers = await asyncio.to_thread(fetch, head_url, "HEAD")
    assert (status, body, headers["Content-Length"]) == (200, b"", str(len(data)))


async def test_keys_carry_the_prefix(
    new_driver: Callable[..., S3Driver], moto_endpoint: str, s3_bucket: str
) -> None:
    driver = new_driver(prefix="team/registry", **SMALL)
    await driver.put_content("blobs/a/data", b"a")
    await write_file(driver, "uploads/b/data", pattern(6 * MiB))
    keys = keys_in(moto_endpoint, s3_bucket)
    assert keys
    assert all(k.startswith("team/registry/") for k in keys), keys
    assert await driver.list("uploads") == ["uploads/b"]
    # Another prefix on the same bucket is another store.
    other = new_driver(prefix="team/other")
    with pytest.raises(PathNotFoundError):
        await other.get_content("blobs/a/data")
    await other.put_content("blobs/a/data", b"other")
    assert await driver.get_content("blobs/a/data") == b"a"
    await driver.delete("uploads")
    assert keys_in(moto_endpoint, s3_bucket) == ["team/other/blobs/a/data", "team/registry/blobs/a/data"]


@pytest.mark.parametrize("path", ["a.wharf-state", "a/b.wharf-seg/0", "x.wharf-seg", "d.wharf-state/f"])
async def test_reserved_names_are_invalid(new_driver: Callable[..., S3Driver], path: str) -> None:
    driver = new_driver()
    with pytest.raises(InvalidPathError):
        await driver.put_content(path, b"x")
    with pytest.raises(InvalidPathError):
        await driver.writer(path)


async def test_list_and_delete_hide_segments(new_driver: Callable[..., S3Driver]) -> None:
    driver = new_driver(**SMALL)
    await write_file(driver, "d/segmented", pattern(7 * MiB))
    await driver.put_content("d/plain", b"p")
    abandoned = await driver.writer("d/never-committed", 0)
    await abandoned.write(pattern(6 * MiB))  # a full segment, and then the writer's process died
    assert await driver.list("d") == ["d/plain", "d/segmented"]
    with pytest.raises(PathNotFoundError):
        await driver.stat("d/never-committed")
    info = await driver.stat("d")
    assert info.is_dir
    await driver.delete("d")
    with pytest.raises(PathNotFoundError):
        await driver.stat("d")


async def test_settings_reach_the_client(moto_endpoint: str, s3_bucket: str) -> None:
    settings = Settings(
        storage=s3.storage_settings(  # type: ignore[arg-type]
            moto_endpoint, s3_bucket, prefix="p", part_size=6 * MiB, max_threads=4, redirect=True
        )
    )
    storage = open_storage(settings, Metrics("test"))
    driver = storage.driver
    assert isinstance(driver, S3Driver)
    try:
        assert storage.name == "s3"
        assert (driver.bucket, driver.prefix, driver.part_size, driver.redirect) == (
            s3_bucket,
            "p/",
            6 * MiB,
            True,
        )
        meta = driver.client.meta
        assert meta.endpoint_url == moto_endpoint
        assert meta.region_name == s3.REGION
        assert meta.config.s3["addressing_style"] == "path"
        assert meta.config.max_pool_connections == 4
        await storage.put_content("x", b"through the settings")
        assert await storage.get_content("x") == b"through the settings"
        url = await storage.redirect_url("x")
        assert url is not None
        assert url.startswith(f"{moto_endpoint}/{s3_bucket}/p/x?")
    finally:
        driver.close()
    # Virtual-hosted addressing by default; the part size never exceeds the copy limit.
    virtual = S3Driver(bucket="b", region="eu-west-1", part_size=64 * MiB, copy_limit=32 * MiB)
    try:
        assert virtual.client.meta.config.s3["addressing_style"] == "virtual"
        assert virtual.part_size == 32 * MiB
    finally:
        virtual.close()
    with pytest.raises(ValueError, match="at least"):
        S3Driver(bucket="b", part_size=MiB)
