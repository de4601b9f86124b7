"""One artifact from a source registry to a destination registry, byte for byte (digests stay
the same), and its deletion at a destination.

A copy reads the source manifest (by digest or tag). An index copies each child manifest first
(by digest, with its blobs), then itself. Each blob (config, layers) is, in this order of
preference: already at the destination repository (HEAD), mounted from another repository of
the destination that holds it (`MountHints`), or streamed: read from the source in pieces and
written to the destination in PATCHes of `CHUNK` bytes (the destination checks the digest at the
final PUT). Never a whole blob in memory. The manifest is then put by each tag (or by digest).

Resume: the upload's URL is kept in `resume[digest]` after every PATCH; a later attempt asks the
destination how much the upload holds and goes on from there with a `Range` read of the source
(a fresh upload when the destination lost it or refuses the offset).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from wharf_jobservice.replication.progress import MountHints, Progress
from wharf_shared import media_types
from wharf_shared.digests import is_digest
from wharf_shared.remote import BlobStream, Manifest, NotFound, RemoteError, RemoteRegistry, Unauthorized

__all__ = ["CHUNK", "CopyResult", "MountHints", "Progress", "copy_artifact", "delete_artifact"]

CHUNK = 8 * 1024 * 1024  # bytes a PATCH carries; the stop check runs between PATCHes
_PIECE = 64 * 1024


@dataclass
class CopyResult:
    digest: str
    blobs_copied: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    bytes_copied: int = 0
    skipped: bool = False  # nothing put: the destination had it, or its tags point elsewhere


@dataclass
class _Copy:
    src: RemoteRegistry
    src_repo: str
    dst: RemoteRegistry
    dst_repo: str
    progress: Progress
    mounts: MountHints | None
    resume: MutableMapping[str, str] | None
    result: CopyResult
    done: set[str]  # blobs and manifests already at the destination in this copy

    async def manifest_tree(self, manifest: Manifest) -> None:
        """A manifest's blobs, or an index's children with theirs (the manifest itself not put)."""
        doc = _document(manifest)
        if manifest.media_type in media_types.INDEXES or "manifests" in doc:
            for child in doc.get("manifests") or []:
                digest = child.get("digest") if isinstance(child, dict) else None
                if not isinstance(digest, str) or digest in self.done:
                    continue
                await self.progress.check()
                if await self.dst.head_manifest(self.dst_repo, digest) is None:
                    found = await self.src.get_manifest(self.src_repo, digest)
                    await self.manifest_tree(found)
                    await self.put(found, digest)
                self.done.add(digest)
            return
        for descriptor in [doc.get("config"), *(doc.get("layers") or [])]:
            if isinstance(descriptor, dict) and not descriptor.get("urls"):  # foreign layers stay out
                await self.blob(descriptor)

    async def put(self, manifest: Manifest, reference: str) -> None:
        digest = await self.dst.put_manifest(self.dst_repo, reference, manifest.media_type, manifest.body)
        if digest != manifest.digest:
            raise RemoteError(
                f"{self.dst_repo}:{reference}: the destination computed {digest}, not {manifest.digest}"
            )

    async def blob(self, descriptor: dict[str, Any]) -> None:
        digest = descriptor.get("digest")
        size = descriptor.get("size")
        if not isinstance(digest, str):
            raise RemoteError(f"{self.src_repo}: a descriptor without a digest")
        if digest in self.done:
            return
        await self.progress.check()
        if await self.dst.has_blob(self.dst_repo, digest):
            self.result.blobs_skipped += 1
        elif await self.mount(digest):
            self.result.blobs_mounted += 1
        else:
            await self.stream(digest, size if isinstance(size, int) and size >= 0 else None)
            self.result.blobs_copied += 1
        self.done.add(digest)
        if self.mounts is not None:
            self.mounts.put(digest, self.dst_repo)

    async def mount(self, digest: str) -> bool:
        source = self.mounts.get(digest) if self.mounts is not None else None
        if source is None or source == self.dst_repo:
            return False
        try:
            return await self.dst.mount_blob(self.dst_repo, digest, source)
        except RemoteError as exc:
            if exc.transient:
                raise
            # The hint is stale, or these credentials may not read there: send the bytes instead.
            await self.progress.log(f"{digest}: no mount from {source} ({exc}); streaming it")
            return False

    async def stream(self, digest: str, size: int | None) -> None:
        url, offset = await self._resumed(digest)
        if url is None:
            url, offset = await self.dst.start_upload(self.dst_repo), 0
            self._remember(digest, url)
        try:
            url = await self._send(digest, size, url, offset)
        except RemoteError as exc:
            if offset == 0 or exc.status != 416:
                raise
            # The destination holds other than what it said (an ambiguous "0-0"): start afresh.
            await self.progress.log(f"{digest}: the destination refused offset {offset}; uploading afresh")
            url = await self.dst.start_upload(self.dst_repo)
            self._remember(digest, url)
            url = await self._send(digest, size, url, 0)
        await self.dst.finish_upload(self.dst_repo, url, digest)
        if self.resume is not None:
            self.resume.pop(digest, None)

    async def _resumed(self, digest: str) -> tuple[str | None, int]:
        saved = self.resume.get(digest) if self.resume is not None else None
        if saved is None:
            return None, 0
        committed = await self.dst.upload_offset(self.dst_repo, saved)
        if committed is None:
            await self.progress.log(f"{digest}: the destination lost the upload to resume; uploading afresh")
            return None, 0
        await self.progress.log(f"{digest}: resuming the upload at byte {committed}")
        return saved, committed

    def _remember(self, digest: str, url: str) -> None:
        if self.resume is not None:
            self.resume[digest] = url

    async def _send(self, digest: str, size: int | None, url: str, offset: int) -> str:
        async with self.src.open_blob(self.src_repo, digest, offset) as stream:
            total = size if size is not None else stream.size
            if total is None:
                raise RemoteError(f"{self.src_repo}@{digest}: the blob's size is unknown")
            while offset < total:
                await self.progress.check()
                length = min(CHUNK, total - offset)
                url = await self.dst.patch_upload(
                    self.dst_repo, url, self._pieces(stream, length, digest), offset, length
                )
                offset += length
                self._remember(digest, url)
        return url

    async def _pieces(self, stream: BlobStream, length: int, digest: str) -> AsyncIterator[bytes]:
        left = length
        while left > 0:
            piece = await stream.read(min(_PIECE, left))
            if not piece:
                raise RemoteError(f"{self.src_repo}@{digest}: the source's blob ended early", transient=True)
            left -= len(piece)
            self.result.bytes_copied += len(piece)
            self.progress.add_bytes(len(piece))
            yield piece


def _document(manifest: Manifest) -> dict[str, Any]:
    try:
        doc = json.loads(manifest.body)
    except ValueError as exc:
        raise RemoteError(f"manifest {manifest.digest} is not JSON") from exc
    if not isinstance(doc, dict):
        raise RemoteError(f"manifest {manifest.digest} is not a JSON object")
    if manifest.media_type in media_types.SCHEMA1 or doc.get("schemaVersion") == 1:
        raise RemoteError(f"manifest {manifest.digest} is Docker schema 1, which is not replicated")
    return doc


async def _targets(
    dst: RemoteRegistry, dst_repo: str, digest: str, tags: Sequence[str], override: bool, progress: Progress
) -> list[str]:
    """The references to put the manifest under: each tag not there yet (or, with `override`,
    pointing elsewhere), or the digest when untagged and missing."""
    if not tags:
        if await dst.head_manifest(dst_repo, digest) is not None:
            await progress.log(f"{dst_repo}@{digest} is at the destination already")
            return []
        return [digest]
    targets = []
    for tag in tags:
        found = await dst.head_manifest(dst_repo, tag)
        if found is None:
            targets.append(tag)
        elif found[0] == digest:
            await progress.log(f"{dst_repo}:{tag} is {digest} at the destination already")
        elif override:
            await progress.log(f"{dst_repo}:{tag} points at {found[0]}; overriding it with {digest}")
            targets.append(tag)
        else:
            await progress.log(f"{dst_repo}:{tag} points at {found[0]} and override is off: left alone")
    return targets


async def copy_artifact(
    src: RemoteRegistry,
    src_repo: str,
    reference: str,
    dst: RemoteRegistry,
    dst_repo: str,
    *,
    tags: Sequence[str],
    override: bool,
    progress: Progress,
    mounts: MountHints | None = None,
    resume: MutableMapping[str, str] | None = None,
) -> CopyResult:
    """Copy `src_repo@reference` (a digest or a tag) to `dst_repo`, under `tags` (none: by
    digest only). RemoteError (with `transient`) when a registry fails; what `progress.check`
    raises, when it does."""
    manifest = await src.get_manifest(src_repo, reference)
    _document(manifest)  # schema 1 and garbage fail before anything is written
    result = CopyResult(manifest.digest)
    targets = await _targets(dst, dst_repo, manifest.digest, tags, override, progress)
    if not targets:
        result.skipped = True
        return result
    copy = _Copy(src, src_repo, dst, dst_repo, progress, mounts, resume, result, set())
    if tags and await dst.head_manifest(dst_repo, manifest.digest) is not None:
        await progress.log(f"{dst_repo}@{manifest.digest} is at the destination already; tagging it")
    else:
        await copy.manifest_tree(manifest)
    for target in targets:
        await copy.put(manifest, target)
    shown = ", ".join(targets) if tags else "its digest"
    await progress.log(
        f"{src_repo}@{manifest.digest} → {dst_repo} ({shown}): {result.blobs_copied} blobs copied "
        f"({result.bytes_copied} bytes), {result.blobs_mounted} mounted, {result.blobs_skipped} there already"
    )
    return result


async def delete_artifact(dst: RemoteRegistry, dst_repo: str, reference: str, progress: Progress) -> bool:
    """Delete `dst_repo@reference` at the destination. A tag is deleted alone where the registry
    deletes tags (Wharf, Harbor: OCI 1.1); one that refuses (distribution deletes manifests by
    digest only) has the tag's manifest deleted, with every tag it has there. False when it was
    gone already."""
    digest = reference
    if not is_digest(reference):
        found = await dst.head_manifest(dst_repo, reference)
        if found is None:
            await progress.log(f"{dst_repo}:{reference} is not at the destination: nothing to delete")
            return False
        digest = found[0]
        try:
            await dst.delete_manifest(dst_repo, reference)
        except NotFound:
            await progress.log(f"{dst_repo}:{reference} is not at the destination: nothing to delete")
            return False
        except Unauthorized:
            raise
        except RemoteError as exc:
            if exc.transient:
                raise
            await progress.log(f"the destination does not delete tags alone ({exc}): deleting the manifest")
        else:
            await progress.log(f"deleted the tag {dst_repo}:{reference} (it pointed at {digest})")
            return True
    try:
        await dst.delete_manifest(dst_repo, digest)
    except NotFound:
        await progress.log(f"{dst_repo}@{digest} is not at the destination: nothing to delete")
        return False
    await progress.log(f"deleted {dst_repo}@{digest}" + (f" ({reference})" if digest != reference else ""))
    return True
