"""Blob GETs sent from the storage the registry writes, with sendfile, keeping the bytes out of
Python (wharf_shared.accel tells the exchange).

The proxy asks for an internal redirect on `GET /v2/<name>/blobs/<digest>` only. The registry
authorizes the request as ever and names a storage-relative path; that path is trusted no
further than its shape: it must be the data file of the very digest the client asked for,
and once resolved (symlinks followed) a regular file under the storage root with the size
the registry recorded. Anything else, or a file that cannot be opened, is `Unavailable`
before a byte reaches the client, and the request is forwarded again without the offer (the
registry then streams the blob itself). The file goes out as the registry's own would
(wharf_shared.sendfile: aiohttp's FileResponse for Range, conditional requests and 416).
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from multidict import CIMultiDict, MultiMapping

from wharf_shared.accel import ACCEL_REDIRECT, BLOB_LENGTH, REDIRECT_PREFIX
from wharf_shared.digests import Digest, DigestError
from wharf_shared.sendfile import BlobFileResponse
from wharf_shared.storage.paths import blob_path

CHUNK = 1024 * 1024  # only for a transport without sendfile (TLS): read a MiB at a time
# `/v2/<name>/blobs/<digest>`; upload paths (`blobs/uploads/…`) have another slash.
_BLOB_GET = re.compile(r"^/v2/.+/blobs/(?P<digest>[^/]+)$")


class Unavailable(Exception):
    """The redirect cannot be served from here: refused, or the file cannot be opened."""


class LocalBlobs:
    """The storage root as this host sees it (resolved once: it may itself be a symlink)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def offer(self, request: web.Request) -> Offer | None:
        """For a blob GET (a valid digest), the offer to serve it from here; None for anything else."""
        if request.method != "GET":
            return None
        match = _BLOB_GET.match(request.path)
        if match is None:
            return None
        try:
            return Offer(self.root, Digest.parse(match.group("digest")))
        except DigestError:
            return None  # the registry answers DIGEST_INVALID


@dataclass(frozen=True, slots=True)
class Offer:
    root: Path
    digest: Digest

    async def respond(self, upstream: MultiMapping[str], headers: CIMultiDict[str]) -> web.FileResponse:
        """The file the upstream's redirect names, as a response with `headers` (the upstream's,
        internal ones removed); Unavailable unless `open_blob` accepts it."""
        target = upstream.getall(ACCEL_REDIRECT, [])
        declared = upstream.getall(BLOB_LENGTH, [])
        if len(target) != 1 or len(declared) != 1 or not (declared[0].isascii() and declared[0].isdigit()):
            raise Unavailable(f"redirect {target!r} with blob length {declared!r}")
        path = await asyncio.to_thread(open_blob, self.root, target[0], self.digest, int(declared[0]))
        return BlobFileResponse(path, chunk_size=CHUNK, headers=headers)


def open_blob(root: Path, target: str, digest: Digest, length: int) -> Path:
    """The real path of the file a redirect names, checked: the blob data path of `digest`
    (so no `..`, no absolute path, no other blob), resolved under `root` (no symlink out of it),
    a regular file of `length` bytes that this process can open. Blocking: run it in a thread."""
    if not target.startswith(REDIRECT_PREFIX):
        raise Unavailable(f"redirect outside {REDIRECT_PREFIX}: {target[:200]!r}")
    relative = target[len(REDIRECT_PREFIX) :]
    if relative != blob_path(digest):
        raise Unavailable(f"redirect to {relative[:200]!r}, not the data of {digest}")
    real = Path(os.path.realpath(root / relative))
    if not real.is_relative_to(root):
        raise Unavailable(f"{relative} resolves outside the storage root")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise Unavailable(f"cannot open {relative}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        raise Unavailable(f"{relative} is not a regular file")
    if info.st_size != length:
        raise Unavailable(f"{relative} holds {info.st_size} bytes, the registry says {length}")
    return real
