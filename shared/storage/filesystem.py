"""The filesystem driver: a directory tree; atomic renames; blocking calls off the event loop."""

from __future__ import annotations

import asyncio
import ctypes
import datetime as dt
import os
import shutil
import sys
import uuid
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import BinaryIO

from wharf_shared.storage.base import (
    DEFAULT_CHUNK,
    FileInfo,
    InvalidOffsetError,
    PathNotFoundError,
    StorageError,
    check_path,
)


class FilesystemDriver:
    name = "filesystem"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _full(self, path: str) -> Path:
        return self.root / check_path(path, self.name)

    async def get_content(self, path: str) -> bytes:
        full = self._full(path)
        try:
            return await asyncio.to_thread(full.read_bytes)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise PathNotFoundError(path, driver=self.name) from exc

    async def put_content(self, path: str, data: bytes) -> None:
        await asyncio.to_thread(self._put_sync, self._full(path), data)

    @staticmethod
    def _put_sync(full: Path, data: bytes) -> None:
        full.parent.mkdir(parents=True, exist_ok=True)
        tmp = full.parent / f".{full.name}.{uuid.uuid4().hex}.tmp"
        try:
            with tmp.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, full)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(full.parent)

    async def reader(
        self, path: str, offset: int = 0, chunk_size: int = DEFAULT_CHUNK
    ) -> AsyncGenerator[bytes, None]:
        full = self._full(path)
        try:
            handle = await asyncio.to_thread(full.open, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise PathNotFoundError(path, driver=self.name) from exc
        try:
            size = os.fstat(handle.fileno()).st_size
            if offset < 0 or offset > size:
                raise InvalidOffsetError(path, f"offset {offset} outside 0..{size}", driver=self.name)
            handle.seek(offset)
            while True:
                chunk = await asyncio.to_thread(handle.read, chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            handle.close()

    async def writer(self, path: str, offset: int = 0) -> FilesystemWriter:
        return await asyncio.to_thread(FilesystemWriter.open, self._full(path), path, offset)

    async def stat(self, path: str) -> FileInfo:
        full = self._full(path)
        try:
            st = await asyncio.to_thread(full.stat)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise PathNotFoundError(path, driver=self.name) from exc
        is_dir = full.is_dir()
        return FileInfo(
            path=path,
            size=0 if is_dir else st.st_size,
            modified=dt.datetime.fromtimestamp(st.st_mtime, dt.UTC),
            is_dir=is_dir,
        )

    async def stat_file(self, path: str) -> FileInfo:
        info = await self.stat(path)
        if info.is_dir:
            raise PathNotFoundError(path, "a directory, not a file", driver=self.name)
        return info

    async def list(self, path: str) -> list[str]:
        full = self._full(path)
        try:
            names = await asyncio.to_thread(os.listdir, full)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise PathNotFoundError(path, driver=self.name) from exc
        return sorted(f"{path}/{name}" for name in names if not name.startswith("."))

    async def move(self, source: str, dest: str) -> None:
        await asyncio.to_thread(self._move_sync, self._full(source), self._full(dest), source)

    def _move_sync(self, source: Path, dest: Path, label: str) -> None:
        if not source.exists():
            raise PathNotFoundError(label, driver=self.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # The bytes first (an upload's last chunks may not have been flushed), then the rename.
        fd = os.open(source, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(source, dest)
        _fsync_dir(dest.parent)
        self._prune(source.parent)

    async def delete(self, path: str) -> None:
        await asyncio.to_thread(self._delete_sync, self._full(path), path)

    async def delete_file(self, path: str) -> None:
        await asyncio.to_thread(self._delete_file_sync, self._full(path), path)

    def _delete_file_sync(self, full: Path, label: str) -> None:
        if full.is_dir() and not full.is_symlink():
            raise PathNotFoundError(label, "a directory, not a file", driver=self.name)
        self._delete_sync(full, label)

    def _delete_sync(self, full: Path, label: str) -> None:
        if full.is_dir() and not full.is_symlink():
            shutil.rmtree(full)
        else:
            try:
                full.unlink()
            except FileNotFoundError as exc:
                self._prune(full.parent)  # a writer's cancel may have taken the file first
                raise PathNotFoundError(label, driver=self.name) from exc
        self._prune(full.parent)

    def _prune(self, directory: Path) -> None:
        """Remove directories left empty, as object stores have no empty "directories" either."""
        while directory != self.root and directory.is_relative_to(self.root):
            try:
                directory.rmdir()
            except OSError:
                return  # not empty (or already gone): the tree above is in use
            directory = directory.parent

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        return None

    def local_path(self, path: str) -> Path | None:
        return self._full(path)


class FilesystemWriter:
    def __init__(
        self,
        handle: BinaryIO,
        path: str,
        start: int,
        *,
        created: Path | None = None,
        tail: Path | None = None,
    ) -> None:
        self._handle = handle
        self._path = path
        self._start = start
        self._created = created  # removed by cancel: the file did not exist before
        self._tail = tail  # the bytes past `start` this writer dropped, put back by cancel
        self._size = start
        self._closed = False

    @classmethod
    def open(cls, full: Path, path: str, offset: int) -> FilesystemWriter:
        full.parent.mkdir(parents=True, exist_ok=True)
        created = None
        try:
            handle: BinaryIO = full.open("r+b")
        except FileNotFoundError:
            if offset != 0:
                raise InvalidOffsetError(
                    path, f"offset {offset} on a missing file", driver="filesystem"
                ) from None
            handle = full.open("w+b")
            created = full
        size = os.fstat(handle.fileno()).st_size
        if offset < 0 or offset > size:
            handle.close()
            raise InvalidOffsetError(path, f"offset {offset} outside 0..{size}", driver="filesystem")
        tail = None
        if offset < size:
            # Keep what this writer drops until it commits, so that cancel can restore it.
            tail = full.parent / f".{full.name}.{uuid.uuid4().hex}.tail"
            handle.seek(offset)
            with tail.open("wb") as saved:
                shutil.copyfileobj(handle, saved, DEFAULT_CHUNK)
        handle.truncate(offset)
        handle.seek(offset)
        return cls(handle, path, offset, created=created, tail=tail)

    @property
    def size(self) -> int:
        return self._size

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(self._path, "writer is closed", driver="filesystem")

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        self._check_open()
        await asyncio.to_thread(self._write_sync, data, self._size)
        self._size += len(data)

    def _write_sync(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        self._handle.write(data)
        self._handle.flush()
        # Start writeback now, so that commit's fsync finds little left to flush.
        _start_writeback(self._handle.fileno(), offset, len(data))

    async def commit(self, *, durable: bool = True) -> None:
        self._check_open()
        self._closed = True
        await asyncio.to_thread(self._commit_sync, durable)

    def _commit_sync(self, durable: bool) -> None:
        try:
            self._handle.flush()
            if durable:
                os.fsync(self._handle.fileno())
        finally:
            self._handle.close()
            if self._tail is not None:
                self._tail.unlink(missing_ok=True)

    async def cancel(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._cancel_sync)

    def _cancel_sync(self) -> None:
        try:
            self._handle.truncate(self._start)
            if self._tail is not None:
                self._handle.seek(self._start)
                with self._tail.open("rb") as saved:
                    shutil.copyfileobj(saved, self._handle, DEFAULT_CHUNK)
        finally:
            self._handle.close()
            if self._tail is not None:
                self._tail.unlink(missing_ok=True)
            if self._created is not None:
                self._created.unlink(missing_ok=True)
        self._size = self._start


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    write = 2  # SYNC_FILE_RANGE_WRITE: queue the range for writeback, do not wait

    def start(fd: int, offset: int, length: int) -> None:
        call(fd, offset, length, write)

    return start


_sync_file_range = _load_sync_file_range()


def _start_writeback(fd: int, offset: int, length: int) -> None:
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
