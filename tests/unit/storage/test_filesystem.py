"""The filesystem driver: the shared conformance suite, bare and inside `Instrumented`."""

from __future__ import annotations

import asyncio
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
