"""Blob push: start (`POST`, with monolithic `?digest=` and cross-repository `?mount=&from=`),
chunks (`PATCH`), status (`GET`), finish (`PUT`), cancel (`DELETE`)."""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from wharf_registry.auth import Need
from wharf_registry.handlers.common import body_start, content_length, parse_digest, repository_name
from wharf_registry.keys import AUTHORIZER, GRANT, TRUSTED_PROXIES, UPLOADS
from wharf_registry.uploads import UploadState
from wharf_shared.accel import UPLOAD_WRITE, WRITE_ID
from wharf_shared.addresses import is_trusted
from wharf_shared.errors.oci import BlobUploadInvalid
from wharf_shared.references import is_valid_name


def _upload_headers(name: str, state: UploadState) -> dict[str, str]:
    return {
        "Location": f"/v2/{name}/blobs/uploads/{state.id}",
        "Range": state.range_header(),
        "Docker-Upload-UUID": state.id,
        "Content-Length": "0",
    }


def _blob_created(name: str, digest: str) -> web.Response:
    return web.Response(
        status=201,
        headers={
            "Location": f"/v2/{name}/blobs/{digest}",
            "Docker-Content-Digest": digest,
            "Content-Length": "0",
        },
    )


async def _session(request: web.Request, name: str) -> UploadState:
    # A PUT may repeat one that published the upload (its answer lost): it names the same digest.
    finishing = request.query.get("digest") if request.method == "PUT" else None
    state = await request.app[UPLOADS].get(name, request.match_info["upload_id"], finishing=finishing)
    need = Need("repository", name, "push", "pull,push")
    request.app[AUTHORIZER].check_upload_grant(request[GRANT], state.started_at, need)
    write_id = _write_id(request)
    return replace(state, write_id=write_id) if write_id else state


def _write_id(request: web.Request) -> str:
    """The trusted front door's id of this write, which it may send again (wharf_shared.accel);
    anyone else's is ignored."""
    value = request.headers.get(UPLOAD_WRITE, "")
    trusted = request.app[TRUSTED_PROXIES]
    if not value or not is_trusted(request.remote or "", trusted):
        return ""
    if not WRITE_ID.match(value):
        raise BlobUploadInvalid(detail={UPLOAD_WRITE: value[:100]})
    return value


async def post_upload(request: web.Request) -> web.Response:
    name = repository_name(request)
    uploads = request.app[UPLOADS]
    mount = request.query.get("mount")
    if mount is not None:
        digest = parse_digest(mount, what="mount")
        source = request.query.get("from", "")
        # Mount only what the caller may pull; otherwise fall back to a normal upload (202).
        if source and is_valid_name(source) and request[GRANT].allows("repository", source, "pull"):
            blob = await uploads.mount(name, digest, source)
            if blob is not None:
                return _blob_created(name, blob.digest)
    single = request.query.get("digest")
    if single is not None:
        blob = await uploads.push(name, parse_digest(single), request.content, content_length(request))
        return _blob_created(name, blob.digest)
    state = await uploads.start(name)
    return web.Response(status=202, headers=_upload_headers(name, state))


async def get_upload(request: web.Request) -> web.Response:
    name = repository_name(request)
    state = await _session(request, name)
    return web.Response(status=204, headers=_upload_headers(name, state))


async def patch_upload(request: web.Request) -> web.Response:
    name = repository_name(request)
    uploads = request.app[UPLOADS]
    state = await _session(request, name)
    start, length = body_start(request)
    state = await uploads.write(state, request.content, start=start, length=length)
    return web.Response(status=202, headers=_upload_headers(name, state))


async def put_upload(request: web.Request) -> web.Response:
    name = repository_name(request)
    uploads = request.app[UPLOADS]
    state = await _session(request, name)
    digest = parse_digest(request.query.get("digest"))
    start, length = body_start(request)
    blob = await uploads.complete(state, digest, request.content, start=start, length=length)
    return _blob_created(name, blob.digest)


async def delete_upload(request: web.Request) -> web.Response:
    name = repository_name(request)
    uploads = request.app[UPLOADS]
    state = await _session(request, name)
    await uploads.abort(state)
    return web.Response(status=204, headers={"Content-Length": "0"})
