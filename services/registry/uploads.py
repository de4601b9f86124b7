"""Blob uploads: state in Redis, bytes in storage, so any registry instance can continue any upload.

An upload is a Redis hash (`repository`, `offset`, `started`) plus `uploads/<id>/data` in
storage. Each PATCH writes at the acknowledged offset (dropping bytes a crashed writer left
past it), commits, then advances the offset. The running SHA-256 is kept in this process when
it can be; an instance without it re-reads what is already stored. A blob becomes visible
only after its digest is verified: moved to its content-addressed path, then linked in SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol, cast

from redis.asyncio import Redis

from wharf_registry import metadata
from wharf_registry.datatypes import Blob
from wharf_shared.db.engine import Database
from wharf_shared.digests import Digest
from wharf_shared.errors.oci import (
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    SizeInvalid,
)
from wharf_shared.logging import get_logger
from wharf_shared.storage import paths
from wharf_shared.storage.base import PathNotFoundError, StorageDriver

log = get_logger(__name__)

CHUNK = 1024 * 1024
_ID = re.compile(r"^[0-9a-f]{32}$")
_LOCK_TTL_MS = 60_000
_LOCK_WAIT_SECONDS = 10.0
_ORPHAN_GRACE_SECONDS = 600
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class ByteSource(Protocol):
    """A request body: `read(n)` returns up to n bytes, b"" at the end (aiohttp's StreamReader)."""

    async def read(self, n: int = -1) -> bytes: ...


@dataclass(frozen=True, slots=True)
class UploadState:
    id: str
    repository: str
    offset: int
    started_at: float

    def range_header(self) -> str:
        # The spec's inclusive range of bytes received; "0-0" before the first byte.
        return f"0-{max(self.offset - 1, 0)}"


def _key(upload_id: str) -> str:
    return f"wharf:upload:{upload_id}"


class Uploads:
    def __init__(
        self,
        redis: Redis,
        storage: StorageDriver,
        db: Database,
        *,
        expiry_seconds: int,
        hash_cache_size: int = 256,
    ) -> None:
        self._redis = redis
        self._storage = storage
        self._db = db
        self._expiry = expiry_seconds
        self._hashers: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._hash_cache_size = hash_cache_size

    # -- session state -------------------------------------------------------------------

    async def start(self, repository: str) -> UploadState:
        upload_id = uuid.uuid4().hex
        now = time.time()
        key = _key(upload_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"repository": repository, "offset": 0, "started": repr(now)})
            pipe.expire(key, self._expiry)
            await pipe.execute()
        return UploadState(upload_id, repository, 0, now)

    async def get(self, repository: str, upload_id: str) -> UploadState:
        if not _ID.match(upload_id):
            raise BlobUploadUnknown(detail={"upload": upload_id})
        raw = cast(dict[bytes, bytes], await self._redis.hgetall(_key(upload_id)))
        if not raw or raw.get(b"repository", b"").decode() != repository:
            raise BlobUploadUnknown(detail={"upload": upload_id})
        return UploadState(upload_id, repository, int(raw[b"offset"]), float(raw[b"started"]))

    async def cancel(self, state: UploadState) -> None:
        await self._redis.delete(_key(state.id))
        self._hashers.pop(state.id, None)
        # The data file, not its directory: deleting a "directory" means listing on object stores.
        with contextlib.suppress(PathNotFoundError):
            await self._storage.delete(paths.upload_data_path(state.id))

    @contextlib.asynccontextmanager
    async def _locked(self, state: UploadState) -> AsyncIterator[UploadState]:
        """Hold the upload's lock and yield its state as of now (another instance may have moved it)."""
        lock_key = _key(state.id) + ":lock"
        token = uuid.uuid4().hex
        deadline = time.monotonic() + _LOCK_WAIT_SECONDS
        while not await self._redis.set(lock_key, token, nx=True, px=_LOCK_TTL_MS):
            if time.monotonic() > deadline:
                raise BlobUploadInvalid(
                    detail={"upload": state.id, "reason": "another request is writing this upload"}
                )
            await asyncio.sleep(0.05)
        extender = asyncio.create_task(self._keep_lock(lock_key, token))
        try:
            yield await self.get(state.repository, state.id)
        finally:
            extender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await extender
            await self._redis.eval(_RELEASE, 1, lock_key, token)

    async def _keep_lock(self, lock_key: str, token: str) -> None:
        while True:
            await asyncio.sleep(_LOCK_TTL_MS / 3000)
            await self._redis.eval(_EXTEND, 1, lock_key, token, _LOCK_TTL_MS)

    # -- writing -------------------------------------------------------------------------

    async def write(
        self, state: UploadState, body: ByteSource, *, start: int | None = None, length: int | None = None
    ) -> UploadState:
        """Append a request body at the upload's offset (checked against `start` if given)."""
        async with self._locked(state) as current:
            if start is not None and start != current.offset:
                raise RangeInvalid(
                    detail={"offset": current.offset, "start": start},
                    headers={"Range": current.range_header()},
                )
            return await self._append(current, body, length)

    async def _append(self, state: UploadState, body: ByteSource, length: int | None) -> UploadState:
        hasher = await self._hasher(state)
        writer = await self._storage.writer(paths.upload_data_path(state.id), state.offset)
        self._hashers.pop(state.id, None)  # mutated below: only valid again once committed
        try:
            written = await _pump(body, writer, hasher)
            if length is not None and written != length:
                raise SizeInvalid(detail={"expected": length, "received": written})
            await writer.commit()
        except BaseException:
            await asyncio.shield(writer.cancel())
            raise
        offset = state.offset + written
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(_key(state.id), "offset", offset)
            pipe.expire(_key(state.id), self._expiry)
            await pipe.execute()
        self._remember(state.id, offset, hasher)
        return UploadState(state.id, state.repository, offset, state.started_at)

    def _remember(self, upload_id: str, offset: int, hasher: Any) -> None:
        self._hashers[upload_id] = (offset, hasher)
        self._hashers.move_to_end(upload_id)
        while len(self._hashers) > self._hash_cache_size:
            self._hashers.popitem(last=False)

    async def _hasher(self, state: UploadState, algorithm: str = "sha256") -> Any:
        cached = self._hashers.get(state.id)
        if algorithm == "sha256" and cached is not None and cached[0] == state.offset:
            return cached[1]
        return await self._rehash(state, algorithm)

    async def _rehash(self, state: UploadState, algorithm: str) -> Any:
        hasher = hashlib.new(algorithm)
        if state.offset == 0:
            return hasher
        remaining = state.offset
        async for chunk in self._storage.reader(paths.upload_data_path(state.id), 0, CHUNK):
            piece = chunk[:remaining]
            await asyncio.to_thread(hasher.update, piece)
            remaining -= len(piece)
            if remaining <= 0:
                break
        if remaining:
            raise BlobUploadInvalid(
                detail={"upload": state.id, "reason": "stored upload is shorter than its offset"}
            )
        return hasher

    # -- completing ----------------------------------------------------------------------

    async def complete(
        self,
        state: UploadState,
        digest: Digest,
        body: ByteSource | None = None,
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> Blob:
        """Append the final body (if any), verify the digest, and make the blob visible."""
        async with self._locked(state) as current:
            if body is not None and (length is None or length > 0):
                if start is not None and start != current.offset:
                    raise RangeInvalid(
                        detail={"offset": current.offset, "start": start},
                        headers={"Range": current.range_header()},
                    )
                current = await self._append(current, body, length)
            hasher = await self._hasher(current, digest.algorithm)
            actual = hasher.hexdigest()
            if actual != digest.hex:
                await self.cancel(current)
                raise DigestInvalid(detail={"digest": str(digest), "actual": f"{digest.algorithm}:{actual}"})
            blob = await self._publish(current, digest)
            # Still under the lock: a request queued behind this one must find the upload gone.
            await self.cancel(current)
        return blob

    async def abort(self, state: UploadState) -> None:
        """Cancel on a client's request, after any request writing to the upload finished."""
        async with self._locked(state) as current:
            await self.cancel(current)

    async def _publish(self, state: UploadState, digest: Digest) -> Blob:
        source = paths.upload_data_path(state.id)
        dest = paths.blob_path(digest)
        try:
            existing = await self._storage.stat(dest)
        except PathNotFoundError:
            existing = None
        # Content-addressed: bytes already there under this digest are these bytes.
        if existing is None or existing.size != state.offset:
            if state.offset == 0:
                # An empty blob: no bytes were ever written, so there is no upload file to move.
                await self._storage.put_content(dest, b"")
            else:
                await self._storage.move(source, dest)
        size = state.offset
        return await self._db.run(
            lambda conn: metadata.link_blob(self._db, conn, state.repository, str(digest), size)
        )

    async def mount(self, repository: str, digest: Digest, source: str) -> Blob | None:
        """Link a blob from `source` into `repository`; None when `source` does not have it."""

        async def link(conn: Any) -> Blob | None:
            found = await metadata.find_blob(conn, source, str(digest))
            if found is None:
                return None
            return await metadata.link_blob(self._db, conn, repository, found.digest, found.size)

        return await self._db.run(link)

    # -- housekeeping --------------------------------------------------------------------

    async def purge(self, interval_seconds: int) -> int:
        """Delete stored uploads whose Redis state expired; one instance at a time does it."""
        if not await self._redis.set(
            "wharf:uploads:purge", str(time.time()), nx=True, ex=max(1, interval_seconds)
        ):
            return 0
        try:
            entries = await self._storage.list(paths.UPLOADS)
        except PathNotFoundError:
            return 0
        purged = 0
        now = time.time()
        for entry in entries:
            upload_id = entry.rsplit("/", 1)[-1]
            if not _ID.match(upload_id) or await self._redis.exists(_key(upload_id)):
                continue
            try:
                info = await self._storage.stat(entry)
            except PathNotFoundError:
                continue
            if now - info.modified.timestamp() < _ORPHAN_GRACE_SECONDS:
                continue  # just created; its Redis state may be a moment behind
            with contextlib.suppress(PathNotFoundError):
                await self._storage.delete(entry)
            self._hashers.pop(upload_id, None)
            purged += 1
        if purged:
            log.info("uploads_purged", count=purged)
        return purged


async def _pump(body: ByteSource, writer: Any, hasher: Any) -> int:
    """Copy a body to storage in ≥1 MiB blocks, hashing as it goes; the next block is read while
    the previous one is written and hashed (both in threads). Returns the bytes copied."""
    total = 0
    parts: list[bytes] = []
    buffered = 0
    pending: asyncio.Future[Any] | None = None

    async def flush(block: bytes) -> None:
        await asyncio.gather(writer.write(block), asyncio.to_thread(hasher.update, block))

    try:
        while True:
            data = await body.read(CHUNK)
            if data:
                parts.append(data)
                buffered += len(data)
            if buffered >= CHUNK or (not data and buffered):
                block = parts[0] if len(parts) == 1 else b"".join(parts)
                parts, buffered = [], 0
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(flush(block))
                total += len(block)
            if not data:
                break
        if pending is not None:
            await pending
            pending = None
    except BaseException:
        if pending is not None:
            # A thread may still be writing: let it finish before the caller truncates.
            await asyncio.wait({pending})
            if not pending.cancelled():
                pending.exception()
        raise
    return total
