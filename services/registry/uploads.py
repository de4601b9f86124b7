"""Blob uploads: state in Redis, bytes in storage, so any registry instance can continue any upload.

An upload is a Redis hash (`repository`, `offset`, `started`, the recorded `parts`, and the
running SHA-256 state `hash` of exactly those parts) plus its parts' files in storage,
`uploads/<id>/<part>`. A request that writes (PATCH, or PUT with a body) holds the upload's lock
(a lease, renewed while the request runs) and writes to a file no other request writes: a part
of its own, or, where storage renames atomically (the filesystem), the upload's accumulated
file after renaming it to a name of its own (of two requests renaming it, one succeeds; the
other writes a part of its own). It commits, then records what it wrote: one Lua call that
checks the lock is still its own and the offset and parts are as it found them, and only then
advances the offset, records the parts and saves the hash state. A request that took the
accumulated file and cannot record gives it back as it found it.

So a request that lost its lease (a stalled event loop, a Redis failover) cannot change what
another wrote: what it wrote is in its own file, left out of the record and deleted. Recorded
bytes are never written again (files are only appended to past them), the hash that is
verified covers exactly them, and the final PUT marks the upload as being published (the same
check; nothing is recorded after it) before it puts exactly those bytes at the blob's
content-addressed path (a rename
for one part, on the common path; a copy of each part's recorded bytes otherwise) and links the
blob in SQL: what is published hashes to its digest. Small blobs sent whole skip all of this
(`_store_whole`).

Publishing survives its instance: the final PUT marks the verified upload as being published
(`publishing`: the digest; the recorded state stays, and no request can record anything more),
and a PUT naming the same digest that takes the lock over from a dead publisher (a proxy's retry,
a client's) publishes the same recorded bytes again; every step is idempotent. A published
upload's state goes, leaving a tombstone (`wharf:uploaded:<id>`: the digest) for an hour, so
that a PUT repeated after its answer was lost is answered 201 again. Every other request finds
such an upload unknown, as before.

A write the front door may send again (a body it held, after the instance it went to died: it
cannot know whether that one recorded it) carries the front door's id for it
(`X-Wharf-Upload-Write`, wharf_shared.accel); the record keeps the id of the last write, and a
repeat that finds its own id there answers as the first would have, without writing it again.

A lock's token names the instance holding it (`liveness.py`). A request that finds the lock held
by an instance whose liveness key is gone (a killed process) takes it over at once, in one Lua
call that checks the lock still holds the same token and its holder is still not alive, rather
than waiting out the lease: the fencing above keeps what a holder wrongly believed dead (a
stalled process) does afterwards out of the upload. A request releases its lock however it
ends (its client gone, its handler cancelled), so a broken connection blocks no one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from redis.asyncio import Redis

from wharf_registry import metadata
from wharf_registry.datatypes import Blob
from wharf_registry.liveness import alive_key
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
from wharf_shared.redis import Script
from wharf_shared.storage import paths
from wharf_shared.storage.base import (
    BlockingWriter,
    FileWriter,
    InvalidOffsetError,
    PathNotFoundError,
    StorageDriver,
    StorageError,
)

log = get_logger(__name__)

CHUNK = 1024 * 1024
# Uploads are hashed and written in batches this large: one thread hand-off per batch.
BLOCK = 4 * 1024 * 1024
# Bodies up to this size are read whole, hashed in memory and stored with one atomic write,
# skipping the part files: most layers and every config blob take this path.
SMALL_BODY = 8 * 1024 * 1024
_ID = re.compile(r"^[0-9a-f]{32}$")
# The accumulated file is `acc-<t>`, t naming the request that recorded it last; a request
# writing it renames it to `acc-<t>-<its own>` (`acc--<its own>` when it creates it) first.
ACC = "acc-"
# A holder that cannot be known dead (one whose instance still beats: a stalled process) keeps
# the lock until its lease lapses; a request waits a little longer than that, so that a client
# resuming on another instance is served, not refused.
LOCK_LEASE_MS = 15_000
_LOCK_WAIT_MARGIN_SECONDS = 5.0
_ORPHAN_GRACE_SECONDS = 600
# How long a published upload answers a repeated PUT: any retry comes well within it.
_TOMBSTONE_SECONDS = 3600
# Take the upload's lock and read its state in one round trip: {'new', HGETALL...}; or take it
# over from the holder seen last time (ARGV[3]) if the lock still holds that token and the
# holder's liveness key (KEYS[3]) is gone: {'taken', HGETALL...}; else the holder's token.
_ACQUIRE = """
local how = 'new'
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local holder = redis.call('GET', KEYS[2])
  if holder ~= ARGV[3] or redis.call('EXISTS', KEYS[3]) == 1 then return holder end
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  how = 'taken'
end
local state = redis.call('HGETALL', KEYS[1])
table.insert(state, 1, how)
return state
"""
# Record what a writer committed, only while it still holds the lock and the upload is as it
# found it: 1, or 0 when the lock is no longer its own, -1 when the upload moved on or is gone.
_RECORD = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local state = redis.call('HMGET', KEYS[1], 'offset', 'parts', 'publishing')
if state[1] ~= ARGV[2] or (state[2] or '') ~= ARGV[3] or state[3] then return -1 end
redis.call('HSET', KEYS[1], 'offset', ARGV[4], 'parts', ARGV[5], 'write', ARGV[8])
if ARGV[6] == '' then redis.call('HDEL', KEYS[1], 'hash')
else redis.call('HSET', KEYS[1], 'hash', ARGV[6]) end
redis.call('EXPIRE', KEYS[1], ARGV[7])
return 1
"""
# Take the upload for discarding (its state goes): the same fence as _RECORD.
# ARGV[4] '1': the lock goes with it (the request has nothing left to do under it).
_CLAIM = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local state = redis.call('HMGET', KEYS[1], 'offset', 'parts')
if state[1] ~= ARGV[2] or (state[2] or '') ~= ARGV[3] then return 0 end
if ARGV[4] == '1' then redis.call('DEL', KEYS[1], KEYS[2]) else redis.call('DEL', KEYS[1]) end
return 1
"""
# Mark the verified upload as being published as digest ARGV[4] (the same fence): from now on
# nothing is recorded, and only a PUT of that digest continues it.
_MARK = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local state = redis.call('HMGET', KEYS[1], 'offset', 'parts', 'publishing')
if state[1] ~= ARGV[2] or (state[2] or '') ~= ARGV[3] or state[3] then return 0 end
redis.call('HSET', KEYS[1], 'publishing', ARGV[4])
return 1
"""
# Publishing failed: the upload is as it was (the client may retry the PUT), if still ours.
_UNMARK = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
return redis.call('HDEL', KEYS[1], 'publishing')
"""
# Published: the state goes, a tombstone (KEYS[3]) names the digest for ARGV[3] seconds, and the
# lock goes if it is still this request's: 1, else 0.
_FINISH = """
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) return 1 end
return 0
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

    async def readany(self) -> bytes:
        """Whatever arrived (at least a byte, unless at the end), without joining pieces."""


