"""The storage driver interface, its errors, and the wrapper every driver runs inside.

Modelled on distribution's StorageDriver: drivers move bytes and know nothing of blobs,
repositories or tags. `Instrumented` wraps any driver to validate paths and time each call.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from wharf_shared.metrics import Metrics

DEFAULT_CHUNK = 1024 * 1024
_PATH = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


class StorageError(Exception):
    def __init__(self, path: str, message: str = "", *, driver: str = "") -> None:
        super().__init__(f"{driver + ': ' if driver else ''}{message or type(self).__name__}: {path}")
        self.path = path
        self.driver = driver
        self.reason = message or type(self).__name__  # what went wrong, without where


class PathNotFoundError(StorageError):
    pass


class InvalidPathError(StorageError):
    pass


class InvalidOffsetError(StorageError):
    pass


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size: int
    modified: dt.datetime
    is_dir: bool


class FileWriter(Protocol):
    """Writes at the end of a file; nothing is durable until `commit`."""

    @property
    def size(self) -> int:
        """Bytes in the file, including what this writer wrote."""

    async def write(self, data: bytes | bytearray | memoryview) -> None: ...

    async def commit(self, *, durable: bool = True) -> None:
        """Make everything written visible to every process; the writer is closed afterwards.

        `durable=False` may skip the wait for the disk (a machine crash could lose the tail; a
        process crash cannot): what uploads use between chunks, since `move` makes a file durable
        before it becomes a blob."""

    async def cancel(self) -> None:
        """Discard what this writer wrote (the file is as it was when opened); closes it."""


@runtime_checkable
class BlockingWriter(Protocol):
    """A FileWriter that can also be written from a worker thread, so that a caller already off
    the event loop (hashing there, say) writes with no further thread hand-off."""

    def write_blocking(self, pieces: Sequence[bytes | bytearray | memoryview]) -> None:
        """Append the pieces, in order; never call it while an async `write` runs."""


class StorageDriver(Protocol):
    name: str
    atomic_rename: bool  # whether `rename` is offered (object stores have no renames)

    async def get_content(self, path: str) -> bytes: ...

    async def put_content(self, path: str, data: bytes) -> None:
        """Replace the file atomically: readers see the old or the new content, never a mix."""

    def reader(
        self, path: str, offset: int = 0, chunk_size: int = DEFAULT_CHUNK
    ) -> AsyncGenerator[bytes, None]:
        """The file's bytes from `offset`; PathNotFoundError if missing, InvalidOffsetError past the end."""

    async def writer(self, path: str, offset: int = 0) -> FileWriter:
        """Write from `offset` on, dropping anything after it; InvalidOffsetError if past the end.

        Offset 0 creates (or empties) the file. Continuing at the size last committed lets
        another process, or this one after a crash, resume an upload.
        """

    async def stat(self, path: str) -> FileInfo:
        """A file or a directory; PathNotFoundError if neither."""

    async def stat_file(self, path: str) -> FileInfo:
        """A file; PathNotFoundError for a directory or for nothing.

        Unlike `stat`, it never tells a missing file from a directory, which on an object store
        takes a listing: the push and pull paths use this one."""

    async def list(self, path: str) -> list[str]:
        """Direct children of a directory, as full paths."""

    async def move(self, source: str, dest: str, *, size: int | None = None) -> None:
        """Rename atomically, replacing `dest`; `dest` is durable when this returns.

        With `size`: InvalidOffsetError, and nothing moved, unless `source` holds that many bytes
        (a machine crash may have cut a file written without sync)."""

    async def rename(self, source: str, dest: str) -> None:
        """Rename a file atomically, without making it durable, to a `dest` that does not exist:
        of several racing renames of one source, one succeeds and the others find it gone
        (PathNotFoundError). Only where `atomic_rename` is true; others raise StorageError."""

    async def join(self, sources: Sequence[tuple[str, int]], dest: str) -> None:
        """Make `dest` the concatenation of the first `length` bytes of each `(path, length)`, in
        order, atomically and durably, without passing the bytes through Python where the
        store can (`copy_file_range`, S3's server-side part copies). The sources stay as they
        are; InvalidOffsetError, with `dest` untouched, when one is shorter than its length."""

    async def delete(self, path: str) -> None:
        """Delete a file or a whole directory tree."""

    async def delete_file(self, path: str) -> None:
        """Delete a file; PathNotFoundError for a directory or nothing. Never lists (see stat_file)."""

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        """A URL the client may fetch the file from directly, or None."""

    def local_path(self, path: str) -> Path | None:
        """The file on the local file system, for sendfile, or None."""


