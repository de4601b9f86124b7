"""Manifests, tags and repositories as rows: the reads and deletes that both the registry (`/v2/`)
and the management API (`/api/`) make, so each thing is done one way (SQLAlchemy Core).

Functions take a connection (reads) or run inside the caller's transaction (writes) and return
frozen values, never rows. The registry's push path (`wharf_registry.metadata`) writes the same
tables; deleting here only removes references: the bytes are left to garbage collection.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.errors.domain import ManifestReferenced


@dataclass(frozen=True, slots=True)
class Repository:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class Manifest:
    id: int
    repository_id: int
    digest: str
    media_type: str
    size: int


async def get_repository(conn: AsyncConnection, name: str) -> Repository | None:
    row = (await conn.execute(select(t.repository.c.id).where(t.repository.c.name == name))).first()
    return Repository(row.id, name) if row else None


MANIFEST_COLUMNS = (
    t.manifest.c.id,
    t.manifest.c.repository_id,
    t.manifest.c.digest,
    t.manifest.c.media_type,
    t.manifest.c.size,
)


async def find_manifest(
    conn: AsyncConnection, repository: str, reference: str, *, by_digest: bool
) -> Manifest | None:
    """The manifest a digest (`by_digest`) or a tag names in the repository."""
    joined = t.manifest.join(t.repository, t.repository.c.id == t.manifest.c.repository_id)
    if by_digest:
        query = (
            select(*MANIFEST_COLUMNS)
            .select_from(joined)
            .where(t.repository.c.name == repository, t.manifest.c.digest == reference)
        )
    else:
        query = (
            select(*MANIFEST_COLUMNS)
            .select_from(joined.join(t.tag, t.tag.c.manifest_id == t.manifest.c.id))
            .where(t.repository.c.name == repository, t.tag.c.name == reference)
        )
    row = (await conn.execute(query)).first()
    return Manifest(row.id, row.repository_id, row.digest, row.media_type, row.size) if row else None


async def delete_manifest(conn: AsyncConnection, repository: str, digest: str) -> Manifest | None:
    """Delete a manifest and the tags on it; refused while an index in the repository lists it."""
    found = await find_manifest(conn, repository, digest, by_digest=True)
    if found is None:
        return None
    parents = (
        await conn.execute(
            select(func.count()).select_from(t.manifest_child).where(t.manifest_child.c.child_id == found.id)
        )
    ).scalar_one()
    if parents:
        raise ManifestReferenced(digest=digest, indexes=parents)
    await conn.execute(delete(t.tag).where(t.tag.c.manifest_id == found.id))
    await conn.execute(delete(t.manifest_blob).where(t.manifest_blob.c.manifest_id == found.id))
    await conn.execute(delete(t.manifest_child).where(t.manifest_child.c.parent_id == found.id))
    try:
        await conn.execute(delete(t.manifest).where(t.manifest.c.id == found.id))
    except IntegrityError as exc:  # an index referencing it arrived meanwhile
        raise ManifestReferenced(digest=digest) from exc
    return found


async def delete_tag(conn: AsyncConnection, repository: str, tag: str) -> Manifest | None:
    """Delete a tag (not its manifest); the manifest it pointed at, or None when there was no tag."""
    found = await find_manifest(conn, repository, tag, by_digest=False)
    if found is None:
        return None
    await conn.execute(
        delete(t.tag).where(and_(t.tag.c.repository_id == found.repository_id, t.tag.c.name == tag))
    )
    return found


async def delete_repository(conn: AsyncConnection, repository_id: int) -> int:
    """Delete a repository with its tags, manifests and blob links, children before parents (no
    cascade is relied on: MySQL checks foreign keys row by row, SQLite may have them off); the
    number of manifests removed. The repository row is locked first, the order the registry's
    push takes (it upserts the row before its manifest), so a push into it waits, then makes the
    repository afresh rather than deadlocking or leaving rows behind."""
    await conn.execute(select(t.repository.c.id).where(t.repository.c.id == repository_id).with_for_update())
    manifests = select(t.manifest.c.id).where(t.manifest.c.repository_id == repository_id)
    count = (
        await conn.execute(
            select(func.count()).select_from(t.manifest).where(t.manifest.c.repository_id == repository_id)
        )
    ).scalar_one()
    await conn.execute(delete(t.tag).where(t.tag.c.repository_id == repository_id))
    await conn.execute(delete(t.manifest_child).where(t.manifest_child.c.parent_id.in_(manifests)))
    await conn.execute(delete(t.manifest_blob).where(t.manifest_blob.c.repository_id == repository_id))
    await conn.execute(delete(t.manifest).where(t.manifest.c.repository_id == repository_id))
    await conn.execute(delete(t.repository_blob).where(t.repository_blob.c.repository_id == repository_id))
    await conn.execute(delete(t.repository).where(t.repository.c.id == repository_id))
    return int(count)