@dataclass(frozen=True, slots=True)
class Part:
    """A recorded piece of an upload: the first `size` bytes of `uploads/<id>/<name>`."""

    name: str
    size: int

    @property
    def accumulated(self) -> bool:
        return self.name.startswith(ACC)


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a request writes: `path` from `start`; `taken_from`, the accumulated file's name
    before this request renamed it (to give it back if it cannot record what it wrote)."""

    path: str
    start: int
    accumulates: bool
    taken_from: str | None = None


@dataclass(frozen=True, slots=True)
class UploadState:
    id: str
    repository: str
    offset: int
    started_at: float
    parts: tuple[Part, ...] = ()
    # The running SHA-256 of the parts as saved by the last writer (see wharf_shared.hashing).
    hash_state: bytes | None = None
    lock_token: str = ""  # set while a request holds the upload's lock
    publishing: str | None = None  # the digest a PUT verified and is publishing it as
    last_write: str = ""  # the front door's id of the write recorded last ("" for none)
    write_id: str = ""  # the front door's id of this request's write (a repeat carries the same)
    published: str | None = None  # the digest it was published as (a tombstone: nothing else left)

    def range_header(self) -> str:
        # The spec's inclusive range of bytes received; "0-0" before the first byte.
        return f"0-{max(self.offset - 1, 0)}"

    @property
    def encoded_parts(self) -> str:
        return _encode(self.parts)

    @property
    def history(self) -> str:
        """Names the bytes recorded so far: part names are never reused, so the last one does."""
        return f"{self.offset}:{self.parts[-1].name if self.parts else ''}"


def _key(upload_id: str) -> str:
    return f"wharf:upload:{upload_id}"


def _tombstone_key(upload_id: str) -> str:
    return f"wharf:uploaded:{upload_id}"


def _encode(parts: Sequence[Part]) -> str:
    return " ".join(f"{part.name}:{part.size}" for part in parts)


def _decode(encoded: bytes | None) -> tuple[Part, ...]:
    parts: list[Part] = []
    for entry in (encoded or b"").decode().split():
        name, _, size = entry.partition(":")
        parts.append(Part(name, int(size)))
    return tuple(parts)


def _state(
    upload_id: str,
    repository: str,
    fields: dict[bytes, bytes],
    token: str = "",
    finishing: str | None = None,
    write_id: str = "",
) -> UploadState:
    """The upload as Redis has it; one being published exists only for a PUT `finishing` it as
    the same digest."""
    if not fields or fields.get(b"repository", b"").decode() != repository:
        raise UploadNotFound(upload=upload_id)
    publishing = fields.get(b"publishing")
    if publishing is not None and publishing.decode() != finishing:
        raise UploadNotFound(upload=upload_id)
    return UploadState(
        upload_id,
        repository,
        int(fields[b"offset"]),
        float(fields[b"started"]),
        _decode(fields.get(b"parts")),
        fields.get(b"hash"),
        token,
        publishing.decode() if publishing is not None else None,
        fields.get(b"write", b"").decode(),
        write_id,
    )


def _holder(token: str) -> str:
    """The instance a lock token names ("" for a token that names none: it cannot be known dead)."""
    instance, separator, _ = token.partition(":")
    return instance if separator else ""


def _whole_and_small(offset: int, length: int | None) -> bool:
    """Whether a body is a whole blob small enough to read into memory: the one place this is decided."""
    return offset == 0 and length is not None and 0 < length <= SMALL_BODY


class Uploads:
    def __init__(
        self,
        redis: Redis,
        storage: StorageDriver,
        db: Database,
        *,
        expiry_seconds: int,
        lock_lease_ms: int = LOCK_LEASE_MS,
        hash_cache_size: int = 256,
        instance: str = "",
    ) -> None:
        """`instance`: this process's identity, kept alive by a `liveness.Heartbeat`; its locks name
        it, so others take them over once it is dead. Without one, locks are only ever given up by
        their holder or their lease."""
        self._redis = redis
        self._instance = instance
        self._storage = storage
        self._db = db
        self._expiry = expiry_seconds
        self._lease_ms = lock_lease_ms
        self._hashers: OrderedDict[str, tuple[str, hashing.Hasher]] = OrderedDict()
        self._released: set[str] = set()  # lock tokens released with a claim or a finish
        self._hash_cache_size = hash_cache_size
        self._acquire = Script(redis, _ACQUIRE)
        self._record = Script(redis, _RECORD)
        self._claim_script = Script(redis, _CLAIM)
        self._mark = Script(redis, _MARK)
        self._unmark = Script(redis, _UNMARK)
        self._finish_script = Script(redis, _FINISH)
        self._release = Script(redis, _RELEASE)
        self._extend = Script(redis, _EXTEND)

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

    async def get(self, repository: str, upload_id: str, *, finishing: str | None = None) -> UploadState:
        """The upload; `finishing`: the digest a PUT names (it may repeat one that published it)."""
        if not _ID.match(upload_id):
            raise UploadNotFound(upload=upload_id)
        raw = cast(dict[bytes, bytes], await self._redis.hgetall(_key(upload_id)))
        if not raw and finishing is not None:
            tombstone = cast(bytes | None, await self._redis.get(_tombstone_key(upload_id)))
            if tombstone is not None:
                digest, started, name = tombstone.decode().split(" ", 2)
                if (digest, name) == (finishing, repository):
                    return UploadState(upload_id, repository, 0, float(started), published=digest)
        return _state(upload_id, repository, raw, finishing=finishing)

    async def cancel(self, state: UploadState) -> None:
        """Forget an upload no other request knows of (`push`'s own) and delete its parts."""
        key = _key(state.id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(key, "parts")
            pipe.delete(key)
            encoded, _ = await pipe.execute()
        self._hashers.pop(state.id, None)
        await self._delete_parts(state.id, _decode(encoded))

    def _path(self, upload_id: str, name: str) -> str:
        return paths.upload_part_path(upload_id, name)

    async def _locate(self, upload_id: str, part: Part) -> str:
        """Where a recorded part's bytes are: its own name, or for the accumulated file, the name
        a request that took it (and may still be appending past the recorded bytes) gave it."""
        path = self._path(upload_id, part.name)
        if not part.accumulated:
            return path
        try:
            await self._storage.stat_file(path)
            return path
        except PathNotFoundError:
            pass
        recorder = part.name.removeprefix(ACC)
        try:
            entries = await self._storage.list(paths.upload_dir(upload_id))
        except PathNotFoundError:
            entries = []
        for entry in entries:
            name = entry.rsplit("/", 1)[-1]
            # Taken by a request (`acc-<t>-<other>`), or recorded and not yet renamed (`acc-<x>-<t>`).
            if name.startswith(part.name + "-") or (name.startswith(ACC) and name.endswith("-" + recorder)):
                return entry
        raise PathNotFoundError(path)

    async def _delete_parts(self, upload_id: str, parts: Sequence[Part]) -> None:
        """Delete parts' files (listing only for an accumulated file another request renamed)."""

        async def delete(part: Part) -> None:
            with contextlib.suppress(PathNotFoundError):
                try:
                    await self._storage.delete_file(self._path(upload_id, part.name))
                except PathNotFoundError:
                    if not part.accumulated:
                        raise
                    await self._storage.delete_file(await self._locate(upload_id, part))

        await asyncio.gather(*(delete(part) for part in parts))

    @contextlib.asynccontextmanager
    async def _locked(self, state: UploadState, finishing: str | None = None) -> AsyncIterator[UploadState]:
        """Hold the upload's lock and yield its state as of now (another instance may have moved it)."""
        key = _key(state.id)
        lock_key = key + ":lock"
        token = f"{self._instance}:{uuid.uuid4().hex}" if self._instance else uuid.uuid4().hex
        try:
            raw = await self._take_lock(state.id, key, lock_key, token)
        except BaseException:
            # Cancelled (or cut off) after Redis may have given it the lock: give it back now.
            await asyncio.shield(self._release([lock_key], [token]))
            raise
        # The lease outlives short requests; only a long one needs a task that renews it.
        extender: asyncio.Task[None] | None = None

        def renew() -> None:
            nonlocal extender
            extender = asyncio.create_task(self._keep_lock(state.id, lock_key, token))

        timer = asyncio.get_running_loop().call_later(self._lease_ms / 3000, renew)
        try:
            fields = dict(zip(raw[::2], raw[1::2], strict=True))
            yield _state(state.id, state.repository, fields, token, finishing, state.write_id)
        finally:
            timer.cancel()
            if extender is not None:
                extender.cancel()  # an extension still in flight finds the token gone: a no-op
            if token in self._released:
                self._released.discard(token)  # released with a claim or a finish
            else:
                # Shielded: a request whose handler is cancelled again must not leave it to lapse.
                await asyncio.shield(self._release([lock_key], [token]))

    async def _take_lock(self, upload_id: str, key: str, lock_key: str, token: str) -> list[bytes]:
        """Wait for the lock (taking it over from a dead holder at once); the upload's fields."""
        deadline = time.monotonic() + self._lease_ms / 1000 + _LOCK_WAIT_MARGIN_SECONDS
        seen = ""  # the holder whose liveness the next attempt checks
        while True:
            keys = [key, lock_key, alive_key(_holder(seen))]
            reply = await self._acquire(keys, [token, self._lease_ms, seen])
            if isinstance(reply, list):
                how, *fields = reply
                if how == b"taken":
                    log.info("upload_lock_taken_over", upload=upload_id, holder=_holder(seen))
                return cast(list[bytes], fields)
            holder = reply.decode()
            instance = _holder(holder)
            if holder != seen and instance not in ("", self._instance):
                seen = holder
                continue  # a holder not seen before: whether it is alive is checked at once
            if time.monotonic() > deadline:
                raise UploadBusy(upload=upload_id)
            await asyncio.sleep(0.05)

    async def _keep_lock(self, upload_id: str, lock_key: str, token: str) -> None:
        while True:
            if not await self._extend([lock_key], [token, self._lease_ms]):
                break
            await asyncio.sleep(self._lease_ms / 3000)
        # Lapsed: whatever this request still writes will be refused when it records it.
        log.warning("upload_lease_lost", upload=upload_id)

    # -- writing -------------------------------------------------------------------------

    async def write(
        self, state: UploadState, body: ByteSource, *, start: int | None = None, length: int | None = None
    ) -> UploadState:
        """Append a request body at the upload's offset (checked against `start` if given)."""
        async with self._locked(state) as current:
            if _repeats(current):
                await _skip(body)
                return current
            if start is not None and start != current.offset:
                raise OffsetMismatch(offset=current.offset, start=start)
            return await self._append(current, body, length)

    async def _append(self, state: UploadState, body: ByteSource, length: int | None) -> UploadState:
        """Write the body to a file no other request writes, then record it (fenced)."""
        hasher = await self._hasher(state)
        self._hashers.pop(state.id, None)  # mutated below: only valid again once recorded
        token = uuid.uuid4().hex
        target = await self._target(state, token)
        sink = _LazyWriter(self._storage, target.path, target.start)
        try:
            written = await _pump(body, sink, hasher)
            if length is not None and written != length:
                raise SizeMismatch(expected=length, received=written)
            # Visible to every instance and safe from a process crash; the disk catches up by the
            # time the blob is moved into place, which makes it durable.
            await sink.commit()
        except InvalidOffsetError:
            # Storage lost acknowledged bytes (a machine crash before the disk caught up): the
            # upload cannot continue, and the client must start it again.
            await asyncio.shield(self._undo(target, sink))
            await self._discard(state)
            raise UploadNotFound("the stored upload lost bytes: start it again", upload=state.id) from None
        except BaseException:
            await asyncio.shield(self._undo(target, sink))
            raise
        if not written:
            await self._undo(target, sink)
            self._remember(state, hasher)
            return state
        offset = state.offset + written
        saved = hasher.state()
        if target.accumulates:
            parts: tuple[Part, ...] = (Part(ACC + token, offset),)
        else:
            parts = (*state.parts, Part(token, written))
        key = _key(state.id)
        outcome = await self._record(
            [key, key + ":lock"],
            [
                state.lock_token,
                state.offset,
                state.encoded_parts,
                offset,
                _encode(parts),
                saved or b"",
                self._expiry,
                state.write_id,
            ],
        )
        if outcome != 1:
            # Another request took the upload over: what this one wrote never becomes part of it.
            log.warning("upload_fenced", upload=state.id, offset=state.offset, written=written)
            await asyncio.shield(self._give_back(target))
            if outcome == 0:
                raise InvalidUpload("the upload's lock lapsed while this request wrote", upload=state.id)
            raise UploadNotFound(upload=state.id)
        if target.accumulates:
            try:
                await self._storage.rename(target.path, self._path(state.id, ACC + token))
            except StorageError as exc:  # `_locate` finds it under the name it has
                log.warning("upload_rename_failed", upload=state.id, error=str(exc))
        recorded = UploadState(
            state.id,
            state.repository,
            offset,
            state.started_at,
            parts,
            saved,
            state.lock_token,
            last_write=state.write_id,
            write_id=state.write_id,
        )
        self._remember(recorded, hasher)
        return recorded

    async def _target(self, state: UploadState, token: str) -> _Target:
        """Append to the accumulated file where storage renames atomically and nothing else was
        recorded; a part of this request's own otherwise."""
        if self._storage.atomic_rename and not state.parts:
            return _Target(self._path(state.id, f"{ACC}-{token}"), 0, True)
        if self._storage.atomic_rename and len(state.parts) == 1 and state.parts[0].accumulated:
            taken = state.parts[0]
            path = self._path(state.id, f"{taken.name}-{token}")
            try:
                await self._storage.rename(self._path(state.id, taken.name), path)
                return _Target(path, taken.size, True, self._path(state.id, taken.name))
            except PathNotFoundError:
                # A request that lost its lease has it: this one must not wait for it.
                log.info("upload_accumulated_file_taken", upload=state.id)
        return _Target(self._path(state.id, token), 0, False)

    async def _undo(self, target: _Target, sink: _LazyWriter) -> None:
        """Drop what this request wrote; give the accumulated file back if it took it."""
        await sink.cancel()
        if target.taken_from is not None:
            with contextlib.suppress(StorageError):
                await self._storage.rename(target.path, target.taken_from)

    async def _give_back(self, target: _Target) -> None:
        """After a failed record: the accumulated file back as it was taken, or the part deleted."""
        try:
            if target.taken_from is None:
                await self._storage.delete_file(target.path)
                return
            writer = await self._storage.writer(target.path, target.start)  # cut what this request wrote
            await writer.commit(durable=False)
            await self._storage.rename(target.path, target.taken_from)
        except StorageError as exc:  # `_locate` still finds it, and reads only its recorded bytes
            log.warning("upload_give_back_failed", path=target.path, error=str(exc))

    def _remember(self, state: UploadState, hasher: hashing.Hasher) -> None:
        self._hashers[state.id] = (state.history, hasher)
        self._hashers.move_to_end(state.id)
        while len(self._hashers) > self._hash_cache_size:
            self._hashers.popitem(last=False)

    async def _hasher(self, state: UploadState, algorithm: str = "sha256") -> hashing.Hasher:
        if algorithm == "sha256":
            cached = self._hashers.get(state.id)
            if cached is not None and cached[0] == state.history:
                return cached[1]
            if state.offset == 0:
                return hashing.new(algorithm)
            if state.hash_state is not None:
                resumed = hashing.resume(algorithm, state.hash_state, state.offset)
                if resumed is not None:
                    return resumed
            log.warning(
                "upload_rehashed", upload=state.id, offset=state.offset, saved=state.hash_state is not None
            )
        return await self._rehash(state, algorithm)

    async def _rehash(self, state: UploadState, algorithm: str) -> hashing.Hasher:
        """The last resort: hash what storage holds (a state from another OpenSSL, or none)."""
        hasher = hashing.new(algorithm)
        for part in state.parts:
            remaining = part.size
            try:
                path = await self._locate(state.id, part)
                async for chunk in self._storage.reader(path, 0, CHUNK):
                    piece = chunk[:remaining]
                    await asyncio.to_thread(hasher.update, piece)
                    remaining -= len(piece)
                    if remaining <= 0:
                        break
            except PathNotFoundError:
                pass
            if remaining:
                await self._discard(state)
                raise UploadNotFound("the stored upload lost bytes: start it again", upload=state.id)
        return hasher

    # -- completing ----------------------------------------------------------------------

    async def push(self, repository: str, digest: Digest, body: ByteSource, length: int | None) -> Blob:
        """A whole blob sent in one request (`POST ?digest=`)."""
        blob = await self._store_whole(repository, 0, digest, body, None, length)
        if blob is not None:
            return blob
        state = await self.start(repository)
        try:
            blob = await self.complete(state, digest, body, length=length)
        except BaseException:
            await asyncio.shield(self.cancel(state))
            raise
        await self._redis.delete(_tombstone_key(state.id))  # no client knows this session
        return blob

    async def complete(
        self,
        state: UploadState,
        digest: Digest,
        body: ByteSource | None = None,
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> Blob:
        """Append the final body (if any), verify the digest, and make the blob visible; or, for a
        PUT repeated after the upload was published as this digest, the blob."""
        if state.published is None:
            try:
                return await self._complete(state, digest, body, start, length)
            except UploadNotFound:
                # Published meanwhile (by the request this one repeats, perhaps)?
                with contextlib.suppress(UploadNotFound):
                    state = await self.get(state.repository, state.id, finishing=str(digest))
                if state.published is None:
                    raise
        # The body, if any, was taken by the request that published it.
        if body is not None:
            await _skip(body)
        blob = await self._db.run(lambda conn: metadata.find_blob(conn, state.repository, str(digest)))
        if blob is None:  # deleted since
            raise UploadNotFound(upload=state.id)
        return blob

    async def _complete(
        self,
        state: UploadState,
        digest: Digest,
        body: ByteSource | None,
        start: int | None,
        length: int | None,
    ) -> Blob:
        async with self._locked(state, str(digest)) as current:
            if current.publishing is not None:
                # A PUT of this digest verified the upload and its instance died publishing it:
                # publish the same recorded bytes (its body, if any, was recorded then).
                log.info("upload_publish_resumed", upload=state.id, digest=str(digest))
                if body is not None:
                    await _skip(body)
                return await self._publish(current, digest)
            if body is not None and _repeats(current):
                await _skip(body)  # recorded by the attempt this one repeats
                body = None
            if body is not None:
                blob = await self._store_whole(state.repository, current.offset, digest, body, start, length)
                if blob is not None:
                    # Nothing was stored: only the session goes (a tombstone), and the lock with it.
                    await self._finish(current, digest)
                    return blob
            if body is not None and (length is None or length > 0):
                if start is not None and start != current.offset:
                    raise OffsetMismatch(offset=current.offset, start=start)
                current = await self._append(current, body, length)
            hasher = await self._hasher(current, digest.algorithm)
            actual = hasher.hexdigest()
            if actual != digest.hex:
                await self._discard(current)
                raise DigestMismatch(digest=str(digest), actual=f"{digest.algorithm}:{actual}")
            # Still under the lock: a request queued behind this one must find the upload published.
            return await self._publish(current, digest)

    async def _store_whole(
        self,
        repository: str,
        offset: int,
        digest: Digest,
        body: ByteSource,
        start: int | None,
        length: int | None,
    ) -> Blob | None:
        """Store a body that is a whole, small blob with one atomic write; None for any other body."""
        if not _whole_and_small(offset, length):
            return None
        assert length is not None
        if start not in (None, 0):
            raise OffsetMismatch(offset=0, start=start)
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
            if not await self._discard(current):
                raise InvalidUpload("the upload's lock lapsed while this request ran", upload=state.id)

    async def _claim(self, state: UploadState, *, release: bool = False) -> bool:
        """Take the upload out of Redis if this request still holds it as `state` has it;
        `release`: drop the lock too (`_locked` then has nothing to release)."""
        key = _key(state.id)
        claimed = await self._claim_script(
            [key, key + ":lock"],
            [state.lock_token, state.offset, state.encoded_parts, "1" if release else "0"],
        )
        self._hashers.pop(state.id, None)
        if claimed and release:
            self._released.add(state.lock_token)
        return bool(claimed)

    async def _discard(self, state: UploadState, *, release: bool = False) -> bool:
        """Claim the upload and delete its parts; False (nothing deleted) when it is not ours."""
        if not await self._claim(state, release=release):
            return False
        if state.parts:
            await self._delete_parts(state.id, state.parts)
        return True

    async def _publish(self, state: UploadState, digest: Digest) -> Blob:
        """Mark the verified upload (unless a publisher that died did), put exactly its recorded
        bytes at the blob's path, link it, and leave its tombstone. Each step may be done again."""
        if state.publishing is None:
            key = _key(state.id)
            marked = await self._mark(
                [key, key + ":lock"], [state.lock_token, state.offset, state.encoded_parts, str(digest)]
            )
            if not marked:
                log.warning("upload_fenced", upload=state.id, offset=state.offset, publishing=True)
                raise InvalidUpload("the upload's lock lapsed before it was published", upload=state.id)
        self._hashers.pop(state.id, None)
        dest = paths.blob_path(digest)
        try:
            if await self._in_place(dest, state.offset):
                # Content-addressed: bytes already there under this digest are these bytes.
                await self._delete_parts(state.id, state.parts)
            elif not state.parts:
                await self._storage.put_content(dest, b"")  # an empty blob: nothing was written
            elif not await self._move_whole(state, dest):
                sources = [(await self._locate(state.id, part), part.size) for part in state.parts]
                await self._storage.join(sources, dest)
                await self._delete_parts(state.id, state.parts)
        except (InvalidOffsetError, PathNotFoundError):
            if not await self._in_place(dest, state.offset):  # else another publisher of it was first
                # A machine crash before the disk caught up cut a part: the client must start again.
                if await self._claim(state):
                    await self._delete_parts(state.id, state.parts)
                raise UploadNotFound(
                    "the stored upload lost bytes: start it again", upload=state.id
                ) from None
        except BaseException:
            await asyncio.shield(self._restore(state))
            raise
        size = state.offset
        try:
            blob = await self._db.run(
                lambda conn: metadata.link_blob(conn, state.repository, str(digest), size)
            )
        except BaseException:
            # The bytes are in place: a retried PUT finds them there and only links them.
            await asyncio.shield(self._restore(state))
            raise
        await self._finish(state, digest)
        return blob

    async def _in_place(self, dest: str, size: int) -> bool:
        try:
            return (await self._storage.stat_file(dest)).size == size
        except PathNotFoundError:
            return False

    async def _finish(self, state: UploadState, digest: Digest) -> None:
        """The upload is published: its state goes (a tombstone stays), and the lock with it."""
        key = _key(state.id)
        tombstone = f"{digest} {state.started_at!r} {state.repository}"
        released = await self._finish_script(
            [key, key + ":lock", _tombstone_key(state.id)], [state.lock_token, tombstone, _TOMBSTONE_SECONDS]
        )
        self._hashers.pop(state.id, None)
        if released:
            self._released.add(state.lock_token)

    async def _restore(self, state: UploadState) -> None:
        """Publishing failed: the upload is as it was, for the client to retry the PUT."""
        key = _key(state.id)
        with contextlib.suppress(Exception):
            await self._unmark([key, key + ":lock"], [state.lock_token])
            log.warning("upload_publish_failed", upload=state.id)

    async def _move_whole(self, state: UploadState, dest: str) -> bool:
        """Rename a one-part upload into place (the common path: no byte is read or copied);
        False when it must be copied: the accumulated file was taken by a request that lost its
        lease (which may still append to it), or holds more than was recorded."""
        if len(state.parts) != 1:
            return False
        (part,) = state.parts
        try:
            await self._storage.move(self._path(state.id, part.name), dest, size=part.size)
        except (PathNotFoundError, InvalidOffsetError):
            if not part.accumulated:
                raise
            return False
        return True

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


class _LazyWriter:
    """A writer opened with the first byte: a request with an empty body stores nothing."""

    def __init__(self, storage: StorageDriver, path: str, start: int) -> None:
        self._storage = storage
        self._path = path
        self._start = start
        self._writer: FileWriter | None = None

    async def opened(self) -> FileWriter:
        if self._writer is None:
            self._writer = await self._storage.writer(self._path, self._start)
        return self._writer

    async def commit(self) -> None:
        if self._writer is not None:
            await self._writer.commit(durable=False)

    async def cancel(self) -> None:
        if self._writer is not None:
            await self._writer.cancel()


def _repeats(state: UploadState) -> bool:
    """Whether the request repeats the write recorded last (whose answer was lost)."""
    return bool(state.write_id) and state.write_id == state.last_write


async def _skip(body: ByteSource) -> None:
    """Read a body that was taken before and discard it, so that the answer finds a clean
    connection (a repeated body is one the front door held: small)."""
    while await body.readany():
        pass


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


async def _pump(body: ByteSource, writer: _LazyWriter, hasher: hashing.Hasher) -> int:
    """Copy a body to storage, hashing it as it goes; returns the bytes copied.

    The event loop only takes the chunks aiohttp received (never joined into a copy); each batch
    of up to BLOCK bytes is hashed and written by one worker-thread call (both release the GIL),
    while the next batch is read. Stores without blocking writes get the batch joined, written
    and hashed side by side."""
    loop = asyncio.get_running_loop()
    total = 0
    batch: list[bytes] = []
    buffered = 0
    pending: asyncio.Future[Any] | None = None

    def store(pieces: list[bytes], sink: BlockingWriter) -> None:
        for piece in pieces:
            hasher.update(piece)
        sink.write_blocking(pieces)

    async def flush(pieces: list[bytes]) -> None:
        sink = await writer.opened()
        if isinstance(sink, BlockingWriter):
            await loop.run_in_executor(None, store, pieces, sink)
            return
        block = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        await asyncio.gather(sink.write(block), asyncio.to_thread(hasher.update, block))

    try:
        while True:
            data = await body.readany()
            if data:
                batch.append(data)
                buffered += len(data)
            if buffered >= BLOCK or (not data and buffered):
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(flush(batch))
                total += buffered
                batch, buffered = [], 0
            if not data:
                break
        if pending is not None:
            await pending
            pending = None
    except BaseException:
        if pending is not None:
            # A thread may still be writing: let it finish before the caller cancels.
            await asyncio.wait({pending})
            if not pending.cancelled():
                pending.exception()
        raise
    return total
