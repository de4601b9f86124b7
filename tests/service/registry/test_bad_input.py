"""Bad input on `/v2/`: each client mistake gets its precise OCI error and leaves nothing behind.

`FAILURE_CODES` is the table (after quay's `test/registry/protocol_v2.py:FAILURE_CODES`): case
→ setup and request steps → expected status and code (always one of the spec's codes for a
4xx, as the spec requires). After every case, on every
database backend, the test checks that the case made nothing visible: what it sent is not
pullable (HEAD → 404) where it was not before, no SQL row changed, no bytes appeared under
`blobs/`, every stored upload still has its session, no upload lock
is held, and the server answered no request with a 5xx, including the ones whose client hung up.

The app is served as `serve_forever` serves it (see `tests.support.wire.ProductionServer`).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict, CIMultiDictProxy
from redis.asyncio import Redis
from sqlalchemy import delete, func, insert, select

from tests.conftest import session_database
from tests.service.registry.conftest import registry_settings
from tests.support import backends, wire
from tests.support.oci import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    V2,
    descriptor,
    digest_of,
    error_code,
    image_manifest,
    index_manifest,
)
from tests.support.uploads import stored_bytes
from wharf_registry.app import create_app
from wharf_registry.uploads import BLOCK, SMALL_BODY
from wharf_registry.uploads import _key as upload_key
from wharf_shared.accel import UPLOAD_OFFSET
from wharf_shared.config import Settings
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.tables import metadata
from wharf_shared.db.types import utcnow
from wharf_shared.digests import Digest
from wharf_shared.storage import paths

R = "library/app"
OTHER = "library/other"
LIMIT = 16 * 1024  # manifest_max_bytes for this module

CONFIG = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
LAYER = bytes(range(256)) * 64
STRANGER = b"bytes that nobody pushed " * 8
FIRST = b"acknowledged chunk " * 64  # what a setup PATCH had acknowledged
TAIL = b"the rest of the blob " * 16
# A client that hangs up gets SENT bytes out: more than one storage block, so some were written.
SENT = BLOCK + 1024 * 1024
BIG = bytes(range(251)) * (2 * SENT // 251)  # a streamed chunk larger than what gets sent
HUGE = bytes(range(251)) * ((SMALL_BODY + SENT) // 251)  # past SMALL_BODY: streams through an upload file
SMALL = bytes(range(251)) * 12_000  # ~2.9 MB: read whole (SMALL_BODY) before anything is stored
MANIFEST = image_manifest(CONFIG, [LAYER])
INDEX = index_manifest([(MANIFEST, OCI_MANIFEST)])


def sha256(data: bytes) -> str:
    return digest_of(data)


def sha512(data: bytes) -> str:
    return digest_of(data, "sha512")


def upper(digest: str) -> str:
    algorithm, hex_ = digest.split(":")
    return f"{algorithm}:{hex_.upper()}"


def manifest_doc(**changes: Any) -> bytes:
    """MANIFEST's document with fields replaced (a value of None removes the field)."""
    doc = json.loads(MANIFEST)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return json.dumps(doc).encode()


SCHEMA1 = json.dumps(
    {
        "schemaVersion": 1,
        "name": R,
        "tag": "v1",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": sha256(LAYER)}],
        "history": [{"v1Compatibility": "{}"}],
        "signatures": [],
    }
).encode()
OVERSIZED = image_manifest(CONFIG, [LAYER], annotations={"padding": "x" * LIMIT})
LONG_TYPE = "application/vnd.example." + "x" * 240 + "+json"  # 270 characters; RFC 6838 allows 255
NUL_TYPE = "application/vnd.example\u0000+json"


# -- the case runner -------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: the client hung up, so there is no answer to read
    code: str | None
    headers: CIMultiDictProxy[str] | CIMultiDict[str] | None = None


def _code(body: bytes) -> str | None:
    try:
        return str(json.loads(body)["errors"][0]["code"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


@dataclass
class Ctx:
    client: TestClient[Any, Any]
    v2: V2
    root: Path  # the storage root
    redis: Redis
    location: str = ""  # the upload a setup opened

    @property
    def upload_id(self) -> str:
        return self.location.rsplit("/", 1)[-1]

    async def call(self, method: str, path: str, **kwargs: Any) -> Answer:
        resp = await self.v2.request(method, path, **kwargs)
        return Answer(resp.status, _code(await resp.read()), resp.headers)

    async def raw(self, method: str, target: str, body: bytes = b"", **headers: str) -> Answer:
        head = wire.request_head(method, target, {"Content-Length": str(len(body)), **headers})
        resp = await wire.exchange(self.client.server.host, self.client.server.port, head, body)
        return Answer(resp.status, _code(resp.body), resp.headers)

    async def hang_up(
        self,
        method: str,
        target: str,
        declared: bytes,
        *,
        streamed: bool = True,
        sent: int = SENT,
        **headers: str,
    ) -> Answer:
        """Announce `declared`, send its first SENT bytes, and close: when `streamed`, once the
        server has stored some of them (bytes on disk that were never acknowledged); otherwise
        (a small body the server reads whole before storing) right away."""
        stored = self.upload_bytes()
        head = wire.request_head(method, target, {"Content-Length": str(len(declared)), **headers})

        async def until_stored() -> None:
            await wire.wait_until(lambda: self.upload_bytes() > stored, "unacknowledged bytes on disk")

        await wire.hang_up(
            self.client.server.host,
            self.client.server.port,
            head,
            declared[:sent],
            before_close=until_stored if streamed else None,
        )
        return Answer(None, None)

    def upload_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.root / paths.UPLOADS).glob("*/*") if p.is_file())

    def upload_dirs(self) -> set[str]:
        base = self.root / paths.UPLOADS
        return {p.name for p in base.iterdir()} if base.is_dir() else set()

    def blob_files(self) -> set[str]:
        base = self.root / paths.BLOBS
        return {str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file()}


