"""Blob uploads: state in Redis, bytes in storage, so any registry instance can continue any upload.

An upload is a Redis hash (`repository`, `offset`, `started`, and the running SHA-256 state
`hash` at `hash_offset`) plus `uploads/<id>/data` in storage. Each PATCH writes at the
acknowledged offset (dropping bytes a crashed writer left past it), commits, then advances the
offset and saves the hash state with it, so the next PATCH may land on any instance. An instance
that cannot use the saved state re-reads what is already stored. A blob becomes visible only
after its digest is verified: moved to its content-addressed path, then linked in SQL. Small
blobs sent whole skip the upload file (`put_small`).
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
from wharf_shared import hashing
from wharf_shared.db.engine import Database
from wharf_shared.digests import Digest
from wharf_shared.errors.domain import (
    DigestMismatch,
    InvalidUpload,
    OffsetMismatch,
    SizeMismatch,
    UploadBusy,
    UploadNotFound,
)
from wharf_shared.logging import get_logger
from wharf_shared.storage import paths
from wharf_shared.storage.base import InvalidOffsetError, PathNotFoundError, StorageDriver

log = get_logger(__name__)

CHUNK = 1024 * 1024
# Uploads move through storage in blocks this large: fewer thread hand-offs per byte.
BLOCK = 4 * 1024 * 1024
# Bodies up to this size are read whole, hashed in memory and stored with one atomic write,
# skipping the upload file: most layers and every config blob take this path.
SMALL_BODY = 8 * 1024 * 1024
_ID = re.compile(r"^[0-9a-f]{32}$")
# A killed holder's lease lapses within the TTL; a request waits longer than that, so that a
# client resuming on another instance after a crash is served, not refused.
_LOCK_TTL_MS = 15_000
_LOCK_WAIT_SECONDS = 20.0
_ORPHAN_GRACE_SECONDS = 600
# Take the upload's lock and read its state in one round trip; nil while another request holds it.
_LOCK_AND_GET = """
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return redis.call('HGETALL', KEYS[1]) end
return false
"""
# Advance an upload only while still holding its lock: a holder that stalled past its lease
# (and was overtaken by a request on another instance) must not move the offset back.
_ADVANCE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'offset', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'hash', ARGV[3], 'hash_offset', ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""
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
    # The running SHA-256 at `offset` as saved by the last writer (see wharf_shared.hashing:
    # checked before use, never trusted).
    hash_state: bytes | None = None
    lock_token: str = ""  # set while a request holds the upload's lock

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
        self._hashers: OrderedDict[str, tuple[int, hashing.Hasher]] = OrderedDict()
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
            raise UploadNotFound(upload=upload_id)
        raw = cast(dict[bytes, bytes], await self._redis.hgetall(_key(upload_id)))
        if not raw or raw.get(b"repository", b"").decode() != repository:
            raise UploadNotFound(upload=upload_id)
        return UploadState(upload_id, repository, int(raw[b"offset"]), float(raw[b"started"]))

    async def cancel(self, state: UploadState, *, stored: bool = True) -> None:
        """Forget the upload; `stored=False` when it never wrote a byte (a file left by a writer
        that crashed before committing is then the purge's to remove)."""
        await self._redis.delete(_key(state.id))
        self._hashers.pop(state.id, None)
        if not stored:
            return
        # The data file, not its directory: deleting a "directory" means listing on object stores.
        with contextlib.suppress(PathNotFoundError):
            await self._storage.delete_file(paths.upload_data_path(state.id))

    @contextlib.asynccontextmanager
    async def _locked(self, state: UploadState) -> AsyncIterator[UploadState]:
        """Hold the upload's lock and yield its state as of now (another instance may have moved it)."""
        key = _key(state.id)
        lock_key = key + ":lock"
        token = uuid.uuid4().hex
        deadline = time.monotonic() + _LOCK_WAIT_SECONDS
        while (raw := await self._redis.eval(_LOCK_AND_GET, 2, key, lock_key, token, _LOCK_TTL_MS)) is None:
            if time.monotonic() > deadline:
                raise UploadBusy(upload=state.id)
            await asyncio.sleep(0.05)
        # The lease outlives short requests; only a long one needs a task that renews it.
        extender: asyncio.Task[None] | None = None

        def renew() -> None:
            nonlocal extender
            extender = asyncio.create_task(self._keep_lock(lock_key, token))

        timer = asyncio.get_running_loop().call_later(_LOCK_TTL_MS / 3000, renew)
        try:
            fields = dict(zip(raw[::2], raw[1::2], strict=True))
            if not fields or fields.get(b"repository", b"").decode() != state.repository:
                raise UploadNotFound(upload=state.id)
            offset = int(fields[b"offset"])
            saved = fields.get(b"hash") if fields.get(b"hash_offset") == str(offset).encode() else None
            yield UploadState(state.id, state.repository, offset, float(fields[b"started"]), saved, token)
        finally:
            timer.cancel()
            if extender is not None:
                extender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await extender
            await self._redis.eval(_RELEASE, 1, lock_key, token)

    async def _keep_lock(self, lock_key: str, token: str) -> None:
        while True:
            await self._redis.eval(_EXTEND, 1, lock_key, token, _LOCK_TTL_MS)
            await asyncio.sleep(_LOCK_TTL_MS / 3000)

    # -- writing -------------------------------------------------------------------------

    async def write(
        self, state: UploadState, body: ByteSource, *, start: int | None = None, length: int | None = None
    ) -> UploadState:
        """Append a request body at the upload's offset (checked against `start` if given)."""
        async with self._locked(state) as current:
            if start is not None and start != current.offset:
                raise OffsetMismatch(offset=current.offset, start=start)
            return await self._append(current, body, length)

    async def _append(self, state: UploadState, body: ByteSource, length: int | None) -> UploadState:
        hasher = await self._hasher(state)
        try:
            writer = await self._storage.writer(paths.upload_data_path(state.id), state.offset)
        except InvalidOffsetError:
            # Storage lost acknowledged bytes (a machine crash before the disk caught up): the
            # upload cannot continue, and the client must start it again.
            await self.cancel(state)
            raise UploadNotFound(
                "the stored upload is shorter than its offset: start it again", upload=state.id
            ) from None
        self._hashers.pop(state.id, None)  # mutated below: only valid again once committed
        try:
            written = await _pump(body, writer, hasher)
            if length is not None and written != length:
                raise SizeMismatch(expected=length, received=written)
            # Visible to every instance and safe from a process crash; the disk catches up by the
            # time the upload is moved into place, which makes it durable.
            await writer.commit(durable=False)
        except BaseException:
            await asyncio.shield(writer.cancel())
            raise
        offset = state.offset + written
        saved = hasher.state()
        # The digest state travels with the upload: any instance continues without re-reading.
        key = _key(state.id)
        advanced = await self._redis.eval(
            _ADVANCE, 2, key, key + ":lock", state.lock_token, offset, saved or b"", self._expiry
        )
        if not advanced:
            raise InvalidUpload("the upload's lock lapsed while this request wrote", upload=state.id)
        self._remember(state.id, offset, hasher)
        return UploadState(state.id, state.repository, offset, state.started_at, saved, state.lock_token)

    def _remember(self, upload_id: str, offset: int, hasher: hashing.Hasher) -> None:
        self._hashers[upload_id] = (offset, hasher)
        self._hashers.move_to_end(upload_id)
        while len(self._hashers) > self._hash_cache_size:
            self._hashers.popitem(last=False)

    async def _hasher(self, state: UploadState, algorithm: str = "sha256") -> hashing.Hasher:
        if algorithm == "sha256":
            cached = self._hashers.get(state.id)
            if cached is not None and cached[0] == state.offset:
                return cached[1]
            if state.hash_state is not None:
                resumed = hashing.resume(algorithm, state.hash_state, state.offset)
                if resumed is not None:
                    return resumed
                log.warning("upload_rehashed", upload=state.id, offset=state.offset)
        return await self._rehash(state, algorithm)

    async def _rehash(self, state: UploadState, algorithm: str) -> hashing.Hasher:
        """The last resort: hash what storage holds (an instance of a Wharf without libcrypto)."""
        hasher = hashing.new(algorithm)
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
            raise InvalidUpload("the stored upload is shorter than its offset", upload=state.id)
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
            if body is not None and current.offset == 0 and length is not None and 0 < length <= SMALL_BODY:
                if start not in (None, 0):
                    raise OffsetMismatch(offset=0, start=start)
                # The whole blob in this one request: no upload file at all.
                try:
                    blob = await self.put_small(state.repository, digest, body, length)
                finally:
                    await self.cancel(current, stored=False)
                return blob
            if body is not None and (length is None or length > 0):
                if start is not None and start != current.offset:
                    raise OffsetMismatch(offset=current.offset, start=start)
                current = await self._append(current, body, length)
            hasher = await self._hasher(current, digest.algorithm)
            actual = hasher.hexdigest()
            if actual != digest.hex:
                await self.cancel(current)
                raise DigestMismatch(digest=str(digest), actual=f"{digest.algorithm}:{actual}")
            blob, moved = await self._publish(current, digest)
            # Still under the lock: a request queued behind this one must find the upload gone.
            await self.cancel(current, stored=not moved)
        return blob

    async def put_small(self, repository: str, digest: Digest, body: ByteSource, length: int) -> Blob:
        """Store a whole blob sent in one request of at most SMALL_BODY bytes (`POST ?digest=`)."""
        data = await _read_exactly(body, length)
        if length > CHUNK:
            actual = await asyncio.to_thread(lambda: hashlib.new(digest.algorithm, data).hexdigest())
        else:
            actual = hashlib.new(digest.algorithm, data).hexdigest()
        if actual != digest.hex:
            raise DigestMismatch(digest=str(digest), actual=f"{digest.algorithm}:{actual}")
        dest = paths.blob_path(digest)
        try:
            await self._storage.stat_file(dest)
        except PathNotFoundError:
            await self._storage.put_content(dest, data)
        return await self._db.run(lambda conn: metadata.link_blob(conn, repository, str(digest), length))

    async def abort(self, state: UploadState) -> None:
        """Cancel on a client's request, after any request writing to the upload finished."""
        async with self._locked(state) as current:
            await self.cancel(current)

    async def _publish(self, state: UploadState, digest: Digest) -> tuple[Blob, bool]:
        """Put the verified bytes at the blob's path and link it; True when the upload file was
        moved there (so nothing is left to delete)."""
        source = paths.upload_data_path(state.id)
        dest = paths.blob_path(digest)
        try:
            existing = await self._storage.stat_file(dest)
        except PathNotFoundError:
            existing = None
        # Content-addressed: bytes already there under this digest are these bytes.
        moved = False
        if existing is None or existing.size != state.offset:
            if state.offset == 0:
                # An empty blob: no bytes were ever written, so there is no upload file to move.
                await self._storage.put_content(dest, b"")
            else:
                await self._storage.move(source, dest)
                moved = True
        size = state.offset
        blob = await self._db.run(lambda conn: metadata.link_blob(conn, state.repository, str(digest), size))
        return blob, moved

    async def mount(self, repository: str, digest: Digest, source: str) -> Blob | None:
        """Link a blob from `source` into `repository`; None when `source` does not have it."""

        async def link(conn: Any) -> Blob | None:
            found = await metadata.find_blob(conn, source, str(digest))
            if found is None:
                return None
            return await metadata.link_blob(conn, repository, found.digest, found.size)

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


async def _read_exactly(body: ByteSource, length: int) -> bytes:
    parts: list[bytes] = []
    received = 0
    while received < length:
        data = await body.read(length - received)
        if not data:
            break
        parts.append(data)
        received += len(data)
    if received != length or await body.read(1):
        raise SizeMismatch(expected=length, received=received)
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def _pump(body: ByteSource, writer: Any, hasher: Any) -> int:
    """Copy a body to storage in 4 MiB blocks, hashing as it goes; the next block is read while
    the previous one is written and hashed (both in threads). Returns the bytes copied."""
    total = 0
    parts: list[bytes] = []
    buffered = 0
    pending: asyncio.Future[Any] | None = None

    async def flush(block: bytes) -> None:
        await asyncio.gather(writer.write(block), asyncio.to_thread(hasher.update, block))

    try:
        while True:
            data = await body.read(BLOCK)
            if data:
                parts.append(data)
                buffered += len(data)
            if buffered >= BLOCK or (not data and buffered):
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
