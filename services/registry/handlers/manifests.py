"""Manifests: pull (`GET`/`HEAD` by tag or digest), push (`PUT`), delete (by digest or tag)."""

from __future__ import annotations

from aiohttp import web

from wharf_registry.handlers.common import content_length, repository_name
from wharf_registry.keys import GRANT, MANIFESTS
from wharf_shared.errors.oci import ManifestTooLarge


def _accepted(request: web.Request) -> frozenset[str]:
    return frozenset(
        part.split(";", 1)[0].strip().lower()
        for value in request.headers.getall("Accept", [])
        for part in value.split(",")
    )


async def get_manifest(request: web.Request) -> web.Response:
    name = repository_name(request)
    entry = await request.app[MANIFESTS].get(
        name,
        request.match_info["reference"],
        accept=_accepted(request),
        pull=request.method == "GET",
        operator=request[GRANT].subject,
    )
    headers = {
        "Docker-Content-Digest": entry.digest,
        "ETag": f'"{entry.digest}"',
        "Content-Type": entry.media_type,
    }
    if request.method == "HEAD":
        return web.Response(status=200, headers={**headers, "Content-Length": str(len(entry.body))})
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
    manifests = request.app[MANIFESTS]
    body = await _read_body(request, manifests.max_bytes)
    pushed = await manifests.put(
        name,
        request.match_info["reference"],
        body,
        request.headers.get("Content-Type"),
        operator=request[GRANT].subject,
    )
    headers = {
        "Location": f"/v2/{name}/manifests/{pushed.digest}",
        "Docker-Content-Digest": pushed.digest,
        "Content-Length": "0",
    }
    if pushed.subject is not None:
        headers["OCI-Subject"] = pushed.subject
    return web.Response(status=201, headers=headers)


async def delete_manifest(request: web.Request) -> web.Response:
    await request.app[MANIFESTS].delete(
        repository_name(request), request.match_info["reference"], operator=request[GRANT].subject
    )
    return web.Response(status=202, headers={"Content-Length": "0"})
