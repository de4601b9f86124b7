"""Blob pull (`GET`/`HEAD`, with `Range`) and delete."""

from __future__ import annotations

from aiohttp import web

from wharf_registry.handlers.common import API_VERSION, parse_digest, repository_name
from wharf_registry.keys import BLOBS, GRANT, STORAGE, TRUSTED_PROXIES
from wharf_shared.accel import ACCEL_BLOBS, ACCEL_REDIRECT, ACCEL_REQUEST, BLOB_LENGTH, redirect_uri
from wharf_shared.addresses import is_trusted
from wharf_shared.errors.oci import BlobUnknown, RangeNotSatisfiable
from wharf_shared.logging import get_logger
from wharf_shared.sendfile import BlobFileResponse
from wharf_shared.storage import paths
from wharf_shared.storage.base import PathNotFoundError

log = get_logger(__name__)


async def get_blob(request: web.Request) -> web.StreamResponse:
    name = repository_name(request)
    digest = parse_digest(request.match_info["digest"])
    blob = await request.app[BLOBS].find(name, digest)
    storage = request.app[STORAGE]
    path = paths.blob_path(digest)
    headers = {
        "Docker-Content-Digest": str(digest),
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
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
        if accel_offered(request):
            # The front door sends the file itself (wharf_shared.accel): headers only, no body.
            return web.Response(
                status=200,
                headers={**headers, ACCEL_REDIRECT: redirect_uri(path), BLOB_LENGTH: str(blob.size)},
            )
        # sendfile, with Range handled by aiohttp.
        return BlobFileResponse(local, chunk_size=1024 * 1024, headers=headers)
    return await _stream(request, path, blob.size, headers)


def accel_offered(request: web.Request) -> bool:
    """Whether a trusted front door (the peer itself, not what it forwards for) offers to send
    the blob from storage; anyone else's offer is ignored."""
    if request.headers.get(ACCEL_REQUEST) != ACCEL_BLOBS:
        return False
    trusted = request.app[TRUSTED_PROXIES]
    return is_trusted(request.remote or "", trusted)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (start, end) a `Range: bytes=…` header asks for; None for the whole blob."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip().lower() != "bytes" or not dash or "," in spec:
        raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    try:
        if first:
            start = int(first)
            end = int(last) if last else size - 1
        else:  # a suffix range: the last N bytes
            start, end = max(size - int(last), 0), size - 1
    except ValueError:
        raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"}) from None
    if start >= size or end < start or (not first and int(last) == 0):
        raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return start, min(end, size - 1)


async def _stream(request: web.Request, path: str, size: int, headers: dict[str, str]) -> web.StreamResponse:
    """Stream from a driver without local files, honouring one byte range."""
    wanted = byte_range(request.headers.get("Range"), size)
    start, end = wanted if wanted is not None else (0, size - 1)
    remaining = end - start + 1
    chunks = request.app[STORAGE].reader(path, start)
    # Read the first chunk before answering, so that missing bytes are still a clean 404.
    try:
        first = await anext(chunks, b"")
    except PathNotFoundError:
        log.error("blob_bytes_missing", path=path)
        raise BlobUnknown(detail={"path": path}) from None
    status = 200
    if wanted is not None:
        status = 206
        headers = {**headers, "Content-Range": f"bytes {start}-{end}/{size}"}
    response = web.StreamResponse(status=status, headers={**headers, **API_VERSION})
    response.content_length = remaining
    await response.prepare(request)
    chunk = first
    while chunk and remaining > 0:
        piece = chunk[:remaining]
        await response.write(piece)
        remaining -= len(piece)
        chunk = await anext(chunks, b"") if remaining > 0 else b""
    await chunks.aclose()
    await response.write_eof()
    return response


async def delete_blob(request: web.Request) -> web.Response:
    name = repository_name(request)
    digest = parse_digest(request.match_info["digest"])
    await request.app[BLOBS].delete(name, digest, operator=request[GRANT].subject)
    return web.Response(status=202, headers={"Docker-Content-Digest": str(digest), "Content-Length": "0"})
