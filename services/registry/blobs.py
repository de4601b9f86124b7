"""Blobs as a repository sees them: whether one may be pulled there, and unlinking one."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_registry import metadata
from wharf_registry.datatypes import Blob
from wharf_shared import events
from wharf_shared.db.engine import Database
from wharf_shared.digests import Digest
from wharf_shared.errors.domain import BlobNotFound
from wharf_shared.events import EventRelay, new_event, write_events


class Blobs:
    def __init__(self, db: Database, relay: EventRelay) -> None:
        self._db = db
        self._relay = relay

    async def find(self, repository: str, digest: Digest) -> Blob:
        """The blob, if it is linked to the repository (pullable there)."""
        async with self._db.read() as conn:
            blob = await metadata.find_blob(conn, repository, str(digest))
        if blob is None:
            raise BlobNotFound(digest=str(digest))
        return blob

    async def delete(self, repository: str, digest: Digest, *, operator: str = events.ANONYMOUS) -> None:
        """Unlink the blob from the repository (refused while a manifest there references it);
        its bytes are garbage collection's to free. The delete event commits with the unlink."""
        event = new_event(
            events.DELETE, repository=repository, digest=str(digest), kind="blob", operator=operator
        )

        async def unlink(conn: AsyncConnection) -> bool:
            removed = await metadata.unlink_blob(conn, repository, str(digest))
            if removed:
                await write_events(conn, [event])
            return removed

        if not await self._db.run(unlink):
            raise BlobNotFound(digest=str(digest))
        self._relay.wake()
