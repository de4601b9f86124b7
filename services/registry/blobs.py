"""Blobs as a repository sees them: whether one may be pulled there, and unlinking one."""

from __future__ import annotations

from wharf_registry import metadata
from wharf_registry.datatypes import Blob
from wharf_shared import events
from wharf_shared.db.engine import Database
from wharf_shared.digests import Digest
from wharf_shared.errors.domain import BlobNotFound
from wharf_shared.events import EventPublisher


class Blobs:
    def __init__(self, db: Database, publisher: EventPublisher) -> None:
        self._db = db
        self._events = publisher

    async def find(self, repository: str, digest: Digest) -> Blob:
        """The blob, if it is linked to the repository (pullable there)."""
        async with self._db.read() as conn:
            blob = await metadata.find_blob(conn, repository, str(digest))
        if blob is None:
            raise BlobNotFound(digest=str(digest))
        return blob

    async def delete(self, repository: str, digest: Digest) -> None:
        """Unlink the blob from the repository; its bytes are garbage collection's to free."""
        removed = await self._db.run(lambda conn: metadata.unlink_blob(conn, repository, str(digest)))
        if not removed:
            raise BlobNotFound(digest=str(digest))
        await self._events.publish(events.DELETE, repository=repository, digest=str(digest), kind="blob")
