"""Blob pull (`GET`/`HEAD`, with `Range`) and delete."""

from __future__ import annotations

from aiohttp import web

from wharf_registry import metadata
from wharf_registry.handlers.common import parse_digest, repository_name
from wharf_registry.keys import STORAGE
from wharf_shared import events
from wharf_shared.errors.oci import BlobUnknown, RangeNotSatisfiable
from wharf_shared.keys import DB, EVENTS
from wharf_shared.logging import get_logger
from wharf_shared.storage import paths
from wharf_shared.storage.base import PathNotFoundError

log = get_logger(__name__)


async def get_blob(request: web.Request) -> web.StreamResponse:
    name = repository_name(request)
    digest = parse_digest(request.match_info["digest"])
    async with request.app[DB].read() as conn:
        blob = await metadata.find_blob(conn, name, str(digest))
    if blob is None:
        raise BlobUnknown(detail={"digest": str(digest)})
    storage = request.app[STORAGE]
    path = paths.blob_path(digest)
    headers = {
        "Docker-Content-Digest": str(digest),
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
        "ETag": f'"{digest}"',
        "Cache-Control": "max-age=31536000",
    }
    if request.method == "HEAD":
        return web.Response(status=200, headers={**headers, "Content-Length": str(blob.size)})
    redirect = await storage.redirect_url(path)
    if redirect is not None:
        raise web.HTTPTemporaryRedirect(redirect, headers={"Docker-Content-Digest": str(digest)})
    local = storage.local_path(path)
    if local is not None:
        if not local.is_file():
            log.error("blob_bytes_missing", repository=name, digest=str(digest))
            raise BlobUnknown(detail={"digest": str(digest)})
        # sendfile, with Range handled by aiohttp.
        return web.FileResponse(local, chunk_size=1024 * 1024, headers=headers)
    return await _stream(request, path, blob.size, headers)


async def _stream(request: web.Request, path: str, size: int, headers: dict[str, str]) -> web.StreamResponse:
    start, end = 0, size - 1
    status = 200
    rng = request.http_range
    if request.headers.get("Range"):
        try:
            start = rng.start or 0
            end = (rng.stop - 1) if rng.stop is not None else size - 1
            if rng.start is not None and rng.start < 0:  # suffix range: the last N bytes
                start, end = max(size + rng.start, 0), size - 1
        except ValueError:
            raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"}) from None
        if start >= size or end < start:
            raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
        end = min(end, size - 1)
        status = 206
        headers = {**headers, "Content-Range": f"bytes {start}-{end}/{size}"}
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = end - start + 1
    await response.prepare(request)
    remaining = end - start + 1
    try:
        async for chunk in request.app[STORAGE].reader(path, start):
            piece = chunk[:remaining]
            await response.write(piece)
            remaining -= len(piece)
            if remaining <= 0:
                break
    except PathNotFoundError:
        log.error("blob_bytes_missing", path=path)
        raise
    await response.write_eof()
    return response


async def delete_blob(request: web.Request) -> web.Response:
    name = repository_name(request)
    digest = parse_digest(request.match_info["digest"])
    db = request.app[DB]
    removed = await db.run(lambda conn: metadata.unlink_blob(conn, name, str(digest)))
    if not removed:
        raise BlobUnknown(detail={"digest": str(digest)})
    await request.app[EVENTS].publish(events.DELETE, repository=name, digest=str(digest), kind="blob")
    return web.Response(status=202, headers={"Docker-Content-Digest": str(digest), "Content-Length": "0"})
