"""Manifests and tags: pull, push and delete, in no protocol's terms.

`/v2/` handlers call these, and so will the management API and replication; each surface maps
the domain errors raised here to its own error model. A pushed manifest becomes visible in one
transaction (its row, its references, its tag, its event in the outbox); after the commit the
manifest cache is bumped and the event relay woken. Pulls go to the event stream directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_registry import metadata
from wharf_registry.cache import CachedManifest, ManifestCache
from wharf_registry.datatypes import Manifest
from wharf_registry.manifest_parser import parse_manifest
from wharf_shared import events
from wharf_shared import media_types as mt
from wharf_shared.db.engine import Database
from wharf_shared.digests import Digest, DigestError, is_digest
from wharf_shared.errors.domain import (
    DigestMismatch,
    InvalidDigest,
    InvalidTag,
    ManifestNotFound,
    MissingReferences,
    TooLarge,
)
from wharf_shared.events import EventPublisher, EventRelay, new_event, write_events
from wharf_shared.logging import get_logger
from wharf_shared.references import is_valid_tag
from wharf_shared.storage import paths
from wharf_shared.storage.base import PathNotFoundError, StorageDriver

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Reference:
    """A manifest reference: a tag, or a digest."""

    tag: str | None
    digest: Digest | None

    def __str__(self) -> str:
        return self.tag if self.tag is not None else str(self.digest)

    @classmethod
    def parse(cls, value: str) -> Reference:
        """A tag or a digest; InvalidDigest / InvalidTag otherwise."""
        if is_digest(value):
            try:
                return cls(None, Digest.parse(value))
            except DigestError as exc:
                raise InvalidDigest(str(exc), digest=value) from None
        if not is_valid_tag(value):
            raise InvalidTag(tag=value[:200])
        return cls(value, None)


@dataclass(frozen=True, slots=True)
class PushedManifest:
    digest: str
    media_type: str
    size: int
    subject: str | None  # the digest of the manifest's subject, if it names one


class Manifests:
    def __init__(
        self,
        db: Database,
        storage: StorageDriver,
        cache: ManifestCache,
        publisher: EventPublisher,
        relay: EventRelay,
        *,
        max_bytes: int,
    ) -> None:
        self._db = db
        self._storage = storage
        self._cache = cache
        self._events = publisher
        self._relay = relay
        self.max_bytes = max_bytes

    async def get(
        self,
        repository: str,
        reference: str,
        *,
        accept: frozenset[str] = frozenset(),
        pull: bool = False,
        operator: str = events.ANONYMOUS,
    ) -> CachedManifest:
        """The manifest a tag or digest names. A reference that is no tag names nothing (the
        conformance suite asks for "unknown", not "invalid"; a malformed digest stays invalid).
        `accept`: the media types the client
        takes (an index is not given to a client that lists manifest types but not its own);
        `pull`: count it as a pull, by `operator` (a username, "" for anonymous)."""
        try:
            ref = Reference.parse(reference)
        except InvalidTag:
            raise ManifestNotFound(name=repository, reference=reference[:200]) from None
        key = str(ref)
        generation, entry = await self._cache.get(repository, key)
        if entry is None:
            async with self._db.read() as conn:
                found = await metadata.find_manifest(conn, repository, key, by_digest=ref.digest is not None)
            if found is None:
                raise ManifestNotFound(name=repository, reference=key)
            try:
                body = await self._storage.get_content(paths.blob_path(Digest.parse(found.digest)))
            except PathNotFoundError:
                log.error("manifest_bytes_missing", repository=repository, digest=found.digest)
                raise ManifestNotFound(name=repository, reference=key) from None
            entry = CachedManifest(found.digest, found.media_type, body)
            await self._cache.put(repository, generation, key, entry)
        _negotiate(accept, entry)
        if pull:
            self._events.publish_soon(
                events.PULL,
                repository=repository,
                digest=entry.digest,
                tag=ref.tag,
                media_type=entry.media_type,
                operator=operator,
            )
        return entry

    async def put(
        self,
        repository: str,
        reference: str,
        body: bytes,
        content_type: str | None,
        *,
        operator: str = events.ANONYMOUS,
    ) -> PushedManifest:
        """Validate a manifest, store its bytes and make it (and its tag) visible; `operator`
        (a username, "" for anonymous) goes into the push event."""
        ref = Reference.parse(reference)
        if len(body) > self.max_bytes:
            raise TooLarge(limit=self.max_bytes, size=len(body))
        digest = Digest.of(body, ref.digest.algorithm if ref.digest else "sha256")
        if ref.digest is not None and digest != ref.digest:
            raise DigestMismatch(digest=str(ref.digest), actual=str(digest))
        parsed = parse_manifest(body, content_type, digest)
        # Checked before the bytes are stored, so that a refused manifest leaves none behind.
        async with self._db.read() as conn:
            missing = await metadata.missing_references(conn, repository, parsed)
        if missing:
            raise MissingReferences(missing)
        path = paths.blob_path(digest)
        try:
            await self._storage.stat_file(path)
        except PathNotFoundError:
            await self._storage.put_content(path, body)
        event = new_event(
            events.PUSH,
            repository=repository,
            digest=parsed.digest,
            tag=ref.tag,
            media_type=parsed.media_type,
            size=parsed.size,
            operator=operator,
        )

        async def write(conn: AsyncConnection) -> Manifest:
            manifest = await metadata.put_manifest(conn, repository, parsed, ref.tag)
            await write_events(conn, [event])
            return manifest

        try:
            manifest = await self._db.run(write)
        except MissingReferences as exc:
            if exc.digests:
                raise
            # A blob was unlinked while the manifest was being written; name what is gone now.
            async with self._db.read() as conn:
                missing = await metadata.missing_references(conn, repository, parsed)
            raise MissingReferences(missing or sorted({d.digest for d in parsed.blobs})) from exc
        self._relay.wake()
        await self._cache.invalidate(repository)
        subject = parsed.subject.digest if parsed.subject is not None else None
        return PushedManifest(manifest.digest, manifest.media_type, manifest.size, subject)

    async def delete(self, repository: str, reference: str, *, operator: str = events.ANONYMOUS) -> Manifest:
        """Delete a manifest (and the tags on it) by digest, or just a tag by its name; by
        `operator` (a username, "" for anonymous)."""
        ref = Reference.parse(reference)
        key = str(ref)
        kind = "manifest" if ref.digest is not None else "tag"

        async def remove(conn: AsyncConnection) -> Manifest | None:
            if ref.digest is not None:
                found = await metadata.delete_manifest(conn, repository, key)
            else:
                found = await metadata.delete_tag(conn, repository, key)
            if found is not None:
                event = new_event(
                    events.DELETE,
                    repository=repository,
                    digest=found.digest,
                    tag=ref.tag,
                    kind=kind,
                    operator=operator,
                )
                await write_events(conn, [event])
            return found

        found = await self._db.run(remove)
        if found is None:
            raise ManifestNotFound(name=repository, reference=key)
        self._relay.wake()
        await self._cache.invalidate(repository)
        return found


def _negotiate(accept: frozenset[str], entry: CachedManifest) -> None:
    """An index is not served to a client whose Accept lists manifest types but not this one."""
    if entry.media_type not in mt.INDEXES:
        return
    if not accept & mt.MANIFESTS or entry.media_type in accept or "*/*" in accept:
        return
    raise ManifestNotFound(
        f"the manifest is a {entry.media_type}, which the Accept header does not include",
        digest=entry.digest,
        mediaType=entry.media_type,
    )
