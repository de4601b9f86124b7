"""Manifests: pull (`GET`/`HEAD` by tag or digest), push (`PUT`), delete (by digest or tag)."""

from __future__ import annotations

from aiohttp import web

from wharf_registry import metadata
from wharf_registry.cache import CachedManifest
from wharf_registry.handlers.common import content_length, parse_digest, repository_name
from wharf_registry.keys import MANIFEST_CACHE, STORAGE
from wharf_registry.manifests import parse_manifest
from wharf_shared import events
from wharf_shared import media_types as mt
from wharf_shared.digests import Digest, is_digest
from wharf_shared.errors.oci import (
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestTooLarge,
    ManifestUnknown,
    TagInvalid,
)
from wharf_shared.keys import DB, EVENTS, SETTINGS
from wharf_shared.logging import get_logger
from wharf_shared.references import is_valid_tag
from wharf_shared.storage import paths
from wharf_shared.storage.base import PathNotFoundError

log = get_logger(__name__)


def _reference(request: web.Request) -> tuple[str, Digest | None]:
    """(reference, its digest when it is one); a malformed tag or digest is a 400."""
    reference = request.match_info["reference"]
    if is_digest(reference):
        digest = parse_digest(reference)
        return str(digest), digest
    if not is_valid_tag(reference):
        raise TagInvalid(detail={"tag": reference})
    return reference, None


def _negotiate(request: web.Request, media_type: str, digest: str) -> None:
    """An index is not served to a client whose Accept lists manifest types but not this one."""
    if media_type not in mt.INDEXES:
        return
    accepted = {
        part.split(";", 1)[0].strip().lower()
        for value in request.headers.getall("Accept", [])
        for part in value.split(",")
    }
    if not accepted & mt.MANIFESTS or media_type in accepted or "*/*" in accepted:
        return
    raise ManifestUnknown(
        detail={"digest": digest, "mediaType": media_type},
        message=f"the manifest is a {media_type}, which the Accept header does not include",
    )


async def get_manifest(request: web.Request) -> web.Response:
    name = repository_name(request)
    reference, digest = _reference(request)
    cache = request.app[MANIFEST_CACHE]
    generation, entry = await cache.get(name, reference)
    if entry is None:
        async with request.app[DB].read() as conn:
            found = await metadata.find_manifest(conn, name, reference, by_digest=digest is not None)
        if found is None:
            raise ManifestUnknown(detail={"name": name, "reference": reference})
        try:
            body = await request.app[STORAGE].get_content(paths.blob_path(Digest.parse(found.digest)))
        except PathNotFoundError:
            log.error("manifest_bytes_missing", repository=name, digest=found.digest)
            raise ManifestUnknown(detail={"name": name, "reference": reference}) from None
        entry = CachedManifest(found.digest, found.media_type, body)
        await cache.put(name, generation, reference, entry)
    _negotiate(request, entry.media_type, entry.digest)
    headers = {
        "Docker-Content-Digest": entry.digest,
        "ETag": f'"{entry.digest}"',
        "Content-Type": entry.media_type,
    }
    if request.method == "HEAD":
        return web.Response(status=200, headers={**headers, "Content-Length": str(len(entry.body))})
    request.app[EVENTS].publish_soon(
        events.PULL,
        repository=name,
        digest=entry.digest,
        tag=None if digest else reference,
        media_type=entry.media_type,
    )
    return web.Response(body=entry.body, headers=headers)


async def _read_body(request: web.Request, limit: int) -> bytes:
    declared = content_length(request)
    if declared is not None and declared > limit:
        raise ManifestTooLarge(detail={"limit": limit, "size": declared})
    chunks: list[bytes] = []
    received = 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        received += len(chunk)
        if received > limit:
            raise ManifestTooLarge(detail={"limit": limit})
        chunks.append(chunk)


async def put_manifest(request: web.Request) -> web.Response:
    name = repository_name(request)
    reference, by_digest = _reference(request)
    body = await _read_body(request, request.app[SETTINGS].registry.manifest_max_bytes)
    digest = Digest.of(body, by_digest.algorithm if by_digest else "sha256")
    if by_digest is not None and digest != by_digest:
        raise DigestInvalid(detail={"digest": str(by_digest), "actual": str(digest)})
    parsed = parse_manifest(body, request.headers.get("Content-Type"), digest)
    db = request.app[DB]
    # Checked before the bytes are stored, so that a refused manifest leaves none behind.
    async with db.read() as conn:
        missing = await metadata.missing_references(conn, name, parsed)
    if missing:
        raise ManifestBlobUnknown(detail={"digests": missing})
    storage = request.app[STORAGE]
    path = paths.blob_path(digest)
    try:
        await storage.stat_file(path)
    except PathNotFoundError:
        await storage.put_content(path, body)
    tag = None if by_digest else reference
    try:
        manifest = await db.run(lambda conn: metadata.put_manifest(db, conn, name, parsed, tag))
    except metadata.MissingReferences as exc:
        raise ManifestBlobUnknown(detail={"digests": exc.digests}) from None
    await request.app[MANIFEST_CACHE].invalidate(name)
    await request.app[EVENTS].publish(
        events.PUSH,
        repository=name,
        digest=manifest.digest,
        tag=tag,
        media_type=manifest.media_type,
        size=manifest.size,
    )
    headers = {
        "Location": f"/v2/{name}/manifests/{manifest.digest}",
        "Docker-Content-Digest": manifest.digest,
        "Content-Length": "0",
    }
    if parsed.subject is not None:
        headers["OCI-Subject"] = parsed.subject.digest
    return web.Response(status=201, headers=headers)


async def delete_manifest(request: web.Request) -> web.Response:
    name = repository_name(request)
    reference, digest = _reference(request)
    db = request.app[DB]
    if digest is not None:
        found = await db.run(lambda conn: metadata.delete_manifest(conn, name, reference))
    else:
        found = await db.run(lambda conn: metadata.delete_tag(conn, name, reference))
    if found is None:
        raise ManifestUnknown(detail={"name": name, "reference": reference})
    await request.app[MANIFEST_CACHE].invalidate(name)
    await request.app[EVENTS].publish(
        events.DELETE,
        repository=name,
        digest=found.digest,
        tag=None if digest else reference,
        kind="manifest" if digest else "tag",
    )
    return web.Response(status=202, headers={"Content-Length": "0"})