Step = Callable[[Ctx], Awaitable[Answer]]
Check = Callable[[Ctx], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    act: Step
    status: int | None
    code: str | None
    setup: Check | None = None
    then: Check | None = None  # what this case must leave, beyond what every case must
    blobs: tuple[bytes, ...] = ()  # contents sent: pullable nowhere they were not before
    manifests: tuple[bytes, ...] = ()


# Setups and checks the table uses.


def open_upload(data: bytes = b"", repository: str = R) -> Check:
    """Start an upload (in `repository`) and have `data` acknowledged by a PATCH."""

    async def setup(c: Ctx) -> None:
        resp = await c.v2.request("POST", f"/v2/{repository}/blobs/uploads/")
        assert resp.status == 202, await resp.text()
        c.location = resp.headers["Location"]
        if data:
            resp = await c.v2.request(
                "PATCH", c.location, data=data, headers={"Content-Range": f"0-{len(data) - 1}"}
            )
            assert resp.status == 202, await resp.text()

    return setup


def push_blobs(*blobs: bytes, repository: str = R) -> Check:
    async def setup(c: Ctx) -> None:
        for blob in blobs:
            await c.v2.push_blob(repository, blob)

    return setup


def push_image(repository: str) -> Check:
    async def setup(c: Ctx) -> None:
        await c.v2.push_blob(repository, CONFIG)
        await c.v2.push_blob(repository, LAYER)
        resp = await c.v2.push_manifest(repository, "base", MANIFEST)
        assert resp.status == 201, await resp.text()

    return setup


def upload_at(offset: int) -> Check:
    """The setup's upload is still there with exactly `offset` bytes, in its session and on disk."""

    async def check(c: Ctx) -> None:
        resp = await c.v2.request("GET", c.location)
        assert resp.status == 204, await resp.text()
        assert resp.headers["Range"] == f"0-{max(offset - 1, 0)}"
        assert stored_bytes(c.root, c.upload_id) == offset

    return check


async def upload_gone(c: Ctx) -> None:
    resp = await c.v2.request("GET", c.location)
    assert resp.status == 404
    assert await error_code(resp) == "BLOB_UPLOAD_UNKNOWN"
    assert c.upload_id not in c.upload_dirs()


async def no_uploads(c: Ctx) -> None:
    assert c.upload_dirs() == set()


def body_of(data: bytes, piece: int = 7) -> Callable[[], AsyncIterator[bytes]]:
    """A streamed body (chunked transfer encoding: no Content-Length)."""

    async def gen() -> AsyncIterator[bytes]:
        for start in range(0, len(data), piece):
            yield data[start : start + piece]

    return gen


def put_manifest(body: bytes, reference: str = "v1", media_type: str = OCI_MANIFEST, name: str = R) -> Step:
    return lambda c: c.call(
        "PUT", f"/v2/{name}/manifests/{reference}", data=body, headers={"Content-Type": media_type}
    )


def post_blob(data: bytes, digest: str, name: str = R) -> Step:
    return lambda c: c.call("POST", f"/v2/{name}/blobs/uploads/", params={"digest": digest}, data=data)


A = len(FIRST)  # bytes the setup acknowledged
UNKNOWN_ID = "0123456789abcdef0123456789abcdef"
IDX_MISSING = index_manifest([(image_manifest(STRANGER, [LAYER]), OCI_MANIFEST)])

FAILURE_CODES: dict[str, Case] = {
    # -- digests that do not match what was sent
    "monolithic POST with the digest of other bytes": Case(
        post_blob(LAYER, sha256(STRANGER)), 400, "DIGEST_INVALID", then=no_uploads, blobs=(LAYER, STRANGER)
    ),
    "monolithic POST with the sha512 of other bytes": Case(
        post_blob(LAYER, sha512(STRANGER)), 400, "DIGEST_INVALID", then=no_uploads, blobs=(LAYER,)
    ),
    "closing PUT with the digest of other bytes": Case(
        lambda c: c.call("PUT", c.location, params={"digest": sha256(STRANGER)}, data=TAIL),
        400,
        "DIGEST_INVALID",
        setup=open_upload(FIRST),
        then=upload_gone,
        blobs=(FIRST, FIRST + TAIL, STRANGER),
    ),
    "closing PUT without a body, digest of other bytes": Case(
        lambda c: c.call("PUT", c.location, params={"digest": sha256(STRANGER)}),
        400,
        "DIGEST_INVALID",
        setup=open_upload(FIRST),
        then=upload_gone,
        blobs=(FIRST, STRANGER),
    ),
    "closing PUT without a digest": Case(
        lambda c: c.call("PUT", c.location, data=TAIL),
        400,
        "DIGEST_INVALID",
        setup=open_upload(FIRST),
        then=upload_at(A),
        blobs=(FIRST, FIRST + TAIL),
    ),
    "manifest PUT by the digest of other bytes": Case(
        put_manifest(MANIFEST, sha256(STRANGER)),
        400,
        "DIGEST_INVALID",
        setup=push_blobs(CONFIG, LAYER),
        manifests=(MANIFEST,),
    ),
    # -- digests that are not digests
    "monolithic POST, digest of an unknown algorithm": Case(
        post_blob(LAYER, "md5:" + "0" * 32), 400, "DIGEST_INVALID", then=no_uploads, blobs=(LAYER,)
    ),
    "monolithic POST, digest one hex short": Case(
        post_blob(LAYER, sha256(LAYER)[:-1]), 400, "DIGEST_INVALID", then=no_uploads, blobs=(LAYER,)
    ),
    "monolithic POST, digest in upper-case hex": Case(
        post_blob(LAYER, upper(sha256(LAYER))), 400, "DIGEST_INVALID", then=no_uploads, blobs=(LAYER,)
    ),
    "monolithic POST, digest without an algorithm": Case(
        post_blob(LAYER, sha256(LAYER).split(":")[1]), 400, "DIGEST_INVALID", then=no_uploads, blobs=(LAYER,)
    ),
    "closing PUT, digest one hex too long": Case(
        lambda c: c.call("PUT", c.location, params={"digest": sha256(FIRST) + "0"}),
        400,
        "DIGEST_INVALID",
        setup=open_upload(FIRST),
        then=upload_at(A),
        blobs=(FIRST,),
    ),
    "blob GET, digest in upper-case hex": Case(
        lambda c: c.call("GET", f"/v2/{R}/blobs/{upper(sha256(LAYER))}"),
        400,
        "DIGEST_INVALID",
        setup=push_blobs(LAYER),
    ),
    "manifest GET, digest of an unknown algorithm": Case(
        lambda c: c.call("GET", f"/v2/{R}/manifests/sha1:{'0' * 40}"), 400, "DIGEST_INVALID"
    ),
    "manifest PUT by a digest of an unknown algorithm": Case(
        put_manifest(MANIFEST, "sha1:" + "0" * 40),
        400,
        "DIGEST_INVALID",
        setup=push_blobs(CONFIG, LAYER),
        manifests=(MANIFEST,),
    ),
    "mount of a malformed digest": Case(
        lambda c: c.call("POST", f"/v2/{R}/blobs/uploads/", params={"mount": "sha256:zz", "from": OTHER}),
        400,
        "DIGEST_INVALID",
        then=no_uploads,
    ),
    # -- bodies cut short: the client hangs up mid-body
    "monolithic POST, client hangs up mid-body": Case(
        lambda c: c.hang_up("POST", f"/v2/{R}/blobs/uploads/?digest={sha256(HUGE)}", HUGE),
        None,
        None,
        then=no_uploads,
        blobs=(HUGE, HUGE[:SENT]),
    ),
    "small monolithic POST, client hangs up mid-body": Case(
        lambda c: c.hang_up(
            "POST",
            f"/v2/{R}/blobs/uploads/?digest={sha256(SMALL)}",
            SMALL,
            streamed=False,
            sent=len(SMALL) // 2,
        ),
        None,
        None,
        then=no_uploads,
        blobs=(SMALL, SMALL[: len(SMALL) // 2]),
    ),
    "PATCH, client hangs up mid-body": Case(
        lambda c: c.hang_up("PATCH", c.location, BIG, **{"Content-Range": f"{A}-{A + len(BIG) - 1}"}),
        None,
        None,
        setup=open_upload(FIRST),
        then=upload_at(A),
        blobs=(FIRST, FIRST + BIG[:SENT]),
    ),
    "closing PUT, client hangs up mid-body": Case(
        lambda c: c.hang_up("PUT", f"{c.location}?digest={sha256(FIRST + BIG)}", BIG),
        None,
        None,
        setup=open_upload(FIRST),
        then=upload_at(A),
        blobs=(FIRST, FIRST + BIG, FIRST + BIG[:SENT]),
    ),
    "PATCH body shorter than its Content-Range": Case(
        lambda c: c.call(
            "PATCH", c.location, data=body_of(TAIL)(), headers={"Content-Range": f"{A}-{A + len(TAIL)}"}
        ),
        400,
        "SIZE_INVALID",
        setup=open_upload(FIRST),
        then=upload_at(A),
        blobs=(FIRST, FIRST + TAIL),
    ),
    # -- Content-Range that does not continue the upload
    "PATCH leaving a gap": Case(
        lambda c: c.call(
            "PATCH", c.location, data=TAIL, headers={"Content-Range": f"{A + 1}-{A + len(TAIL)}"}
        ),
        416,
        "BLOB_UPLOAD_INVALID",
        setup=open_upload(FIRST),
        then=upload_at(A),
        blobs=(FIRST,),
    ),
    "PATCH overlapping acknowledged bytes": Case(
        lambda c: c.call(
            "PATCH", c.location, data=TAIL, headers={"Content-Range": f"{A - 5}-{A - 6 + len(TAIL)}"}
        ),
        416,
        "BLOB_UPLOAD_INVALID",
        setup=open_upload(FIRST),
        then=upload_at(A),
        blobs=(FIRST,),
    ),
    "PATCH resending the acknowledged chunk": Case(
        lambda c: c.call("PATCH", c.location, data=FIRST, headers={"Content-Range": f"0-{A - 1}"}),
        416,
        "BLOB_UPLOAD_INVALID",
        setup=open_upload(FIRST),
        then=upload_at(A),
        blobs=(FIRST,),
    ),
    "first PATCH not starting at zero": Case(
        lambda c: c.call("PATCH", c.location, data=TAIL, headers={"Content-Range": f"1-{len(TAIL)}"}),
        416,
        "BLOB_UPLOAD_INVALID",
        setup=open_upload(),
        then=upload_at(0),
        blobs=(TAIL,),
    ),
    "PATCH with a Content-Range ending before it starts": Case(
        lambda c: c.call("PATCH", c.location, data=TAIL, headers={"Content-Range": f"{A + 9}-{A}"}),
        416,
        "BLOB_UPLOAD_INVALID",
        setup=open_upload(FIRST),
        then=upload_at(A),
    ),
    "PATCH with a malformed Content-Range": Case(
        lambda c: c.call("PATCH", c.location, data=TAIL, headers={"Content-Range": f"bytes {A}-"}),
        416,
        "BLOB_UPLOAD_INVALID",
        setup=open_upload(FIRST),
        then=upload_at(A),
    ),
    "PATCH whose Content-Range and Content-Length disagree": Case(
        lambda c: c.call(
            "PATCH", c.location, data=TAIL, headers={"Content-Range": f"{A}-{A + 2 * len(TAIL) - 1}"}
        ),
        416,
        "BLOB_UPLOAD_INVALID",
        setup=open_upload(FIRST),
        then=upload_at(A),
        blobs=(FIRST + TAIL,),
    ),
    # -- the front door's fence for a body of unknown length (wharf_shared.accel.UPLOAD_OFFSET)
    "PATCH whose upload offset fence is not where the upload stands": Case(
        lambda c: c.call("PATCH", c.location, data=TAIL, headers={UPLOAD_OFFSET: str(A + 1)}),
        416,
        "BLOB_UPLOAD_INVALID",
        setup=open_upload(FIRST),
        then=upload_at(A),
        blobs=(FIRST + TAIL,),
    ),
    "PATCH with a malformed upload offset fence": Case(
        lambda c: c.call("PATCH", c.location, data=TAIL, headers={UPLOAD_OFFSET: f"{A}-"}),
        416,
        "BLOB_UPLOAD_INVALID",
        setup=open_upload(FIRST),
        then=upload_at(A),
        blobs=(FIRST + TAIL,),
    ),
    "closing PUT whose upload offset fence is not where the upload stands": Case(
        lambda c: c.call(
            "PUT",
            c.location,
            params={"digest": sha256(FIRST + TAIL)},
            data=TAIL,
            headers={UPLOAD_OFFSET: "0"},
        ),
        416,
        "BLOB_UPLOAD_INVALID",
        setup=open_upload(FIRST),
        then=upload_at(A),
        blobs=(FIRST, FIRST + TAIL),
    ),
    "closing PUT leaving a gap": Case(
        lambda c: c.call(
            "PUT",
            c.location,
            params={"digest": sha256(FIRST + TAIL)},
            data=TAIL,
            headers={"Content-Range": f"{A + 1}-{A + len(TAIL)}"},
        ),
        416,
        "BLOB_UPLOAD_INVALID",
        setup=open_upload(FIRST),
        then=upload_at(A),
        blobs=(FIRST, FIRST + TAIL),
    ),
    "closing PUT whose Content-Range and Content-Length disagree": Case(
        lambda c: c.call(
            "PUT",
            c.location,
            params={"digest": sha256(FIRST + TAIL)},
            data=TAIL,
            headers={"Content-Range": f"{A}-{A + len(TAIL)}"},
        ),
        416,
        "BLOB_UPLOAD_INVALID",
        setup=open_upload(FIRST),
        then=upload_at(A),
        blobs=(FIRST, FIRST + TAIL),
    ),
    # -- manifests that are not manifests
    "manifest that is not JSON": Case(put_manifest(b"{not json"), 400, "MANIFEST_INVALID"),
    "manifest that is not text": Case(put_manifest(b"\x80\x81\xfe"), 400, "MANIFEST_INVALID"),
    "manifest that is a JSON array": Case(put_manifest(b"[]"), 400, "MANIFEST_INVALID"),
    "manifest that is a JSON string": Case(put_manifest(b'"manifest"'), 400, "MANIFEST_INVALID"),
    "manifest nested too deep to parse": Case(
        put_manifest(b"[" * 4000 + b"]" * 4000), 400, "MANIFEST_INVALID"
    ),
    "manifest with a 5000-digit number": Case(
        put_manifest(b'{"schemaVersion": 1' + b"0" * 5000 + b"}"), 400, "MANIFEST_INVALID"
    ),
    "manifest with schemaVersion 1": Case(
        put_manifest(manifest_doc(schemaVersion=1)),
        400,
        "MANIFEST_INVALID",
        setup=push_blobs(CONFIG, LAYER),
        manifests=(manifest_doc(schemaVersion=1),),
    ),
    "manifest with schemaVersion as a string": Case(
        put_manifest(manifest_doc(schemaVersion="2")),
        400,
        "MANIFEST_INVALID",
        setup=push_blobs(CONFIG, LAYER),
        manifests=(manifest_doc(schemaVersion="2"),),
    ),
    "manifest without schemaVersion": Case(
        put_manifest(manifest_doc(schemaVersion=None)),
        400,
        "MANIFEST_INVALID",
        setup=push_blobs(CONFIG, LAYER),
        manifests=(manifest_doc(schemaVersion=None),),
    ),
    "Content-Type Docker, mediaType OCI": Case(
        put_manifest(MANIFEST, media_type=DOCKER_MANIFEST),
        400,
        "MANIFEST_INVALID",
        setup=push_blobs(CONFIG, LAYER),
        manifests=(MANIFEST,),
    ),
    "Content-Type that is no manifest type": Case(
        put_manifest(manifest_doc(mediaType=None), media_type="text/plain"),
        400,
        "MANIFEST_INVALID",
        setup=push_blobs(CONFIG, LAYER),
        manifests=(manifest_doc(mediaType=None),),
    ),
    "Docker schema 1 manifest, signed": Case(
        put_manifest(SCHEMA1, media_type="application/vnd.docker.distribution.manifest.v1+prettyjws"),
        400,
        "MANIFEST_INVALID",
        setup=push_blobs(LAYER),
        manifests=(SCHEMA1,),
    ),
    "Docker schema 1 manifest, unsigned": Case(
        put_manifest(SCHEMA1, media_type="application/vnd.docker.distribution.manifest.v1+json"),
        400,
        "MANIFEST_INVALID",
        setup=push_blobs(LAYER),
        manifests=(SCHEMA1,),
    ),
    "Docker schema 1 manifest, generic Content-Type": Case(
        put_manifest(SCHEMA1, media_type="application/json"),
        400,
        "MANIFEST_INVALID",
        setup=push_blobs(LAYER),
        manifests=(SCHEMA1,),
    ),
    "manifest whose layers are not a list": Case(
        put_manifest(manifest_doc(layers=descriptor(LAYER, OCI_LAYER))),
        400,
        "MANIFEST_INVALID",
        setup=push_blobs(CONFIG, LAYER),
    ),
    "manifest with a malformed layer digest": Case(
        put_manifest(manifest_doc(layers=[{**descriptor(LAYER, OCI_LAYER), "digest": upper(sha256(LAYER))}])),
        400,
        "MANIFEST_INVALID",
        setup=push_blobs(CONFIG, LAYER),
    ),
    "manifest with a negative layer size": Case(
        put_manifest(manifest_doc(layers=[{**descriptor(LAYER, OCI_LAYER), "size": -1}])),
        400,
        "MANIFEST_INVALID",
        setup=push_blobs(CONFIG, LAYER),
    ),
    "manifest whose artifactType is longer than a media type can be": Case(
        put_manifest(manifest_doc(artifactType=LONG_TYPE)),
        400,
        "MANIFEST_INVALID",
        setup=push_blobs(CONFIG, LAYER),
        manifests=(manifest_doc(artifactType=LONG_TYPE),),
    ),
    "manifest whose config mediaType is longer than a media type can be": Case(
        put_manifest(image_manifest(CONFIG, [LAYER], config_type=LONG_TYPE)),
        400,
        "MANIFEST_INVALID",
        setup=push_blobs(CONFIG, LAYER),
        manifests=(image_manifest(CONFIG, [LAYER], config_type=LONG_TYPE),),
    ),
    "manifest whose artifactType holds a NUL character": Case(
        put_manifest(manifest_doc(artifactType=NUL_TYPE)),
        400,
        "MANIFEST_INVALID",
        setup=push_blobs(CONFIG, LAYER),
        manifests=(manifest_doc(artifactType=NUL_TYPE),),
    ),
    "index listing a layer": Case(
        put_manifest(index_manifest([(LAYER, OCI_LAYER)]), media_type=OCI_INDEX),
        400,
        "MANIFEST_INVALID",
        setup=push_blobs(LAYER),
    ),
    # -- manifests referencing what this repository does not have
    "manifest whose blobs were never pushed": Case(
        put_manifest(MANIFEST), 400, "MANIFEST_BLOB_UNKNOWN", manifests=(MANIFEST,)
    ),
    "manifest whose layer was never pushed": Case(
        put_manifest(MANIFEST),
        400,
        "MANIFEST_BLOB_UNKNOWN",
        setup=push_blobs(CONFIG),
        manifests=(MANIFEST,),
    ),
    "manifest whose blobs are only in another repository": Case(
        put_manifest(MANIFEST),
        400,
        "MANIFEST_BLOB_UNKNOWN",
        setup=push_blobs(CONFIG, LAYER, repository=OTHER),
        manifests=(MANIFEST,),
    ),
    "index listing a manifest never pushed": Case(
        put_manifest(IDX_MISSING, media_type=OCI_INDEX),
        400,
        "MANIFEST_BLOB_UNKNOWN",
        setup=push_image(R),
        manifests=(IDX_MISSING,),
    ),
    "index whose manifest is only in another repository": Case(
        put_manifest(INDEX, media_type=OCI_INDEX),
        400,
        "MANIFEST_BLOB_UNKNOWN",
        setup=push_image(OTHER),
        manifests=(INDEX,),
    ),
    # -- tags
    "tag starting with a dash": Case(
        put_manifest(MANIFEST, "-v1"), 400, "MANIFEST_INVALID", setup=push_blobs(CONFIG, LAYER)
    ),
    "tag starting with a dot": Case(
        put_manifest(MANIFEST, ".v1"), 400, "MANIFEST_INVALID", setup=push_blobs(CONFIG, LAYER)
    ),
    "tag of 129 characters": Case(
        put_manifest(MANIFEST, "v" * 129), 400, "MANIFEST_INVALID", setup=push_blobs(CONFIG, LAYER)
    ),
    "tag ending in a newline": Case(
        lambda c: c.raw("PUT", f"/v2/{R}/manifests/v1%0A", MANIFEST, **{"Content-Type": OCI_MANIFEST}),
        400,
        "MANIFEST_INVALID",
        setup=push_blobs(CONFIG, LAYER),
        manifests=(MANIFEST,),
    ),
    # -- repository names
    "name with a .. component": Case(
        lambda c: c.raw("POST", f"/v2/../x/blobs/uploads/?digest={sha256(LAYER)}", LAYER),
        400,
        "NAME_INVALID",
        then=no_uploads,
        blobs=(LAYER,),
    ),
    "name in upper case": Case(
        post_blob(LAYER, sha256(LAYER), name="Library/App"),
        400,
        "NAME_INVALID",
        then=no_uploads,
        blobs=(LAYER,),
    ),
    "name of 256 characters": Case(
        put_manifest(MANIFEST, name="library/" + "a" * 248), 400, "NAME_INVALID", manifests=(MANIFEST,)
    ),
    "name with an empty component": Case(
        lambda c: c.raw("PUT", "/v2/library//app/manifests/v1", MANIFEST, **{"Content-Type": OCI_MANIFEST}),
        400,
        "NAME_INVALID",
        manifests=(MANIFEST,),
    ),
    "name with a trailing slash": Case(
        lambda c: c.raw("POST", f"/v2/{R}//blobs/uploads/"), 400, "NAME_INVALID", then=no_uploads
    ),
    "name with a leading slash": Case(
        lambda c: c.raw("GET", f"/v2//{R}/tags/list"), 400, "NAME_INVALID", setup=push_image(R)
    ),
    "name component ending in a separator": Case(
        lambda c: c.call("POST", "/v2/library/app-/blobs/uploads/"), 400, "NAME_INVALID", then=no_uploads
    ),
    # -- upload sessions that are not there, or not this repository's
    "status of an upload that never existed": Case(
        lambda c: c.call("GET", f"/v2/{R}/blobs/uploads/{UNKNOWN_ID}"), 404, "BLOB_UPLOAD_UNKNOWN"
    ),
    "PATCH of an upload that never existed": Case(
        lambda c: c.call("PATCH", f"/v2/{R}/blobs/uploads/{UNKNOWN_ID}", data=TAIL),
        404,
        "BLOB_UPLOAD_UNKNOWN",
        blobs=(TAIL,),
    ),
    "closing PUT of an upload that never existed": Case(
        lambda c: c.call(
            "PUT", f"/v2/{R}/blobs/uploads/{UNKNOWN_ID}", params={"digest": sha256(TAIL)}, data=TAIL
        ),
        404,
        "BLOB_UPLOAD_UNKNOWN",
        blobs=(TAIL,),
    ),
    "DELETE of an upload that never existed": Case(
        lambda c: c.call("DELETE", f"/v2/{R}/blobs/uploads/{UNKNOWN_ID}"), 404, "BLOB_UPLOAD_UNKNOWN"
    ),
    "PATCH of a malformed upload id": Case(
        lambda c: c.call("PATCH", f"/v2/{R}/blobs/uploads/not-an-upload", data=TAIL),
        404,
        "BLOB_UPLOAD_UNKNOWN",
        blobs=(TAIL,),
    ),
    "status of another repository's upload": Case(
        lambda c: c.call("GET", f"/v2/{R}/blobs/uploads/{c.upload_id}"),
        404,
        "BLOB_UPLOAD_UNKNOWN",
        setup=open_upload(FIRST, OTHER),
        then=upload_at(A),
    ),
    "PATCH of another repository's upload": Case(
        lambda c: c.call(
            "PATCH",
            f"/v2/{R}/blobs/uploads/{c.upload_id}",
            data=TAIL,
            headers={"Content-Range": f"{A}-{A + len(TAIL) - 1}"},
        ),
        404,
        "BLOB_UPLOAD_UNKNOWN",
        setup=open_upload(FIRST, OTHER),
        then=upload_at(A),
        blobs=(FIRST, FIRST + TAIL),
    ),
    "closing PUT of another repository's upload": Case(
        lambda c: c.call("PUT", f"/v2/{R}/blobs/uploads/{c.upload_id}", params={"digest": sha256(FIRST)}),
        404,
        "BLOB_UPLOAD_UNKNOWN",
        setup=open_upload(FIRST, OTHER),
        then=upload_at(A),
        blobs=(FIRST,),
    ),
    "DELETE of another repository's upload": Case(
        lambda c: c.call("DELETE", f"/v2/{R}/blobs/uploads/{c.upload_id}"),
        404,
        "BLOB_UPLOAD_UNKNOWN",
        setup=open_upload(FIRST, OTHER),
        then=upload_at(A),
    ),
    # -- manifests over the size limit
    "manifest over the size limit": Case(
        put_manifest(OVERSIZED), 413, "SIZE_INVALID", setup=push_blobs(CONFIG, LAYER), manifests=(OVERSIZED,)
    ),
    "manifest over the size limit, streamed without a Content-Length": Case(
        lambda c: c.call(
            "PUT",
            f"/v2/{R}/manifests/v1",
            data=body_of(OVERSIZED, 4096)(),
            headers={"Content-Type": OCI_MANIFEST},
        ),
        413,
        "SIZE_INVALID",
        setup=push_blobs(CONFIG, LAYER),
        manifests=(OVERSIZED,),
    ),
    "Content-Length over the size limit on a small manifest": Case(
        lambda c: c.raw(
            "PUT",
            f"/v2/{R}/manifests/v1",
            MANIFEST,
            **{"Content-Type": OCI_MANIFEST, "Content-Length": str(LIMIT + 1)},
        ),
        413,
        "SIZE_INVALID",
        setup=push_blobs(CONFIG, LAYER),
        manifests=(MANIFEST,),
    ),
    # -- pagination
    "tags list with n=-1": Case(
        lambda c: c.call("GET", f"/v2/{R}/tags/list", params={"n": "-1"}),
        400,
        "UNSUPPORTED",
        setup=push_image(R),
    ),
    "tags list with n=ten": Case(
        lambda c: c.call("GET", f"/v2/{R}/tags/list", params={"n": "ten"}),
        400,
        "UNSUPPORTED",
        setup=push_image(R),
    ),
    "tags list with n=superscript two (a digit to str.isdigit, not to int)": Case(
        lambda c: c.call("GET", f"/v2/{R}/tags/list", params={"n": "²"}),
        400,
        "UNSUPPORTED",
        setup=push_image(R),
    ),
    "catalog with n=1.5": Case(
        lambda c: c.call("GET", "/v2/_catalog", params={"n": "1.5"}),
        400,
        "UNSUPPORTED",
        setup=push_image(R),
    ),
    # -- routes and methods
    "unknown route under /v2/": Case(lambda c: c.call("GET", f"/v2/{R}/nothing/here"), 404, "UNSUPPORTED"),
    "POST to a manifest": Case(
        lambda c: c.call("POST", f"/v2/{R}/manifests/v1", data=MANIFEST),
        405,
        "UNSUPPORTED",
        setup=push_blobs(CONFIG, LAYER),
        manifests=(MANIFEST,),
    ),
    "PATCH of a blob": Case(
        lambda c: c.call("PATCH", f"/v2/{R}/blobs/{sha256(LAYER)}", data=LAYER),
        405,
        "UNSUPPORTED",
        blobs=(LAYER,),
    ),
    "DELETE of /v2/": Case(lambda c: c.call("DELETE", "/v2/"), 405, "UNSUPPORTED"),
    # -- blobs that are not in this repository
    "blob never pushed": Case(
        lambda c: c.call("GET", f"/v2/{R}/blobs/{sha256(STRANGER)}"), 404, "BLOB_UNKNOWN", blobs=(STRANGER,)
    ),
    "blob pushed only to another repository": Case(
        lambda c: c.call("GET", f"/v2/{R}/blobs/{sha256(LAYER)}"),
        404,
        "BLOB_UNKNOWN",
        setup=push_blobs(LAYER, repository=OTHER),
        blobs=(LAYER,),
    ),
}


# -- fixtures: one app per backend, reset between cases ------------------------------------


@dataclass
class TableApp:
    client: TestClient[Any, Any]
    settings: Settings
    db: Database  # our own engine on the app's database, for the row checks
    redis: Redis

    async def reset(self) -> None:
        """Back to an empty registry: no rows, no Redis state, no stored bytes."""
        async with self.db.transaction() as conn:
            for table in reversed(metadata.sorted_tables):
                await conn.execute(delete(table))
        await self.redis.flushdb()
        for area in (paths.BLOBS, paths.UPLOADS):
            shutil.rmtree(self.settings.storage_root / area, ignore_errors=True)


@pytest.fixture(scope="module", params=backends.BACKENDS)
def table_database(
    request: pytest.FixtureRequest, _database_registry: dict[str, str], session_tmp: Path
) -> str:
    # Sync: making (and migrating) the session's database runs its own event loop.
    return session_database(request.param, _database_registry, session_tmp)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def table_app(
    table_database: str, _session_redis: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TableApp]:
    """The registry served as `serve_forever` serves it, once per backend for the whole table
    (an app per case would cost more than the cases)."""
    settings = registry_settings(
        tmp_path_factory.mktemp("bad-input"), table_database, _session_redis, manifest_max_bytes=LIMIT
    )
    client = TestClient(wire.ProductionServer(create_app(settings)))
    await client.start_server()
    app = TableApp(client, settings, Database(table_database, pool_size=1), Redis.from_url(_session_redis))
    try:
        yield app
    finally:
        await client.close()
        await app.reset()
        await app.db.close()
        await app.redis.aclose()


@pytest_asyncio.fixture(loop_scope="module")
async def ctx(table_app: TableApp) -> AsyncIterator[Ctx]:
    app = table_app
    yield Ctx(app.client, V2(app.client), app.settings.storage_root, app.redis)
    await wire.wait_idle(app.client.app)
    await app.reset()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    return registry_settings(tmp_path, database_url, redis_url, manifest_max_bytes=LIMIT)


# -- what every case must leave as it was ----------------------------------------------------


async def table_rows(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the event outbox, which the relay empties on its own time
    (a refused request writes no event: it writes nothing in the transaction that would)."""
    async with db.read() as conn:
        return {
            table.name: sorted((tuple(row) for row in await conn.execute(select(table))), key=repr)
            for table in metadata.sorted_tables
            if table.name != "event_outbox"
        }


async def visible(c: Ctx, case: Case) -> set[str]:
    """The URLs of what the case sent that is pullable now."""
    urls = [f"/v2/{R}/manifests/v1"]
    for repository in (R, OTHER):
        urls += [f"/v2/{repository}/blobs/{sha256(blob)}" for blob in case.blobs]
        urls += [f"/v2/{repository}/manifests/{sha256(manifest)}" for manifest in case.manifests]
    responses = await asyncio.gather(*(c.v2.request("HEAD", url) for url in urls))
    statuses = dict(zip(urls, (r.status for r in responses), strict=True))
    assert set(statuses.values()) <= {200, 404}, statuses
    return {url for url, status in statuses.items() if status == 200}


async def sessions_match_storage(c: Ctx) -> None:
    """Every stored upload has its session (a session gets storage with its first byte); no lock is held."""
    keys = {k.decode() async for k in c.redis.scan_iter(match=upload_key("*"))}
    assert {k for k in keys if k.endswith(":lock")} == set(), "an upload lock outlived its request"
    sessions = {k for k in keys if not k.endswith(":lock")}
    assert {upload_key(i) for i in c.upload_dirs()} <= sessions, "stored bytes outlived their upload session"


def hidden_paths(case: Case) -> set[str]:
    return {paths.blob_path(Digest.parse(sha256(x))) for x in (*case.blobs, *case.manifests)}


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("name", list(FAILURE_CODES))
async def test_failure_codes(name: str, ctx: Ctx, table_app: TableApp) -> None:
    case = FAILURE_CODES[name]
    if case.setup is not None:
        await case.setup(ctx)
    app = ctx.client.app
    errors, rows, files, seen = (
        wire.server_errors(app),
        await table_rows(table_app.db),
        ctx.blob_files(),
        await visible(ctx, case),
    )

    answer = await case.act(ctx)
    await wire.wait_idle(app)

    assert (answer.status, answer.code) == (case.status, case.code), answer
    assert await visible(ctx, case) == seen, "the case made something pullable"
    assert await table_rows(table_app.db) == rows, "the case changed SQL rows"
    new_files = ctx.blob_files() - files
    assert not new_files & hidden_paths(case), "bytes of what the case sent appeared at a blob path"
    assert new_files == set(), new_files
    await sessions_match_storage(ctx)
    if case.then is not None:
        await case.then(ctx)
    assert wire.server_errors(app) == errors, "the server answered a 5xx"


# -- the table's good twins: each case fails for the reason it names ---------------------------


@pytest.mark.asyncio(loop_scope="module")
async def test_good_inputs_are_accepted(ctx: Ctx) -> None:
    """What the cases spoil, done right, succeeds: the same blobs, ranges, manifests, names, n."""
    v2 = ctx.v2
    resp = await v2.request("POST", f"/v2/{R}/blobs/uploads/", params={"digest": sha256(LAYER)}, data=LAYER)
    assert resp.status == 201
    resp = await v2.request("POST", f"/v2/{R}/blobs/uploads/", params={"digest": sha512(CONFIG)}, data=CONFIG)
    assert resp.status == 201
    await v2.push_blob(R, CONFIG)
    await open_upload(FIRST)(ctx)
    resp = await v2.request(
        "PATCH", ctx.location, data=body_of(TAIL)(), headers={"Content-Range": f"{A}-{A + len(TAIL) - 1}"}
    )
    assert resp.status == 202, await resp.text()
    resp = await v2.request("PUT", ctx.location, params={"digest": sha256(FIRST + TAIL)})
    assert resp.status == 201, await resp.text()
    resp = await v2.request("GET", f"/v2/{R}/blobs/{sha256(FIRST + TAIL)}")
    assert await resp.read() == FIRST + TAIL
    for tag in ("v1", "_v1", "V1.x-y", "v" * 128):
        resp = await v2.push_manifest(R, tag, MANIFEST)
        assert resp.status == 201, (tag, await resp.text())
    resp = await v2.push_manifest(R, sha256(MANIFEST), MANIFEST)
    assert resp.status == 201
    just_fits = image_manifest(CONFIG, [LAYER], annotations={"padding": ""})
    just_fits = image_manifest(CONFIG, [LAYER], annotations={"padding": "x" * (LIMIT - len(just_fits))})
    assert len(just_fits) == LIMIT
    resp = await v2.push_manifest(R, "big", just_fits)
    assert resp.status == 201, await resp.text()
    resp = await v2.push_manifest(R, "index", INDEX, OCI_INDEX)
    assert resp.status == 201, await resp.text()
    resp = await v2.push_manifest(R, "typed", manifest_doc(artifactType="application/vnd.example+json"))
    assert resp.status == 201, await resp.text()
    long_name = "library/" + "a" * 247
    await v2.push_blob(long_name, LAYER)
    assert (await v2.request("HEAD", f"/v2/{long_name}/blobs/{sha256(LAYER)}")).status == 200
    resp = await v2.request("GET", f"/v2/{R}/tags/list", params={"n": "2"})
    assert resp.status == 200
    assert (await resp.json())["tags"] == ["V1.x-y", "_v1"]
    assert wire.server_errors(ctx.client.app) == {}


# -- a hang-up mid-PATCH, then the same upload resumed and completed -------------------------


@pytest.mark.parametrize(
    "server", [wire.ProductionServer, TestServer], ids=["handler-runs-on", "handler-cancelled"]
)
async def test_hang_up_mid_patch_then_resume(
    aiohttp_client: Any, settings: Settings, server: type[TestServer]
) -> None:
    """Only acknowledged bytes count: after the hang-up the status reports them, the stored file
    holds exactly them, and the upload resumes from there to the right digest."""
    client = await aiohttp_client(server(create_app(settings)))
    v2 = V2(client)
    resp = await v2.request("POST", f"/v2/{R}/blobs/uploads/")
    location = resp.headers["Location"]
    upload = location.rsplit("/", 1)[-1]
    resp = await v2.request("PATCH", location, data=FIRST, headers={"Content-Range": f"0-{A - 1}"})
    assert resp.status == 202

    head = wire.request_head(
        "PATCH", location, {"Content-Length": str(len(BIG)), "Content-Range": f"{A}-{A + len(BIG) - 1}"}
    )

    async def unacknowledged_bytes_on_disk() -> None:
        await wire.wait_until(
            lambda: stored_bytes(settings.storage_root, upload) > A, "unacknowledged bytes on disk"
        )

    await wire.hang_up(
        client.server.host, client.server.port, head, BIG[:SENT], before_close=unacknowledged_bytes_on_disk
    )
    await wire.wait_idle(client.app)

    resp = await v2.request("GET", location)
    assert resp.status == 204
    assert resp.headers["Range"] == f"0-{A - 1}"
    assert stored_bytes(settings.storage_root, upload) == A
    resp = await v2.request(
        "PATCH", location, data=io.BytesIO(BIG), headers={"Content-Range": f"{A}-{A + len(BIG) - 1}"}
    )
    assert resp.status == 202, await resp.text()
    assert resp.headers["Range"] == f"0-{A + len(BIG) - 1}"
    resp = await v2.request("PUT", location, params={"digest": sha256(FIRST + BIG + TAIL)}, data=TAIL)
    assert resp.status == 201, await resp.text()
    resp = await v2.request("GET", f"/v2/{R}/blobs/{sha256(FIRST + BIG + TAIL)}")
    assert resp.status == 200
    assert await resp.read() == FIRST + BIG + TAIL
    assert wire.server_errors(client.app) == {}


# -- more descriptors than one SQL statement may carry ---------------------------------------

# asyncpg (PostgreSQL) takes at most 32767 bound parameters per statement: a manifest linking
# 17,000 layers needs 34,000 in one multi-row insert, and 33,000 missing ones as many in one
# IN list. Both fit the 4 MiB default manifest limit. The other drivers have no such cap.
LINKED, ABSENT = 17_000, 33_000


@pytest.mark.parametrize("db_kind", ["postgresql"])
async def test_manifest_listing_more_layers_than_one_statement_takes(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    """A manifest with tens of thousands of layers, under the default size limit, is answered
    as any other: 201 when its layers are there, MANIFEST_BLOB_UNKNOWN when they are not."""
    settings = registry_settings(tmp_path, database_url, redis_url)
    client = await aiohttp_client(wire.ProductionServer(create_app(settings)))
    v2 = V2(client)

    def many_layers(seed: str, count: int) -> tuple[list[str], bytes]:
        layers = [f"sha256:{hashlib.sha256(f'{seed}{i}'.encode()).hexdigest()}" for i in range(count)]
        doc = json.loads(image_manifest(CONFIG, []))
        doc["layers"] = [{"mediaType": "x/y", "digest": digest, "size": 1} for digest in layers]
        body = json.dumps(doc, separators=(",", ":")).encode()
        assert len(body) <= settings.registry.manifest_max_bytes
        return layers, body

    async def put(reference: str, body: bytes) -> Any:
        return await v2.request(
            "PUT",
            f"/v2/{R}/manifests/{reference}",
            data=io.BytesIO(body),
            headers={"Content-Type": OCI_MANIFEST},
        )

    await v2.push_blob(R, CONFIG)
    present, body = many_layers("present", LINKED)
    db = Database(database_url, pool_size=1)
    try:
        async with db.transaction() as conn:  # the layers, as if pushed: rows and links
            repository_id = (await conn.execute(select(t.repository.c.id))).scalar_one()
            now = utcnow()
            await conn.execute(insert(t.blob), [{"digest": d, "size": 1, "created_at": now} for d in present])
            ids = (await conn.execute(select(t.blob.c.id).where(t.blob.c.size == 1))).scalars().all()
            await conn.execute(
                insert(t.repository_blob),
                [{"repository_id": repository_id, "blob_id": i, "created_at": now} for i in ids],
            )
        resp = await put("many", body)
        assert resp.status == 201, await resp.text()
        async with db.read() as conn:
            count = select(func.count()).select_from(t.manifest_blob)
            assert (await conn.execute(count)).scalar_one() == LINKED + 1
    finally:
        await db.close()
    resp = await v2.request("GET", f"/v2/{R}/manifests/many")
    assert await resp.read() == body

    _absent, body = many_layers("absent", ABSENT)
    resp = await put("missing", body)
    assert resp.status == 400, await resp.text()
    assert await error_code(resp) == "MANIFEST_BLOB_UNKNOWN"
    assert wire.server_errors(client.app) == {}


@pytest.mark.parametrize("db_kind", ["sqlite"])
async def test_a_malformed_chunk_mid_body_is_a_400(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    """A chunked body whose framing breaks after good chunks (a client talking to the registry
    directly, no proxy in front): the read fails in the handler, and the client gets 400
    BLOB_UPLOAD_INVALID, not a 500; the upload keeps only what was committed before."""
    settings = registry_settings(tmp_path, database_url, redis_url)
    client = await aiohttp_client(wire.ProductionServer(create_app(settings)))
    v2 = V2(client)
    start = await v2.request("POST", f"/v2/{R}/blobs/uploads/")
    location = start.headers["Location"]
    head = wire.request_head(
        "PATCH", location, {"Transfer-Encoding": "chunked", "Content-Type": "application/octet-stream"}
    )
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(head + b"4\r\nabcd\r\n")
        await writer.drain()
        await wire.wait_busy(client.app)  # the handler is reading the body
        writer.write(b"zz\r\nnot a chunk\r\n0\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), wire.TIMEOUT)
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"400", answer
    assert b"BLOB_UPLOAD_INVALID" in rest, answer
    await wire.wait_idle(client.app)
    status = await v2.request("GET", location)
    assert status.status == 204
    assert status.headers["Range"] == "0-0"
    assert wire.server_errors(client.app) == {}
