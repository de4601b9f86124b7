"""One conformance suite for every storage driver (after distribution's `driver/testsuites`).

A driver's test module only supplies a constructor:

    class TestS3Driver(DriverSuite):
        @pytest.fixture
        def driver(self, s3_bucket: str) -> StorageDriver:
            return S3Driver(bucket=s3_bucket, ...)

The fixture must return a fresh, empty driver for each test. Every test here states the
contract of `wharf_shared.storage.base.StorageDriver`, so a driver that passes can replace
any other under the registry.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from wharf_shared.storage.base import (
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
    StorageDriver,
    StorageError,
)

INVALID_PATHS = [
    *("../x", "a/../b", "/abs", "", "a//b", "a/", "./a", "a/./b"),
    *("a b", "a\\b", "a\nb", "a\n", "a/b\n"),
]

# Every operation that takes a path, each called with `bad` in one path argument.
PATH_OPERATIONS: dict[str, Callable[[Any, str], Awaitable[Any]]] = {
    "get_content": lambda d, bad: d.get_content(bad),
    "put_content": lambda d, bad: d.put_content(bad, b"x"),
    "reader": lambda d, bad: read_all(d.reader(bad)),
    "writer": lambda d, bad: d.writer(bad),
    "stat": lambda d, bad: d.stat(bad),
    "stat_file": lambda d, bad: d.stat_file(bad),
    "list": lambda d, bad: d.list(bad),
    "move_source": lambda d, bad: d.move(bad, "dest"),
    "move_dest": lambda d, bad: d.move("source", bad),
    "join_source": lambda d, bad: d.join([("source", 1), (bad, 0)], "dest"),
    "join_dest": lambda d, bad: d.join([("source", 1)], bad),
    "rename_source": lambda d, bad: d.rename(bad, "elsewhere"),
    "rename_dest": lambda d, bad: d.rename("source", bad),
    "delete": lambda d, bad: d.delete(bad),
    "delete_file": lambda d, bad: d.delete_file(bad),
}


async def read_all(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def write_file(driver: StorageDriver, path: str, data: bytes, offset: int = 0) -> int:
    writer = await driver.writer(path, offset)
    await writer.write(data)
    size = writer.size
    await writer.commit()
    return size


def pattern(size: int, seed: int = 0) -> bytes:
    """Deterministic bytes that differ from offset to offset (a shifted read cannot pass)."""
    return random.Random(seed).randbytes(size)


class DriverSuite:
    """The storage driver contract. Subclass it with a `driver` fixture (fresh and empty)."""

    @pytest.fixture
    def driver(self) -> StorageDriver:
        pytest.fail(f"{type(self).__name__} must define a `driver` fixture", pytrace=False)

    # -- get_content / put_content -------------------------------------------------------

    async def test_put_then_get(self, driver: StorageDriver) -> None:
        data = pattern(70_001)
        await driver.put_content("a/b/file", data)
        assert await driver.get_content("a/b/file") == data

    async def test_empty_content(self, driver: StorageDriver) -> None:
        await driver.put_content("empty", b"")
        assert await driver.get_content("empty") == b""
        assert (await driver.stat("empty")).size == 0

    async def test_path_characters(self, driver: StorageDriver) -> None:
        path = "Repo_1/sub-dir.x/file.name-2_Z"
        await driver.put_content(path, b"ok")
        assert await driver.get_content(path) == b"ok"

    async def test_get_missing(self, driver: StorageDriver) -> None:
        with pytest.raises(PathNotFoundError) as info:
            await driver.get_content("no/such/file")
        assert info.value.path == "no/such/file"

    async def test_get_directory_is_not_found(self, driver: StorageDriver) -> None:
        await driver.put_content("dir/file", b"x")
        with pytest.raises(PathNotFoundError):
            await driver.get_content("dir")

    async def test_put_replaces_longer_content(self, driver: StorageDriver) -> None:
        await driver.put_content("f", b"a much longer first version")
        await driver.put_content("f", b"short")
        assert await driver.get_content("f") == b"short"
        assert (await driver.stat("f")).size == 5

    async def test_put_is_atomic_for_readers(self, driver: StorageDriver) -> None:
        """Readers racing a replacement see the old or the new content, never a mix or a gap."""
        size = 512 * 1024
        versions = [bytes([65 + i]) * size for i in range(4)]
        await driver.put_content("race", versions[0])
        seen: set[bytes] = set()

        async def replace() -> None:
            for i in range(1, 13):
                await driver.put_content("race", versions[i % 4])

        async def read() -> None:
            for _ in range(30):
                data = await driver.get_content("race")
                assert data in versions, f"torn read: {len(data)} bytes, kinds {set(data)}"
                seen.add(data[:1])

        await asyncio.gather(replace(), read(), read())
        assert await driver.get_content("race") == versions[0]
        assert seen, "the readers read nothing"

    async def test_put_leaves_no_temporary_entries(self, driver: StorageDriver) -> None:
        for i in range(3):
            await driver.put_content("dir/file", b"v%d" % i)
        assert await driver.list("dir") == ["dir/file"]

    # -- reader ----------------------------------------------------------------------------

    async def test_reader_whole_file(self, driver: StorageDriver) -> None:
        data = pattern(3 * 65536 + 17)
        await driver.put_content("r", data)
        chunks = [c async for c in driver.reader("r", 0, 65536)]
        assert b"".join(chunks) == data
        assert all(chunks), "a reader never yields an empty chunk"

    @pytest.mark.parametrize("offset", [1, 4095, 65536, 100_000, 150_000 - 1])
    async def test_reader_at_offset(self, driver: StorageDriver, offset: int) -> None:
        data = pattern(150_000)
        await driver.put_content("r", data)
        assert await read_all(driver.reader("r", offset, 8192)) == data[offset:]

    async def test_reader_at_end_yields_nothing(self, driver: StorageDriver) -> None:
        await driver.put_content("r", b"12345")
        assert await read_all(driver.reader("r", 5)) == b""

    @pytest.mark.parametrize("offset", [6, 1 << 40, -1])
    async def test_reader_outside_the_file(self, driver: StorageDriver, offset: int) -> None:
        await driver.put_content("r", b"12345")
        with pytest.raises(InvalidOffsetError):
            await read_all(driver.reader("r", offset))

    async def test_reader_missing(self, driver: StorageDriver) -> None:
        with pytest.raises(PathNotFoundError):
            await read_all(driver.reader("missing"))
        with pytest.raises(PathNotFoundError):
            await read_all(driver.reader("missing", 3))

    # -- writer ----------------------------------------------------------------------------

    async def test_writer_creates(self, driver: StorageDriver) -> None:
        writer = await driver.writer("w/new", 0)
        assert writer.size == 0
        await writer.write(b"hello ")
        assert writer.size == 6
        await writer.write(memoryview(b"world"))
        await writer.write(bytearray(b"!"))
        assert writer.size == 12
        await writer.commit()
        assert await driver.get_content("w/new") == b"hello world!"
        assert (await driver.stat("w/new")).size == 12

    async def test_writer_commit_empty(self, driver: StorageDriver) -> None:
        writer = await driver.writer("w/empty", 0)
        await writer.commit()
        assert await driver.get_content("w/empty") == b""

    async def test_writer_at_zero_replaces(self, driver: StorageDriver) -> None:
        await driver.put_content("w", b"old content, longer")
        assert await write_file(driver, "w", b"new") == 3
        assert await driver.get_content("w") == b"new"

    async def test_writer_resumes_at_committed_size(self, driver: StorageDriver) -> None:
        assert await write_file(driver, "w", b"first ") == 6
        writer = await driver.writer("w", 6)
        assert writer.size == 6
        await writer.write(b"second")
        assert writer.size == 12
        await writer.commit()
        assert await driver.get_content("w") == b"first second"

    async def test_writer_drops_bytes_past_offset(self, driver: StorageDriver) -> None:
        """A writer continuing at the acknowledged offset drops what a crashed writer left after it."""
        await driver.put_content("w", b"acknowledged|garbage from a crash")
        assert await write_file(driver, "w", b"+more", 12) == 17
        assert await driver.get_content("w") == b"acknowledged+more"

    async def test_writer_at_offset_without_writing_truncates(self, driver: StorageDriver) -> None:
        await driver.put_content("w", b"0123456789")
        writer = await driver.writer("w", 4)
        await writer.commit()
        assert await driver.get_content("w") == b"0123"

    @pytest.mark.parametrize("offset", [11, 1 << 40, -1])
    async def test_writer_outside_the_file(self, driver: StorageDriver, offset: int) -> None:
        await driver.put_content("w", b"0123456789")
        with pytest.raises(InvalidOffsetError):
            await driver.writer("w", offset)
        assert await driver.get_content("w") == b"0123456789"

    async def test_writer_offset_on_missing_file(self, driver: StorageDriver) -> None:
        with pytest.raises(InvalidOffsetError):
            await driver.writer("w/missing", 1)
        with pytest.raises(PathNotFoundError):
            await driver.stat("w/missing")

    async def test_commit_then_reopen(self, driver: StorageDriver) -> None:
        parts = [pattern(10_000, seed) for seed in range(5)]
        offset = 0
        for part in parts:
            writer = await driver.writer("w/chunks", offset)
            await writer.write(part)
            await writer.commit()
            offset += len(part)
            assert (await driver.stat("w/chunks")).size == offset
        assert await driver.get_content("w/chunks") == b"".join(parts)

    async def test_write_after_commit_fails(self, driver: StorageDriver) -> None:
        writer = await driver.writer("w", 0)
        await writer.write(b"abc")
        await writer.commit()
        with pytest.raises(StorageError):
            await writer.write(b"more")
        assert await driver.get_content("w") == b"abc"

    async def test_cancel_on_resume_restores(self, driver: StorageDriver) -> None:
        await write_file(driver, "w", b"committed")
        writer = await driver.writer("w", 9)
        await writer.write(b" and then some")
        await writer.cancel()
        assert await driver.get_content("w") == b"committed"
        assert (await driver.stat("w")).size == 9

    async def test_cancel_restores_bytes_past_offset(self, driver: StorageDriver) -> None:
        data = pattern(300_000)
        await driver.put_content("w", data)
        writer = await driver.writer("w", 1000)
        await writer.write(b"x" * 5000)
        await writer.cancel()
        assert await driver.get_content("w") == data

    async def test_cancel_of_rewrite_restores(self, driver: StorageDriver) -> None:
        await driver.put_content("w", b"previous content")
        writer = await driver.writer("w", 0)
        await writer.write(b"replacement that is never committed")
        await writer.cancel()
        assert await driver.get_content("w") == b"previous content"

    async def test_cancel_of_new_file_leaves_nothing(self, driver: StorageDriver) -> None:
        writer = await driver.writer("w/new", 0)
        await writer.write(b"abandoned")
        await writer.cancel()
        with pytest.raises(PathNotFoundError):
            await driver.stat("w/new")

    async def test_large_streamed_write(self, driver: StorageDriver) -> None:
        """Many uneven chunks (past S3's 5 MiB part minimum), read back in other chunk sizes."""
        total = 12 * 1024 * 1024 + 12_345
        source = hashlib.sha256()
        writer = await driver.writer("big/blob", 0)
        written = 0
        seed = 0
        while written < total:
            chunk = pattern(min(100_003 + (seed % 7) * 31_337, total - written), seed)
            source.update(chunk)
            await writer.write(chunk)
            written += len(chunk)
            seed += 1
        assert seed > 50
        assert writer.size == total
        await writer.commit()
        assert (await driver.stat("big/blob")).size == total
        readback = hashlib.sha256()
        async for chunk in driver.reader("big/blob", 0, 256 * 1024):
            readback.update(chunk)
        assert readback.hexdigest() == source.hexdigest()
        tail = await read_all(driver.reader("big/blob", total - 1000, 333))
        assert tail == (await driver.get_content("big/blob"))[-1000:]

    async def test_concurrent_writers_to_different_paths(self, driver: StorageDriver) -> None:
        async def upload(i: int) -> bytes:
            expected = b""
            writer = await driver.writer(f"uploads/{i}/data", 0)
            for step in range(8):
                piece = pattern(20_000 + i * 101, i * 100 + step)
                await writer.write(piece)
                expected += piece
                await asyncio.sleep(0)
            await writer.commit()
            return expected

        expected = await asyncio.gather(*(upload(i) for i in range(8)))
        for i, data in enumerate(expected):
            assert await driver.get_content(f"uploads/{i}/data") == data
        assert await driver.list("uploads") == sorted(f"uploads/{i}" for i in range(8))

    # -- stat ------------------------------------------------------------------------------

    async def test_stat_file(self, driver: StorageDriver) -> None:
        before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
        await driver.put_content("s/file", b"x" * 1234)
        info = await driver.stat("s/file")
        assert info.path == "s/file"
        assert info.size == 1234
        assert info.is_dir is False
        assert info.modified.tzinfo is not None
        assert before <= info.modified <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)

    async def test_stat_directory(self, driver: StorageDriver) -> None:
        await driver.put_content("s/dir/file", b"x")
        info = await driver.stat("s/dir")
        assert info.is_dir is True
        assert info.path == "s/dir"

    async def test_stat_missing(self, driver: StorageDriver) -> None:
        with pytest.raises(PathNotFoundError):
            await driver.stat("s/missing")
        await driver.put_content("s/file", b"x")
        with pytest.raises(PathNotFoundError):
            await driver.stat("s/fil")  # a prefix is not an entry
        with pytest.raises(PathNotFoundError):
            await driver.stat("s/file/below")

    async def test_stat_file_only(self, driver: StorageDriver) -> None:
        await driver.put_content("s/dir/file", b"x" * 33)
        await write_file(driver, "s/written", b"y" * 44)
        assert (await driver.stat_file("s/dir/file")).size == 33
        info = await driver.stat_file("s/written")
        assert (info.path, info.size, info.is_dir) == ("s/written", 44, False)
        for not_a_file in ("s/dir", "s", "s/missing", "s/dir/fil", "s/dir/file/below"):
            with pytest.raises(PathNotFoundError):
                await driver.stat_file(not_a_file)

    # -- list ------------------------------------------------------------------------------

    async def test_list_direct_children(self, driver: StorageDriver) -> None:
        for path in ["l/b/deep/file", "l/a", "l/c/file", "l/b/other", "lx/file"]:
            await driver.put_content(path, b"x")
        assert await driver.list("l") == ["l/a", "l/b", "l/c"]
        assert await driver.list("l/b") == ["l/b/deep", "l/b/other"]

    async def test_list_missing(self, driver: StorageDriver) -> None:
        with pytest.raises(PathNotFoundError):
            await driver.list("nothing/here")
        await driver.put_content("lst/file", b"x")
        with pytest.raises(PathNotFoundError):
            await driver.list("ls")  # a prefix is not a directory

    # -- move ------------------------------------------------------------------------------

    async def test_move(self, driver: StorageDriver) -> None:
        data = pattern(50_000)
        await driver.put_content("m/source", data)
        await driver.move("m/source", "elsewhere/deep/dest")
        assert await driver.get_content("elsewhere/deep/dest") == data
        with pytest.raises(PathNotFoundError):
            await driver.stat("m/source")

    async def test_move_replaces_destination(self, driver: StorageDriver) -> None:
        await driver.put_content("m/source", b"new")
        await driver.put_content("m/dest", b"old and longer")
        await driver.move("m/source", "m/dest")
        assert await driver.get_content("m/dest") == b"new"
        assert await driver.list("m") == ["m/dest"]

    async def test_move_missing_source(self, driver: StorageDriver) -> None:
        await driver.put_content("m/dest", b"untouched")
        with pytest.raises(PathNotFoundError):
            await driver.move("m/missing", "m/dest")
        assert await driver.get_content("m/dest") == b"untouched"

    async def test_move_checks_the_size(self, driver: StorageDriver) -> None:
        await driver.put_content("m/source", b"0123456789")
        with pytest.raises(InvalidOffsetError):
            await driver.move("m/source", "m/dest", size=11)
        with pytest.raises(PathNotFoundError):
            await driver.stat("m/dest")
        await driver.move("m/source", "m/dest", size=10)
        assert await driver.get_content("m/dest") == b"0123456789"

    # -- join --------------------------------------------------------------------------------

    async def test_join(self, driver: StorageDriver) -> None:
        """Files written in every way, of sizes around S3's 5 MiB minimum part, each cut to a
        prefix of its own: the destination is exactly those bytes, and the sources are as they were."""
        MiB = 1024 * 1024
        pieces = [pattern(size, seed) for seed, size in enumerate((MiB + 1, 6 * MiB + 7, 300_001, 7 * MiB))]
        await write_file(driver, "j/a", pieces[0])
        writer = await driver.writer("j/b", 0)
        for start in range(0, len(pieces[1]), 999_999):
            await writer.write(pieces[1][start : start + 999_999])
        await writer.commit()
        await driver.put_content("j/c", pieces[2])
        await write_file(driver, "j/d", pieces[3])
        await driver.put_content("joined/old", b"replaced")
        takes = [len(pieces[0]), len(pieces[1]) - 5, 0, 5 * MiB + 3]
        sources = [("j/a", takes[0]), ("j/b", takes[1]), ("j/c", takes[2]), ("j/d", takes[3])]
        await driver.join(sources, "joined/old")
        expected = b"".join(piece[:take] for piece, take in zip(pieces, takes, strict=True))
        joined = await driver.get_content("joined/old")
        assert hashlib.sha256(joined).digest() == hashlib.sha256(expected).digest()
        for name, piece in zip("abcd", pieces, strict=True):
            assert await driver.get_content(f"j/{name}") == piece
        assert await driver.list("joined") == ["joined/old"]

    async def test_join_of_one_and_of_none(self, driver: StorageDriver) -> None:
        await driver.put_content("j/one", b"single source")
        await driver.join([("j/one", 6)], "j/dest")
        assert await driver.get_content("j/dest") == b"single"
        assert await driver.get_content("j/one") == b"single source"
        await driver.join([], "j/empty")
        assert await driver.get_content("j/empty") == b""

    async def test_join_of_a_short_or_missing_source(self, driver: StorageDriver) -> None:
        await driver.put_content("j/a", b"12345")
        await driver.put_content("j/dest", b"untouched")
        with pytest.raises(InvalidOffsetError):
            await driver.join([("j/a", 5), ("j/a", 6)], "j/dest")
        with pytest.raises(PathNotFoundError):
            await driver.join([("j/a", 5), ("j/missing", 1)], "j/dest")
        assert await driver.get_content("j/dest") == b"untouched"
        assert await driver.list("j") == ["j/a", "j/dest"]

    # -- rename ------------------------------------------------------------------------------

    async def test_rename(self, driver: StorageDriver) -> None:
        await write_file(driver, "r/source", b"bytes in progress")
        if not driver.atomic_rename:
            with pytest.raises(StorageError):
                await driver.rename("r/source", "r/taken")
            assert await driver.get_content("r/source") == b"bytes in progress"
            return
        results = await asyncio.gather(
            *(driver.rename("r/source", f"r/taken-{i}") for i in range(4)), return_exceptions=True
        )
        winners = [i for i, result in enumerate(results) if result is None]
        assert len(winners) == 1, results
        assert all(isinstance(r, PathNotFoundError) for r in results if r is not None)
        assert await driver.get_content(f"r/taken-{winners[0]}") == b"bytes in progress"
        assert await driver.list("r") == [f"r/taken-{winners[0]}"]

    # -- delete ----------------------------------------------------------------------------

    async def test_delete_file(self, driver: StorageDriver) -> None:
        await driver.put_content("d/file", b"x")
        await driver.put_content("d/keep", b"y")
        await driver.delete("d/file")
        with pytest.raises(PathNotFoundError):
            await driver.get_content("d/file")
        assert await driver.list("d") == ["d/keep"]

    async def test_delete_tree(self, driver: StorageDriver) -> None:
        for path in ["d/tree/a", "d/tree/sub/b", "d/tree/sub/deeper/c", "d/treehouse", "d/other"]:
            await driver.put_content(path, b"x")
        await driver.delete("d/tree")
        for gone in ["d/tree", "d/tree/a", "d/tree/sub/deeper/c"]:
            with pytest.raises(PathNotFoundError):
                await driver.stat(gone)
        assert await driver.list("d") == ["d/other", "d/treehouse"]

    async def test_delete_missing(self, driver: StorageDriver) -> None:
        with pytest.raises(PathNotFoundError):
            await driver.delete("d/missing")
        with pytest.raises(PathNotFoundError):
            await driver.delete("no/such/tree")

    async def test_delete_file_only(self, driver: StorageDriver) -> None:
        await driver.put_content("d/tree/a", b"x")
        await write_file(driver, "d/tree/written", b"y")
        await driver.delete_file("d/tree/written")
        with pytest.raises(PathNotFoundError):
            await driver.stat("d/tree/written")
        for not_a_file in ("d/tree", "d", "d/tree/missing", "d/tree/written"):
            with pytest.raises(PathNotFoundError):
                await driver.delete_file(not_a_file)
        assert await driver.list("d/tree") == ["d/tree/a"]
        await driver.delete_file("d/tree/a")
        with pytest.raises(PathNotFoundError):
            await driver.stat("d")

    # -- paths -----------------------------------------------------------------------------

    @pytest.mark.parametrize("operation", list(PATH_OPERATIONS))
    @pytest.mark.parametrize("bad", INVALID_PATHS)
    async def test_invalid_path(self, driver: StorageDriver, operation: str, bad: str) -> None:
        await driver.put_content("source", b"s")
        await driver.put_content("dest", b"d")
        with pytest.raises(InvalidPathError) as info:
            await PATH_OPERATIONS[operation](driver, bad)
        assert info.value.path == bad
        assert await driver.get_content("source") == b"s"
        assert await driver.get_content("dest") == b"d"

    async def test_errors_are_storage_errors(self, driver: StorageDriver) -> None:
        for error in (PathNotFoundError, InvalidPathError, InvalidOffsetError):
            assert issubclass(error, StorageError)
        with pytest.raises(StorageError) as info:
            await driver.get_content("missing")
        assert "missing" in str(info.value)
