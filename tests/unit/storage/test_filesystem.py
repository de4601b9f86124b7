"""The filesystem driver: the shared conformance suite, bare and inside `Instrumented`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.support.storage_suite import DriverSuite, read_all
from wharf_shared.metrics import Metrics
from wharf_shared.storage.base import Instrumented, InvalidPathError, PathNotFoundError, StorageDriver
from wharf_shared.storage.filesystem import FilesystemDriver


class TestFilesystemDriver(DriverSuite):
    @pytest.fixture
    def driver(self, tmp_path: Path) -> StorageDriver:
        return FilesystemDriver(tmp_path / "root")


class TestInstrumentedFilesystemDriver(DriverSuite):
    @pytest.fixture
    def driver(self, tmp_path: Path) -> StorageDriver:
        return Instrumented(FilesystemDriver(tmp_path / "root"), Metrics("test"))


# What only the filesystem driver (or the wrapper) promises.


async def test_nothing_escapes_the_root(tmp_path: Path) -> None:
    driver = FilesystemDriver(tmp_path / "root")
    for bad in ["../escape", "a/../../escape", str(tmp_path / "abs")]:
        with pytest.raises(InvalidPathError):
            await driver.put_content(bad, b"x")
        with pytest.raises(InvalidPathError):
            await driver.move(bad, "inside")
    assert [p.name for p in await asyncio.to_thread(lambda: list(tmp_path.iterdir()))] == ["root"]


async def test_local_path_and_no_redirect(tmp_path: Path) -> None:
    driver = FilesystemDriver(tmp_path / "root")
    await driver.put_content("blobs/x", b"bytes")
    local = driver.local_path("blobs/x")
    assert local == (tmp_path / "root" / "blobs" / "x").resolve()
    assert local.read_bytes() == b"bytes"
    assert await driver.redirect_url("blobs/x") is None
    with pytest.raises(InvalidPathError):
        driver.local_path("../x")


async def test_cancel_leaves_no_side_files(tmp_path: Path) -> None:
    driver = FilesystemDriver(tmp_path / "root")
    await driver.put_content("dir/file", b"0123456789")
    writer = await driver.writer("dir/file", 3)
    await writer.write(b"abc")
    await writer.cancel()
    writer = await driver.writer("dir/file", 2)
    await writer.write(b"xy")
    await writer.commit()
    assert await driver.get_content("dir/file") == b"01xy"
    assert sorted(p.name for p in (tmp_path / "root" / "dir").iterdir()) == ["file"]


def _sample(metrics: Metrics, name: str, operation: str) -> float:
    value = metrics.registry.get_sample_value(
        f"wharf_test_storage_operation_{name}", {"driver": "filesystem", "operation": operation}
    )
    return value or 0.0


async def test_instrumented_times_and_counts_failures(tmp_path: Path) -> None:
    metrics = Metrics("test")
    driver = Instrumented(FilesystemDriver(tmp_path / "root"), metrics)
    assert driver.name == "filesystem"
    await driver.put_content("a", b"abc")
    await driver.get_content("a")
    assert await read_all(driver.reader("a", 1)) == b"bc"
    with pytest.raises(PathNotFoundError):
        await driver.get_content("missing")
    with pytest.raises(PathNotFoundError):
        await driver.stat("missing")  # an answer, not a failure
    with pytest.raises(InvalidPathError):
        await driver.delete("../a")

    assert _sample(metrics, "duration_seconds_count", "put_content") == 1
    assert _sample(metrics, "duration_seconds_count", "get_content") == 2
    assert _sample(metrics, "duration_seconds_count", "reader") == 1
    assert _sample(metrics, "duration_seconds_count", "stat") == 1
    assert _sample(metrics, "duration_seconds_count", "delete") == 1
    assert _sample(metrics, "errors_total", "get_content") == 1
    assert _sample(metrics, "errors_total", "stat") == 0
    assert _sample(metrics, "errors_total", "delete") == 1
    assert _sample(metrics, "errors_total", "put_content") == 0


async def test_instrumented_stamps_driver_on_path_errors(tmp_path: Path) -> None:
    driver = Instrumented(FilesystemDriver(tmp_path / "root"), Metrics("test"))
    with pytest.raises(InvalidPathError) as info:
        await driver.get_content("a//b")
    assert info.value.driver == "filesystem"
    assert "filesystem" in str(info.value)


# Durability of new directories: a power loss must not leave an SQL row pointing at a file whose
# directory entry, or whose directory's entry, the disk never recorded. What the disk keeps cannot
# be observed from here, so the test records what is fsynced.


def _record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, bool]]:
    """(what was synced, whether it was a directory), in order."""
    synced: list[tuple[Path, bool]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append((Path(os.readlink(f"/proc/self/fd/{fd}")), os.path.isdir(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


async def _put(driver: FilesystemDriver) -> None:
    await driver.put_content("top/new1/new2/file", b"x")


async def _move(driver: FilesystemDriver) -> None:
    await driver.move("top/source", "top/new1/new2/file")


async def _join(driver: FilesystemDriver) -> None:
    await driver.join([("top/source", 6)], "top/new1/new2/file")


async def _writer(driver: FilesystemDriver) -> None:
    writer = await driver.writer("top/new1/new2/file", 0)
    await writer.write(b"x")
    await writer.commit(durable=False)


@pytest.mark.parametrize(
    ("operation", "durable_file"),
    [(_put, True), (_move, True), (_join, True), (_writer, False)],
    ids=["put_content", "move", "join", "writer"],
)
async def test_every_directory_created_is_synced_in_its_parent(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    operation: Callable[[FilesystemDriver], Awaitable[None]],
    durable_file: bool,
) -> None:
    driver = FilesystemDriver(tmp_path / "root")
    await driver.put_content("top/source", b"source")  # `top` exists; new1 and new2 do not
    synced = _record_fsyncs(monkeypatch)
    await operation(driver)
    root = driver.root
    directories = {path for path, is_dir in synced if is_dir}
    # Each new directory's parent (so the new name survives), up to the first that existed.
    assert {root / "top", root / "top/new1"} <= directories, synced
    assert root not in directories, "a directory that existed before needs no sync"
    if durable_file:
        # The file's own directory entry, and its bytes (under whatever name they had then).
        assert root / "top/new1/new2" in directories
        assert any(not is_dir for _, is_dir in synced)


def test_files_are_created_while_other_requests_prune_the_parent(tmp_path: Path) -> None:
    """Requests on sibling directories (uploads of their own under `uploads/`), each creating its
    file and then deleting it, which prunes the directories it leaves empty, `uploads/` too when
    it is the last one there: none of them fails to create its directory because another pruned
    a parent between the look and the mkdir."""
    driver = FilesystemDriver(tmp_path / "root")
    errors: list[str] = []

    async def cycles(tag: str) -> None:
        for i in range(400):
            try:
                writer = await driver.writer(f"uploads/{tag}{i}/part", 0)
                await writer.cancel()  # prunes uploads/<tag><i>, and uploads/ when empty
                await driver.put_content(f"uploads/{tag}/data", b"x")
                await driver.delete_file(f"uploads/{tag}/data")
            except Exception as exc:
                errors.append(f"{tag}{i}: {type(exc).__name__}: {exc}")
                return

    async def race() -> None:
        await asyncio.gather(*(cycles(tag) for tag in "abcd"))

    asyncio.run(race())
    assert errors == []
    assert list((tmp_path / "root").iterdir()) == []