def check_path(path: str, driver: str = "") -> str:
    if not _PATH.fullmatch(path) or any(part in (".", "..") for part in path.split("/")):
        raise InvalidPathError(path, "invalid path", driver=driver)
    return path


class Instrumented:
    """Any driver, with paths validated and every call timed per driver and operation."""

    def __init__(self, driver: StorageDriver, metrics: Metrics) -> None:
        self.driver = driver
        self.name = driver.name
        self.atomic_rename = driver.atomic_rename
        self._latency = metrics.storage_latency
        self._errors = metrics.storage_errors

    def _observe(self, operation: str, start: float, failed: bool) -> None:
        self._latency.labels(self.name, operation).observe(time.perf_counter() - start)
        if failed:
            self._errors.labels(self.name, operation).inc()

    async def get_content(self, path: str) -> bytes:
        start, failed = time.perf_counter(), True
        try:
            data = await self.driver.get_content(check_path(path, self.name))
            failed = False
            return data
        finally:
            self._observe("get_content", start, failed)

    async def put_content(self, path: str, data: bytes) -> None:
        start, failed = time.perf_counter(), True
        try:
            await self.driver.put_content(check_path(path, self.name), data)
            failed = False
        finally:
            self._observe("put_content", start, failed)

    async def reader(
        self, path: str, offset: int = 0, chunk_size: int = DEFAULT_CHUNK
    ) -> AsyncGenerator[bytes, None]:
        start, failed = time.perf_counter(), True
        try:
            async for chunk in self.driver.reader(check_path(path, self.name), offset, chunk_size):
                yield chunk
            failed = False
        finally:
            self._observe("reader", start, failed)

    async def writer(self, path: str, offset: int = 0) -> FileWriter:
        start, failed = time.perf_counter(), True
        try:
            writer = await self.driver.writer(check_path(path, self.name), offset)
            failed = False
            return writer
        finally:
            self._observe("writer", start, failed)

    async def stat(self, path: str) -> FileInfo:
        start, failed = time.perf_counter(), True
        try:
            info = await self.driver.stat(check_path(path, self.name))
            failed = False
            return info
        except PathNotFoundError:
            failed = False  # an answer, not a failure
            raise
        finally:
            self._observe("stat", start, failed)

    async def stat_file(self, path: str) -> FileInfo:
        start, failed = time.perf_counter(), True
        try:
            info = await self.driver.stat_file(check_path(path, self.name))
            failed = False
            return info
        except PathNotFoundError:
            failed = False  # an answer, not a failure
            raise
        finally:
            self._observe("stat_file", start, failed)

    async def list(self, path: str) -> list[str]:
        start, failed = time.perf_counter(), True
        try:
            entries = await self.driver.list(check_path(path, self.name))
            failed = False
            return entries
        finally:
            self._observe("list", start, failed)

    async def move(self, source: str, dest: str, *, size: int | None = None) -> None:
        start, failed = time.perf_counter(), True
        try:
            await self.driver.move(check_path(source, self.name), check_path(dest, self.name), size=size)
            failed = False
        finally:
            self._observe("move", start, failed)

    async def rename(self, source: str, dest: str) -> None:
        start, failed = time.perf_counter(), True
        try:
            await self.driver.rename(check_path(source, self.name), check_path(dest, self.name))
            failed = False
        except PathNotFoundError:
            failed = False  # an answer: another request took it first
            raise
        finally:
            self._observe("rename", start, failed)

    async def join(self, sources: Sequence[tuple[str, int]], dest: str) -> None:
        start, failed = time.perf_counter(), True
        try:
            checked = [(check_path(source, self.name), length) for source, length in sources]
            await self.driver.join(checked, check_path(dest, self.name))
            failed = False
        finally:
            self._observe("join", start, failed)

    async def delete(self, path: str) -> None:
        start, failed = time.perf_counter(), True
        try:
            await self.driver.delete(check_path(path, self.name))
            failed = False
        finally:
            self._observe("delete", start, failed)

    async def delete_file(self, path: str) -> None:
        start, failed = time.perf_counter(), True
        try:
            await self.driver.delete_file(check_path(path, self.name))
            failed = False
        finally:
            self._observe("delete_file", start, failed)

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        return await self.driver.redirect_url(check_path(path, self.name), method)

    def local_path(self, path: str) -> Path | None:
        return self.driver.local_path(check_path(path, self.name))
