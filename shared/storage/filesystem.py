"""The filesystem driver: a directory tree; atomic renames; blocking calls off the event loop.

What `put_content`, `move` and `join` write is durable when they return: the file's bytes, its
directory entry, and the entry of every directory created on the way to it (a power loss must
not leave an SQL row pointing at a name the disk never recorded).
"""

from __future__ import annotations

import asyncio
import ctypes
import datetime as dt
import errno
import os
import shutil
import sys
import uuid
from collections.abc import AsyncGenerator, Callable, Sequence
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

_IOV_MAX = 1024  # pieces per pwritev call (Linux's UIO_MAXIOV)
_MKDIR_ATTEMPTS = 100


class FilesystemDriver:
    name = "filesystem"
    atomic_rename = True

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
        _make_dirs(full.parent)
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
        return await asyncio.to_thread(FilesystemWriter.open, self._full(path), path, offset, self._prune)

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

    async def move(self, source: str, dest: str, *, size: int | None = None) -> None:
        await asyncio.to_thread(self._move_sync, self._full(source), self._full(dest), source, size)

    def _move_sync(self, source: Path, dest: Path, label: str, size: int | None) -> None:
        try:
            fd = os.open(source, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise PathNotFoundError(label, driver=self.name) from exc
        try:
            if size is not None and (found := os.fstat(fd).st_size) != size:
                raise InvalidOffsetError(label, f"{found} bytes, not {size}", driver=self.name)
            _make_dirs(dest.parent)
            # The bytes first (an upload's last chunks may not have been flushed), then the rename.
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(source, dest)
        except FileNotFoundError as exc:  # taken by a racing rename
            raise PathNotFoundError(label, driver=self.name) from exc
        _fsync_dir(dest.parent)
        self._prune(source.parent)

    async def rename(self, source: str, dest: str) -> None:
        await asyncio.to_thread(self._rename_sync, self._full(source), self._full(dest), source)

    def _rename_sync(self, source: Path, dest: Path, label: str) -> None:
        try:
            os.rename(source, dest)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise PathNotFoundError(label, driver=self.name) from exc

    async def join(self, sources: Sequence[tuple[str, int]], dest: str) -> None:
        fulls = [(self._full(source), source, length) for source, length in sources]
        await asyncio.to_thread(self._join_sync, fulls, self._full(dest))

    def _join_sync(self, sources: Sequence[tuple[Path, str, int]], dest: Path) -> None:
        _make_dirs(dest.parent)
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.tmp"
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            position = 0
            # One source open at a time: an upload may have more parts than a process has files.
            for source, label, length in sources:
                try:
                    fd = os.open(source, os.O_RDONLY)
                except (FileNotFoundError, NotADirectoryError) as exc:
                    raise PathNotFoundError(label, driver=self.name) from exc
                try:
                    if (found := os.fstat(fd).st_size) < length:
                        raise InvalidOffsetError(label, f"{found} bytes, not {length}", driver=self.name)
                    _copy_range(fd, out, length, position)
                finally:
                    os.close(fd)
                _start_writeback(out, position, length)  # the disk works while the next part copies
                position += length
            os.fsync(out)
        except BaseException:
            os.close(out)
            tmp.unlink(missing_ok=True)
            raise
        os.close(out)
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)

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
        prune: Callable[[Path], None] | None = None,
    ) -> None:
        self._handle = handle
        self._path = path
        self._start = start
        self._created = created  # removed by cancel: the file did not exist before
        self._prune = prune  # and with it the directories it leaves empty
        self._tail = tail  # the bytes past `start` this writer dropped, put back by cancel
        self._size = start
        self._closed = False

    @classmethod
    def open(
        cls, full: Path, path: str, offset: int, prune: Callable[[Path], None] | None = None
    ) -> FilesystemWriter:
        created = None
        try:
            handle: BinaryIO = full.open("r+b")
        except (FileNotFoundError, NotADirectoryError):
            if offset != 0:
                raise InvalidOffsetError(
                    path, f"offset {offset} on a missing file", driver="filesystem"
                ) from None
            _make_dirs(full.parent)
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
        return cls(handle, path, offset, created=created, tail=tail, prune=prune)

    @property
    def size(self) -> int:
        return self._size

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(self._path, "writer is closed", driver="filesystem")

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        self._check_open()
        await asyncio.to_thread(self._write_sync, (data,), self._size)
        self._size += len(data)

    def write_blocking(self, pieces: Sequence[bytes | bytearray | memoryview]) -> None:
        self._check_open()
        self._size += self._write_sync(pieces, self._size)

    def _write_sync(self, pieces: Sequence[bytes | bytearray | memoryview], offset: int) -> int:
        # One gathering write at an explicit offset: the pieces are never joined into a copy.
        fd = self._handle.fileno()
        views = [memoryview(piece).cast("B") for piece in pieces]
        length = sum(len(view) for view in views)
        done = 0
        while views:
            written = os.pwritev(fd, views[:_IOV_MAX], offset + done)
            done += written
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]
        # Start writeback now, so that commit's fsync finds little left to flush.
        _start_writeback(fd, offset, length)
        return length

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
                if self._prune is not None:
                    self._prune(self._created.parent)
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


def _copy_range(source: int, dest: int, length: int, position: int) -> None:
    """Copy `length` bytes of `source` (from its start) to `dest` at `position`, in the kernel."""
    done = 0
    while done < length:
        try:
            copied = os.copy_file_range(source, dest, length - done, done, position + done)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            break  # a file system that cannot: copy through user space
        if copied == 0:
            raise OSError(errno.EIO, "source ended early")
        done += copied
    while done < length:
        data = os.pread(source, min(DEFAULT_CHUNK * 4, length - done), done)
        if not data:
            raise OSError(errno.EIO, "source ended early")
        os.pwrite(dest, data, position + done)
        done += len(data)


def _make_dirs(directory: Path) -> None:
    """`mkdir -p`, durably: a new directory's name lives in its parent, so each parent of one
    created here is synced, from the first directory that existed down. A parent that another
    request left empty may be pruned (`_prune`) between the look and the mkdir: then again."""
    made: list[Path] = []
    for _ in range(_MKDIR_ATTEMPTS):
        missing: list[Path] = []
        existing = directory
        while not existing.is_dir():
            missing.append(existing)
            existing = existing.parent
        try:
            for new in reversed(missing):
                try:
                    new.mkdir()
                except FileExistsError:
                    # Made by a racing request, which may not have synced it yet: sync it here too.
                    if not new.is_dir():
                        if new.exists():
                            raise
                        raise FileNotFoundError(errno.ENOENT, "pruned", str(new)) from None
                made.append(new)
        except FileNotFoundError:
            continue  # pruned as it was looked at
        break
    else:
        raise OSError(errno.ENOENT, "directories kept vanishing while being made", str(directory))
    for new in dict.fromkeys(made):
        _fsync_dir(new.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
