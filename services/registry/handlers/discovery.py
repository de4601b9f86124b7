"""Content discovery: tags list, catalog, referrers."""

from __future__ import annotations

import json

from aiohttp import web

from wharf_registry import metadata
from wharf_registry.handlers.common import next_link, page, parse_digest, repository_name
from wharf_registry.keys import MANIFEST_CACHE
from wharf_shared import media_types as mt
from wharf_shared.errors.oci import NameUnknown
from wharf_shared.keys import DB


async def list_tags(request: web.Request) -> web.Response:
    name = repository_name(request)
    limit, last, _explicit = page(request)
    cache = request.app[MANIFEST_CACHE]
    # '@' is in no tag or digest, so page keys never meet manifest references.
    key = f"@tags?n={limit}&last={last or ''}"
    generation, cached = await cache.fetch(name, key)
    if cached is not None:
        cached_link, _, cached_body = cached.partition(b"\n")
        return _tags_response(cached_body, cached_link.decode())
    async with request.app[DB].read() as conn:
        repo = await metadata.get_repository(conn, name)
        if repo is None:
            raise NameUnknown(detail={"name": name})
        tags = await metadata.list_tags(conn, repo.id, limit + 1, last) if limit else []
    link = ""
    if len(tags) > limit:
        tags = tags[:limit]
        link = next_link(f"/v2/{name}/tags/list", limit, tags[-1])
    body = json.dumps({"name": name, "tags": tags}).encode()
    await cache.store(name, generation, key, link.encode() + b"\n" + body)
    return _tags_response(body, link)


def _tags_response(body: bytes, link: str) -> web.Response:
    return web.Response(body=body, content_type="application/json", headers={"Link": link} if link else None)


async def catalog(request: web.Request) -> web.Response:
    limit, last, _explicit = page(request)
    async with request.app[DB].read() as conn:
        names = await metadata.list_repositories(conn, limit + 1, last) if limit else []
    headers = {}
    if len(names) > limit:
        names = names[:limit]
        headers["Link"] = next_link("/v2/_catalog", limit, names[-1])
    return web.json_response({"repositories": names}, headers=headers)


async def list_referrers(request: web.Request) -> web.Response:
    name = repository_name(request)
    subject = parse_digest(request.match_info["digest"])
    artifact_type = request.query.get("artifactType") or None
    async with request.app[DB].read() as conn:
        repo = await metadata.get_repository(conn, name)
        # The spec: a registry with the referrers API never answers it with 404.
        referrers = await metadata.list_referrers(conn, repo.id, str(subject), artifact_type) if repo else []
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type is not None else {}
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [r.to_json() for r in referrers]}
    return web.Response(body=json.dumps(index).encode(), content_type=mt.OCI_INDEX, headers=headers)
