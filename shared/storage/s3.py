"""The S3 driver: any S3-compatible object store (AWS, Ceph RGW, MinIO) through boto3.

Every S3 request runs in a bounded thread pool (`max_threads`, with as many pooled connections;
the thread idle longest is used last), never on the event loop. A file at `path` is stored
under the key `K = prefix + path` in one of two forms:

    K                        a plain object: what `put_content` and `move` write (blobs, manifests)
    K.wharf-state            a segmented file: what `writer` writes (uploads in progress), JSON
                             listing its segments in order with their sizes
    K.wharf-seg/<name>       its segments: all but the last exactly `part_size` bytes, the last
                             at most that; each written once, under a name no other writer uses

A plain object, when there is one, is the file (a leftover state object beside it is garbage
that `writer` and `delete` clear away); otherwise the state object is. S3 has no appends, so a
writer buffers at most one part, writes full parts as new segments, and on `commit` writes the
short rest as the last segment and then the state object: the one request that makes the
write visible, so that only what a commit wrote is ever read. A writer continuing a file reads
its short last segment back into its buffer, so that segments stay full; one that truncates
keeps the segments before its offset. Nothing a writer replaces is deleted before its commit,
so `cancel` only deletes the segments it wrote. `move` and `join` build the destination on
the server: `CopyObject` of a single object, or a multipart upload with one `UploadPartCopy`
per segment (segments are never larger than a copy request may be; a plain object larger than
`copy_limit` is copied in ranges). Only pieces smaller than S3's minimum part (the short last
segment of each file joined but the last) travel through the driver, together with what
follows them up to that minimum.

Directories are implicit, as in the filesystem driver (which prunes empty ones). Telling a
directory from nothing takes a listing, so `list`, and `stat` and `delete` of a path that is
not a file, list the bucket; `stat_file`, `delete_file` and reading, writing and moving files
never do. Incomplete multipart uploads left by a crash mid-`move` are invisible to
listings: give the bucket an AbortIncompleteMultipartUpload lifecycle rule.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import io
import json
import queue
import re
import threading
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from wharf_shared.config import S3StorageSettings
from wharf_shared.logging import get_logger
from wharf_shared.storage.base import (
    DEFAULT_CHUNK,
    FileInfo,
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
    StorageError,
    check_path,
)

log = get_logger(__name__)

T = TypeVar("T")

MiB = 1024 * 1024
GiB = 1024 * MiB
MIN_PART = 5 * MiB  # S3's smallest part, except a multipart upload's last one
MAX_PARTS = 10_000
STATE_SUFFIX = ".wharf-state"
SEGMENTS_SUFFIX = ".wharf-seg"
_RESERVED = re.compile(r"\.wharf-(state|seg)(/|$)")
_DELETE_BATCH = 1000
_MISSING = {"404", "NoSuchKey", "NotFound"}
_BAD_RANGE = {"416", "InvalidRange"}

_session_lock = threading.Lock()
_session: Any = None


def _client(**kwargs: Any) -> Any:
    """A client from one process-wide session: a session loads its models once (about 0.3 s)."""
    global _session
    with _session_lock:  # sessions are not thread-safe; clients are
        if _session is None:
            _session = boto3.session.Session()
        return _session.client("s3", **kwargs)


@dataclass(frozen=True, slots=True)
class _Segment:
    name: str
    size: int


@dataclass(frozen=True, slots=True)
class _State:
    segments: tuple[_Segment, ...]
    modified: dt.datetime

    @property
    def size(self) -> int:
        return sum(segment.size for segment in self.segments)

    def encode(self) -> bytes:
        return json.dumps(
            {"version": 1, "size": self.size, "segments": [[s.name, s.size] for s in self.segments]},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes, modified: dt.datetime) -> _State:
        doc = json.loads(raw)
        if doc.get("version") != 1:
            raise ValueError(f"unknown segmented-file state version {doc.get('version')!r}")
        return cls(tuple(_Segment(str(name), int(size)) for name, size in doc["segments"]), modified)


@dataclass(frozen=True, slots=True)
class _Plain:
    size: int
    modified: dt.datetime


@dataclass(frozen=True, slots=True)
class _Source:
    """Bytes [start, end) of an object that a writer copies into its new segments."""

    key: str
    start: int
    end: int
    segment: _Segment | None = None  # set when this is a whole segment (kept as is if unchanged)


class BucketMissingError(StorageError):
    """The bucket does not exist, and may not be made here."""

    def __init__(self, bucket: str) -> None:
        super().__init__(bucket, f"NoSuchBucket {bucket}", driver="s3")

    def __str__(self) -> str:
        return (
            f"the S3 bucket {self.path!r} does not exist: create it, or set "
            "WHARF_STORAGE__S3__CREATE_BUCKET=true"
        )


class S3Driver:
    name = "s3"
    atomic_rename = False

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        path_style: bool = False,
        verify_tls: bool = True,
        ca_bundle: Path | None = None,
        prefix: str = "",
        part_size: int = 16 * MiB,
        copy_limit: int = 5 * GiB,
        redirect: bool = False,
        redirect_ttl_seconds: int = 1200,
        max_threads: int = 16,
    ) -> None:
        if part_size < MIN_PART or copy_limit < MIN_PART:
            raise ValueError(f"part_size and copy_limit must be at least {MIN_PART} bytes")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        # A segment is copied by one request, so no segment may be larger than a copy allows.
        self.part_size = min(part_size, copy_limit)
        self.copy_limit = copy_limit
        self.redirect = redirect
        self.redirect_ttl_seconds = redirect_ttl_seconds
        verify: bool | str | None = False if not verify_tls else (str(ca_bundle) if ca_bundle else None)
        self.client: Any = _client(
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            verify=verify,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path" if path_style else "virtual"},
                max_pool_connections=max_threads,
                retries={"mode": "standard", "max_attempts": 5},
                connect_timeout=10,
                read_timeout=120,
                # Plain Content-Length uploads: S3-compatible stores differ in support for the
                # streaming checksum trailers newer botocore sends by default.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        self._pool = _ThreadPool(max_threads, "wharf-s3")

    @classmethod
    def from_settings(cls, settings: S3StorageSettings) -> S3Driver:
        return cls(
            bucket=settings.bucket,
            endpoint_url=settings.endpoint_url,
            region=settings.region,
            access_key=settings.access_key,
            secret_key=settings.secret_key.get_secret_value() if settings.secret_key else None,
            path_style=settings.path_style,
            verify_tls=settings.verify_tls,
            ca_bundle=settings.ca_bundle,
            prefix=settings.prefix,
            part_size=settings.part_size,
            copy_limit=settings.copy_limit,
            redirect=settings.redirect,
            redirect_ttl_seconds=settings.redirect_ttl_seconds,
            max_threads=settings.max_threads,
        )

    def close(self) -> None:
        """Let the threads go once their calls finish; the driver takes no new calls."""
        self._pool.shutdown()

    async def ensure_bucket(self, *, create: bool) -> bool:
        """Check that the bucket exists, or (`create`) make it; True when it was made here.
        BucketMissingError (naming it) when it does not exist and may not be made."""

        def ensure() -> bool:
            try:
                self.client.head_bucket(Bucket=self.bucket)
                return False
            except ClientError as exc:
                status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if status != "404" and code not in ("404", "NoSuchBucket"):
                    raise
            if not create:
                raise BucketMissingError(self.bucket)
            region = self.client.meta.region_name
            extra = (
                {}
                if region in (None, "us-east-1")
                else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            )
            try:
                self.client.create_bucket(Bucket=self.bucket, **extra)
            except ClientError as exc:  # another instance, starting at once, made it first
                if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise
                return False
            return True

        created = await self._run(self.bucket, ensure)
        if created:
            log.info("bucket_created", bucket=self.bucket)
        return created

    # -- plumbing -------------------------------------------------------------------------

    def _key(self, path: str) -> str:
        check_path(path, self.name)
        if _RESERVED.search(path):
            raise InvalidPathError(path, "name reserved for segmented files", driver=self.name)
        return self.prefix + path

    def _submit(
        self, path: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        """Run one blocking call in the pool, with S3's errors turned into storage errors."""

        def call() -> T:
            try:
                return fn(*args, **kwargs)
            except ClientError as exc:
                raise _translate(path, exc) from exc
            except BotoCoreError as exc:
                raise StorageError(path, str(exc), driver="s3") from exc

        return self._pool.submit(call)

    async def _run(self, path: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return await asyncio.wrap_future(self._submit(path, fn, *args, **kwargs))

    async def _head(self, path: str, key: str) -> _Plain | None:
        try:
            head = await self._run(path, self.client.head_object, Bucket=self.bucket, Key=key)
        except PathNotFoundError:
            return None
        return _Plain(int(head["ContentLength"]), head["LastModified"])

    async def _state(self, path: str, key: str) -> _State | None:
        try:
            raw, modified = await self._run(path, self._get_sync, key + STATE_SUFFIX)
        except PathNotFoundError:
            return None
        try:
            return _State.decode(raw, modified)
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(path, f"unreadable state object: {exc}", driver=self.name) from exc

    async def _resolve(self, path: str, key: str) -> tuple[_Plain | None, _State | None]:
        """What is stored at `path`: both lookups at once, so a segmented file costs one round trip."""
        plain, state = await asyncio.gather(self._head(path, key), self._state(path, key))
        return plain, state

    def _get_sync(self, key: str) -> tuple[bytes, dt.datetime]:
        response = self.client.get_object(Bucket=self.bucket, Key=key)
        with response["Body"] as body:
            data: bytes = body.read()
        return data, response["LastModified"]

    def _segment_key(self, key: str, segment: _Segment) -> str:
        return f"{key}{SEGMENTS_SUFFIX}/{segment.name}"

    async def _delete_keys(self, path: str, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": k} for k in keys[start : start + _DELETE_BATCH]]
            if len(batch) == 1:
                await self._run(path, self.client.delete_object, Bucket=self.bucket, Key=batch[0]["Key"])
                continue
            response = await self._run(
                path, self.client.delete_objects, Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
            )
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise StorageError(
                    path,
                    f"{len(errors)} deletes failed, e.g. {first.get('Key')}: {first.get('Code')}",
                    driver="s3",
                )

    async def _delete_quietly(self, path: str, keys: Sequence[str]) -> None:
        """Delete garbage: a failure leaves it for the directory's deletion, and is only logged."""
        try:
            await self._delete_keys(path, keys)
        except StorageError as exc:
            log.warning("s3_garbage_left", path=path, keys=len(keys), error=str(exc))

    async def _stream(
        self, path: str, key: str, start: int, chunk_size: int, *, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """An object's bytes from `start` (`length` of them, or to its end), one GET, chunk by chunk."""
        extra: dict[str, str] = {}
        if start or length is not None:
            extra["Range"] = f"bytes={start}-" + (f"{start + length - 1}" if length is not None else "")
        response = await self._run(path, self.client.get_object, Bucket=self.bucket, Key=key, **extra)
        body = response["Body"]
        try:
            while True:
                chunk: bytes = await self._run(path, body.read, chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    # -- the interface ----------------------------------------------------------------------

    async def get_content(self, path: str) -> bytes:
        key = self._key(path)
        try:
            data, _ = await self._run(path, self._get_sync, key)
            return data
        except PathNotFoundError:
            pass
        state = await self._state(path, key)
        if state is None:
            raise PathNotFoundError(path, driver=self.name)
        return b"".join([chunk async for chunk in self._read_segments(path, key, state, 0, 4 * MiB)])

    async def put_content(self, path: str, data: bytes) -> None:
        # One PUT: S3 replaces objects atomically. A state object beside it is now shadowed.
        await self._run(path, self.client.put_object, Bucket=self.bucket, Key=self._key(path), Body=data)

    async def reader(
        self, path: str, offset: int = 0, chunk_size: int = DEFAULT_CHUNK
    ) -> AsyncGenerator[bytes, None]:
        key = self._key(path)
        if offset < 0:
            raise InvalidOffsetError(path, f"negative offset {offset}", driver=self.name)
        stream = self._stream(path, key, offset, chunk_size)
        try:
            # The plain object first: one request on the pull path.
            first: bytes | None = await anext(stream, b"")
        except PathNotFoundError:
            first = None
        except InvalidOffsetError:
            # 416: at or past the end (an empty object answers 416 to any range).
            plain = await self._head(path, key)
            if plain is None:
                raise PathNotFoundError(path, driver=self.name) from None
            if offset != plain.size:
                raise InvalidOffsetError(
                    path, f"offset {offset} outside 0..{plain.size}", driver=self.name
                ) from None
            return
        if first is None:
            state = await self._state(path, key)
            if state is None:
                raise PathNotFoundError(path, driver=self.name)
            async for chunk in self._read_segments(path, key, state, offset, chunk_size):
                yield chunk
            return
        try:
            if first:
                yield first
                async for chunk in stream:
                    yield chunk
        finally:
            await stream.aclose()

    async def _read_segments(
        self, path: str, key: str, state: _State, offset: int, chunk_size: int
    ) -> AsyncGenerator[bytes, None]:
        if offset > state.size:
            raise InvalidOffsetError(path, f"offset {offset} outside 0..{state.size}", driver=self.name)
        start = 0
        for segment in state.segments:
            end = start + segment.size
            if end > offset:
                skip = max(offset - start, 0)
                stream = self._stream(path, self._segment_key(key, segment), skip, chunk_size)
                try:
                    async for chunk in stream:
                        yield chunk
                finally:
                    await stream.aclose()
            start = end

    async def writer(self, path: str, offset: int = 0) -> S3Writer:
        key = self._key(path)
        plain, state = await self._resolve(path, key)
        size = plain.size if plain is not None else state.size if state is not None else None
        if size is None and offset != 0:
            raise InvalidOffsetError(path, f"offset {offset} on a missing file", driver=self.name)
        if size is not None and not 0 <= offset <= size:
            raise InvalidOffsetError(path, f"offset {offset} outside 0..{size}", driver=self.name)
        keep: list[_Segment] = []
        sources: list[_Source] = []
        obsolete: list[_Segment] = list(state.segments) if state is not None else []
        if plain is not None:
            # A plain object becomes a segmented file at commit; a state object beside it is stale.
            if offset:
                sources.append(_Source(key, 0, offset))
        elif state is not None:
            start = 0
            for segment in state.segments:
                if start + segment.size <= offset:
                    keep.append(segment)
                elif start < offset:
                    sources.append(_Source(self._segment_key(key, segment), 0, offset - start))
                start += segment.size
            if keep and not sources and keep[-1].size < self.part_size:
                # A short last segment is read back, so that every segment but the last is full.
                tail = keep.pop()
                sources.append(_Source(self._segment_key(key, tail), 0, tail.size, tail))
            obsolete = [segment for segment in state.segments if segment not in keep]
        return S3Writer(
            self,
            path,
            key,
            offset,
            keep=keep,
            sources=sources,
            obsolete=obsolete,
            replaces_plain=plain is not None,
        )

    async def stat_file(self, path: str) -> FileInfo:
        key = self._key(path)
        plain, state = await self._resolve(path, key)
        if plain is not None:
            return FileInfo(path=path, size=plain.size, modified=plain.modified, is_dir=False)
        if state is not None:
            return FileInfo(path=path, size=state.size, modified=state.modified, is_dir=False)
        raise PathNotFoundError(path, driver=self.name)

    async def stat(self, path: str) -> FileInfo:
        key = self._key(path)
        try:
            return await self.stat_file(path)
        except PathNotFoundError:
            pass
        # Not a file: a directory if any key lies below it. Its time is its newest object's.
        response = await self._run(
            path, self.client.list_objects_v2, Bucket=self.bucket, Prefix=key + "/", MaxKeys=1000
        )
        contents = response.get("Contents") or []
        if not contents:
            raise PathNotFoundError(path, driver=self.name)
        modified = max(item["LastModified"] for item in contents)
        return FileInfo(path=path, size=0, modified=modified, is_dir=True)

    async def list(self, path: str) -> list[str]:
        key = self._key(path)
        base = key + "/"
        names: set[str] = set()
        found = False
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            response = await self._run(
                path, self.client.list_objects_v2, Bucket=self.bucket, Prefix=base, Delimiter="/", **extra
            )
            for item in response.get("Contents") or []:
                found = True
                name = item["Key"][len(base) :].removesuffix(STATE_SUFFIX)
                if name:  # not a "directory marker" some other tool left
                    names.add(name)
            for item in response.get("CommonPrefixes") or []:
                found = True
                name = item["Prefix"][len(base) :].rstrip("/")
                if not name.endswith(SEGMENTS_SUFFIX):  # segments of a file, or a writer's leftovers
                    names.add(name)
            if not response.get("IsTruncated"):
                break
            token = response["NextContinuationToken"]
        if not found:
            raise PathNotFoundError(path, driver=self.name)
        return sorted(f"{path}/{name}" for name in names)

    async def move(self, source: str, dest: str, *, size: int | None = None) -> None:
        source_key, dest_key = self._key(source), self._key(dest)
        plain, state = await self._resolve(source, source_key)
        if plain is None and state is None:
            raise PathNotFoundError(source, driver=self.name)
        found = plain.size if plain is not None else state.size if state is not None else 0
        if size is not None and found != size:
            raise InvalidOffsetError(source, f"{found} bytes, not {size}", driver=self.name)
        if source_key == dest_key:
            return
        if plain is not None:
            await self._assemble(source, dest_key, [(source_key, plain.size, plain.size)])
            await self._run(source, self.client.delete_object, Bucket=self.bucket, Key=source_key)
            if state is not None:
                await self._delete_quietly(source, self._state_keys(source_key, state))
            return
        assert state is not None
        segments = [(self._segment_key(source_key, s), s.size, s.size) for s in state.segments]
        await self._assemble(source, dest_key, segments)
        # The source is gone once its state object is; its segments are garbage from then on.
        await self._run(source, self.client.delete_object, Bucket=self.bucket, Key=source_key + STATE_SUFFIX)
        await self._delete_quietly(source, [key for key, _, _ in segments])

    async def rename(self, source: str, dest: str) -> None:
        self._key(source)
        self._key(dest)
        raise StorageError(source, "S3 has no atomic rename", driver=self.name)

    async def join(self, sources: Sequence[tuple[str, int]], dest: str) -> None:
        keys = [self._key(source) for source, _ in sources]
        dest_key = self._key(dest)
        found = await asyncio.gather(*(self._resolve(s, k) for (s, _), k in zip(sources, keys, strict=True)))
        pieces: list[tuple[str, int, int]] = []  # (key, bytes taken from its start, its size)
        for (source, length), key, (plain, state) in zip(sources, keys, found, strict=True):
            if plain is not None:
                objects = [(key, plain.size)]
            elif state is not None:
                objects = [(self._segment_key(key, s), s.size) for s in state.segments]
            else:
                raise PathNotFoundError(source, driver=self.name)
            if sum(size for _, size in objects) < length:
                raise InvalidOffsetError(source, f"shorter than {length} bytes", driver=self.name)
            remaining = length
            for object_key, size in objects:
                if remaining <= 0:
                    break
                pieces.append((object_key, min(size, remaining), size))
                remaining -= size
        await self._assemble(dest, dest_key, pieces)

    def _state_keys(self, key: str, state: _State) -> tuple[str, ...]:
        return (key + STATE_SUFFIX, *(self._segment_key(key, s) for s in state.segments))

    async def _assemble(self, path: str, dest_key: str, objects: Sequence[tuple[str, int, int]]) -> None:
        """Make `dest_key` the concatenation of the first `take` bytes of each of `objects` (key,
        take, size), on the server where S3 allows: pieces of at least S3's minimum part size are
        copied (`UploadPartCopy`, in ranges past `copy_limit`); smaller ones, which may not be a
        part but the last, are read and sent with what follows them, one minimum part at a time."""
        plan = _plan(objects, self.copy_limit, self.part_size)
        if not plan:
            await self._run(path, self.client.put_object, Bucket=self.bucket, Key=dest_key, Body=b"")
            return
        if len(plan) == 1 and len(plan[0].spans) == 1 and plan[0].spans[0].whole:
            span = plan[0].spans[0]
            await self._run(
                path,
                self.client.copy_object,
                Bucket=self.bucket,
                Key=dest_key,
                CopySource={"Bucket": self.bucket, "Key": span.key},
            )
            return
        if len(plan) == 1 and not plan[0].copy:
            body = await self._read_spans(path, plan[0].spans)
            await self._run(path, self.client.put_object, Bucket=self.bucket, Key=dest_key, Body=body)
            return
        if len(plan) > MAX_PARTS:
            raise StorageError(path, f"{len(plan)} parts: more than S3 allows in one object", driver="s3")
        upload = await self._run(path, self.client.create_multipart_upload, Bucket=self.bucket, Key=dest_key)
        upload_id: str = upload["UploadId"]
        reading = asyncio.Semaphore(4)  # parts sent from here are held in memory while they go out

        async def part(number: int, piece: _Part) -> dict[str, Any]:
            common = {"Bucket": self.bucket, "Key": dest_key, "UploadId": upload_id, "PartNumber": number}
            if piece.copy:
                span = piece.spans[0]
                extra = {} if span.whole else {"CopySourceRange": f"bytes={span.start}-{span.end - 1}"}
                result = await self._run(
                    path,
                    self.client.upload_part_copy,
                    CopySource={"Bucket": self.bucket, "Key": span.key},
                    **common,
                    **extra,
                )
                return {"PartNumber": number, "ETag": result["CopyPartResult"]["ETag"]}
            async with reading:
                body = await self._read_spans(path, piece.spans)
                result = await self._run(path, self.client.upload_part, Body=body, **common)
            return {"PartNumber": number, "ETag": result["ETag"]}

        try:
            done = await asyncio.gather(*(part(n, piece) for n, piece in enumerate(plan, 1)))
            await self._run(
                path,
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=dest_key,
                UploadId=upload_id,
                MultipartUpload={"Parts": list(done)},
            )
        except BaseException:
            abort = self._submit(
                path, self.client.abort_multipart_upload, Bucket=self.bucket, Key=dest_key, UploadId=upload_id
            )
            abort.add_done_callback(_log_failure(path, "s3_abort_multipart_failed"))
            raise

    async def _read_spans(self, path: str, spans: Sequence[_Span]) -> bytes:
        pieces: list[bytes] = []
        for span in spans:
            stream = self._stream(path, span.key, span.start, 4 * MiB, length=span.end - span.start)
            try:
                pieces.extend([chunk async for chunk in stream])
            finally:
                await stream.aclose()
        data = b"".join(pieces)
        if len(data) != sum(span.end - span.start for span in spans):
            raise StorageError(path, "an object ended early", driver="s3")
        return data

    async def delete_file(self, path: str) -> None:
        key = self._key(path)
        plain, state = await self._resolve(path, key)
        if plain is None and state is None:
            raise PathNotFoundError(path, driver=self.name)
        if plain is not None:
            await self._run(path, self.client.delete_object, Bucket=self.bucket, Key=key)
        if state is not None:
            # The state object first: the file is gone at once, its segments are garbage.
            await self._run(path, self.client.delete_object, Bucket=self.bucket, Key=key + STATE_SUFFIX)
            await self._delete_quietly(path, [self._segment_key(key, s) for s in state.segments])

    async def delete(self, path: str) -> None:
        key = self._key(path)
        try:
            await self.delete_file(path)
            return
        except PathNotFoundError:
            pass
        # Not a file: a directory tree, which takes listing every key below it.
        found = False
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            response = await self._run(
                path, self.client.list_objects_v2, Bucket=self.bucket, Prefix=key + "/", **extra
            )
            keys = [item["Key"] for item in response.get("Contents") or []]
            if keys:
                found = True
                await self._delete_keys(path, keys)
            if not response.get("IsTruncated"):
                break
            token = response["NextContinuationToken"]
        if not found:
            raise PathNotFoundError(path, driver=self.name)

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        """A presigned URL of the plain object (blobs are plain: `move` writes them)."""
        key = self._key(path)
        if not self.redirect:
            return None
        operation = {"GET": "get_object", "HEAD": "head_object"}.get(method.upper())
        if operation is None:
            return None
        url: str = await self._run(
            path,
            self.client.generate_presigned_url,
            operation,
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=self.redirect_ttl_seconds,
        )
        return url

    def local_path(self, path: str) -> Path | None:
        self._key(path)
        return None


@dataclass(frozen=True, slots=True)
class _Span:
    """Bytes [start, end) of the object `key`, which is `size` bytes long."""

    key: str
    start: int
    end: int
    size: int

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.end == self.size


@dataclass(frozen=True, slots=True)
class _Part:
    """A part of a multipart upload: one span copied on the server, or spans read and sent."""

    copy: bool
    spans: tuple[_Span, ...]


def _plan(objects: Sequence[tuple[str, int, int]], copy_limit: int, part_size: int) -> list[_Part]:
    """The parts that concatenate the first `take` bytes of each (key, take, size) of `objects`:
    every part but the last at least MIN_PART bytes."""
    spans: list[_Span] = []
    for key, take, size in objects:
        # A copy request copies at most `copy_limit`: larger objects go in ranges.
        step = take if take <= copy_limit else min(copy_limit, max(part_size, -(-take // MAX_PARTS)))
        spans.extend(_Span(key, a, min(a + step, take), size) for a in range(0, take, step or 1))
    plan: list[_Part] = []
    pending: list[_Span] = []  # small pieces (and what completes them), read and sent as one part
    pending_size = 0
    for span in spans:
        size = span.end - span.start
        if not pending:
            if size >= MIN_PART:
                plan.append(_Part(True, (span,)))
            elif size:
                pending, pending_size = [span], size
            continue
        need = MIN_PART - pending_size
        if size - need >= MIN_PART:
            # Complete the pending part from this piece's head; its rest is still copied.
            pending.append(_Span(span.key, span.start, span.start + need, span.size))
            plan.append(_Part(False, tuple(pending)))
            plan.append(_Part(True, (_Span(span.key, span.start + need, span.end, span.size),)))
            pending, pending_size = [], 0
            continue
        pending.append(span)  # whole: a rest too small to copy would only start another pending part
        pending_size += size
        if pending_size >= MIN_PART:
            plan.append(_Part(False, tuple(pending)))
            pending, pending_size = [], 0
    if pending:
        # The last part may be small: one piece is still copied on the server.
        plan.append(_Part(len(pending) == 1, tuple(pending)))
    return plan


@dataclass
class _Buffer:
    """Written bytes not yet in a segment: views of the caller's bytes, never copied."""

    pieces: deque[memoryview] = field(default_factory=deque)
    size: int = 0

    def add(self, piece: memoryview) -> None:
        if piece.nbytes:
            self.pieces.append(piece)
            self.size += piece.nbytes

    def take(self, n: int) -> list[memoryview]:
        taken: list[memoryview] = []
        while n:
            piece = self.pieces.popleft()
            if piece.nbytes > n:
                self.pieces.appendleft(piece[n:])
                piece = piece[:n]
            taken.append(piece)
            n -= piece.nbytes
            self.size -= piece.nbytes
        return taken


class S3Writer:
    """Writes a segmented file from an offset; see the module docstring."""

    def __init__(
        self,
        driver: S3Driver,
        path: str,
        key: str,
        offset: int,
        *,
        keep: list[_Segment],
        sources: list[_Source],
        obsolete: list[_Segment],
        replaces_plain: bool,
    ) -> None:
        self._driver = driver
        self._path = path
        self._key = key
        self._start = offset
        self._size = offset
        self._keep = keep
        self._sources = sources
        self._obsolete = obsolete
        self._replaces_plain = replaces_plain
        self._buffer = _Buffer()
        self._written: list[_Segment] = []
        self._token = uuid.uuid4().hex[:16]
        self._inflight: concurrent.futures.Future[Any] | None = None
        self._wrote = False
        self._closed = False

    @property
    def size(self) -> int:
        return self._size

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(self._path, "writer is closed", driver="s3")

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        self._check_open()
        if not data:
            return
        # Views of bytes only: the caller may reuse a bytearray or memoryview once this returns.
        piece = memoryview(data if isinstance(data, bytes) else bytes(data)).cast("B")
        await self._load_sources()
        self._wrote = True
        self._size += piece.nbytes
        await self._append(piece)

    async def _append(self, piece: memoryview) -> None:
        self._buffer.add(piece)
        while self._buffer.size >= self._driver.part_size:
            await self._flush(self._driver.part_size)

    async def _flush(self, n: int) -> None:
        """Write the buffer's first `n` bytes as this writer's next segment."""
        segment = _Segment(f"{self._token}-{len(self._written):05d}", n)
        self._written.append(segment)  # before the PUT, so that cancel deletes it whatever happens
        body = _PiecesReader(self._buffer.take(n))
        driver = self._driver
        self._inflight = driver._submit(
            self._path,
            driver.client.put_object,
            Bucket=driver.bucket,
            Key=driver._segment_key(self._key, segment),
            Body=body,
            ContentLength=n,
        )
        await asyncio.wrap_future(self._inflight)

    async def _load_sources(self, *, committing: bool = False) -> None:
        """Copy what this writer keeps of partly kept segments (or of a plain object) into it."""
        if not self._sources:
            return
        sources, self._sources = self._sources, []
        if committing and not self._wrote and len(sources) == 1 and sources[0].segment is not None:
            # Resumed and committed without a byte: the short last segment stays as it is.
            self._keep.append(sources[0].segment)
            self._obsolete.remove(sources[0].segment)
            return
        for source in sources:
            length = source.end - source.start
            if not length:
                continue
            stream = self._driver._stream(self._path, source.key, source.start, DEFAULT_CHUNK, length=length)
            try:
                async for chunk in stream:
                    await self._append(memoryview(chunk))
            finally:
                await stream.aclose()

    async def commit(self, *, durable: bool = True) -> None:
        # Every object S3 acknowledges is durable: `durable` changes nothing here.
        self._check_open()
        self._closed = True
        driver = self._driver
        stated = False
        try:
            await self._load_sources(committing=True)
            if self._buffer.size:
                await self._flush(self._buffer.size)
            state = _State((*self._keep, *self._written), dt.datetime.now(dt.UTC))
            stated = True
            # The one request that makes this write visible.
            await driver._run(
                self._path,
                driver.client.put_object,
                Bucket=driver.bucket,
                Key=self._key + STATE_SUFFIX,
                Body=state.encode(),
            )
            if self._replaces_plain:
                await driver._run(
                    self._path, driver.client.delete_object, Bucket=driver.bucket, Key=self._key
                )
        except BaseException:
            if not stated:  # once the state may be written, its segments may be the file
                await asyncio.shield(self._discard())
            raise
        if self._obsolete:
            await driver._delete_quietly(
                self._path, [driver._segment_key(self._key, s) for s in self._obsolete]
            )

    async def cancel(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._discard()
        self._size = self._start

    async def _discard(self) -> None:
        if self._inflight is not None and not self._inflight.done():
            # A PUT still running in its thread would leave its segment behind: let it end first.
            await asyncio.wait([asyncio.wrap_future(self._inflight)])
        self._buffer = _Buffer()
        if self._written:
            keys = [self._driver._segment_key(self._key, s) for s in self._written]
            await self._driver._delete_quietly(self._path, keys)


_Job = tuple[concurrent.futures.Future[Any], Callable[[], Any]]


class _ThreadPool:
    """At most `max_threads` threads, the one that went idle last taking the next call.

    `ThreadPoolExecutor` hands calls to its idle threads in turn, so in time every thread moves
    large buffers, and glibc gives each thread a malloc arena that keeps what was freed in it:
    the process grows by a few MiB per thread. Last in, first out, a quiet process runs on a
    thread or two, and a busy one on as many as it needs.
    """

    def __init__(self, max_threads: int, name: str) -> None:
        self._max = max_threads
        self._name = name
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[_Job | None]] = []  # a stack
        self._backlog: deque[_Job] = deque()
        self._threads = 0
        self._closed = False

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        job: _Job = (future, fn)
        with self._lock:
            if self._closed:
                raise RuntimeError("the S3 driver is closed")
            if self._idle:
                self._idle.pop().put(job)
            elif self._threads < self._max:
                self._threads += 1
                inbox: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
                inbox.put(job)
                name = f"{self._name}-{self._threads}"
                threading.Thread(target=self._work, args=(inbox,), name=name, daemon=True).start()
            else:
                self._backlog.append(job)
        return future

    def _work(self, inbox: queue.SimpleQueue[_Job | None]) -> None:
        job = inbox.get()
        while job is not None:
            future, fn = job
            job = None  # an idle thread must hold nothing of its last call (a part's buffers)
            result: Any = None
            error: BaseException | None = None
            if running := future.set_running_or_notify_cancel():
                try:
                    result = fn()
                except BaseException as exc:  # the caller's to handle, on its own thread
                    error = exc
            # Idle again before the caller hears back, so that its next call finds this thread.
            following: _Job | None = None
            ending = False
            with self._lock:
                if self._backlog:
                    following = self._backlog.popleft()
                elif self._closed:
                    ending = True
                else:
                    self._idle.append(inbox)  # shutdown() sends it None
            if running:
                if error is None:
                    future.set_result(result)
                else:
                    future.set_exception(error)
            del future, fn, result, error
            if ending:
                break
            job = following if following is not None else inbox.get()
        with self._lock:
            self._threads -= 1

    def shutdown(self) -> None:
        """Idle threads end now, busy ones after their call; queued calls still run."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for inbox in idle:
            inbox.put(None)


class _PiecesReader(io.RawIOBase):
    """A seekable file over memoryviews, so that a part goes out without being joined (copied)."""

    def __init__(self, pieces: Iterable[memoryview]) -> None:
        super().__init__()
        self._pieces = list(pieces)
        self._starts: list[int] = []
        total = 0
        for piece in self._pieces:
            self._starts.append(total)
            total += piece.nbytes
        self._size = total
        self._pos = 0
        self._index = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = min(max(base + offset, 0), self._size)
        self._index = 0
        return self._pos

    def _views(self, n: int) -> list[memoryview]:
        """The next `n` bytes (fewer at the end) as views of the pieces, advancing the position."""
        views: list[memoryview] = []
        while n > 0 and self._pos < self._size:
            while self._starts[self._index] + self._pieces[self._index].nbytes <= self._pos:
                self._index += 1
            piece = self._pieces[self._index]
            inner = self._pos - self._starts[self._index]
            view = piece[inner : inner + n]
            views.append(view)
            self._pos += view.nbytes
            n -= view.nbytes
        return views

    def read(self, size: int | None = -1) -> bytes:
        # One copy (RawIOBase.read makes two): botocore reads parts 1 MiB at a time to sign them.
        views = self._views(self._size - self._pos if size is None or size < 0 else size)
        return views[0].tobytes() if len(views) == 1 else b"".join(views)

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        done = 0
        for view in self._views(target.nbytes):
            target[done : done + view.nbytes] = view
            done += view.nbytes
        return done


def _translate(path: str, exc: ClientError) -> StorageError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    if code in _MISSING or (not code and status == "404"):
        return PathNotFoundError(path, driver="s3")
    if code in _BAD_RANGE or status == "416":
        return InvalidOffsetError(path, "range not satisfiable", driver="s3")
    if code == "NoSuchBucket":  # the bucket is named: which of them is gone matters
        return StorageError(path, f"NoSuchBucket {error.get('BucketName', '')}".rstrip(), driver="s3")
    return StorageError(path, f"{code or status}: {error.get('Message', exc)}", driver="s3")


def _log_failure(path: str, event: str) -> Callable[[concurrent.futures.Future[Any]], None]:
    def done(future: concurrent.futures.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.warning(event, path=path, error=str(future.exception()))

    return done
