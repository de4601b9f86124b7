"""The registry model: every SQL read and write the registry makes, on SQLAlchemy Core.

Functions take a connection (reads) or run inside the caller's transaction (writes) and
return values from `datatypes`. The only place the registry's tables are queried.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import TypeVar

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_registry.datatypes import Blob, Descriptor, Manifest, ParsedManifest, Repository
from wharf_shared.db import tables as t
from wharf_shared.db.engine import insert_ignore, insert_or_get_id, upsert
from wharf_shared.db.types import utcnow
from wharf_shared.errors.domain import BlobReferenced, ManifestReferenced, MissingReferences
from wharf_shared.media_types import IMAGE_MANIFESTS

_T = TypeVar("_T")


async def get_repository(conn: AsyncConnection, name: str) -> Repository | None:
    row = (await conn.execute(select(t.repository.c.id).where(t.repository.c.name == name))).first()
    return Repository(row.id, name) if row else None


async def ensure_repository(conn: AsyncConnection, name: str) -> Repository:
    existing = await get_repository(conn, name)
    if existing is not None:
        return existing
    now = utcnow()
    repo_id = await insert_or_get_id(
        conn, t.repository, {"name": name, "created_at": now, "updated_at": now}, unique=("name",)
    )
    return Repository(repo_id, name)


async def find_blob(conn: AsyncConnection, repository: str, digest: str) -> Blob | None:
    """The blob, if it is linked to the repository (pullable there)."""
    query = (
        select(t.blob.c.size)
        .select_from(
            t.repository.join(t.repository_blob, t.repository_blob.c.repository_id == t.repository.c.id).join(
                t.blob, t.blob.c.id == t.repository_blob.c.blob_id
            )
        )
        .where(t.repository.c.name == repository, t.blob.c.digest == digest)
    )
    row = (await conn.execute(query)).first()
    return Blob(digest, row.size) if row else None


async def link_blob(conn: AsyncConnection, repository: str, digest: str, size: int) -> Blob:
    """Record a verified blob and make it visible in the repository (idempotent)."""
    repo = await ensure_repository(conn, repository)
    now = utcnow()
    blob_id = await insert_or_get_id(
        conn, t.blob, {"digest": digest, "size": size, "created_at": now}, unique=("digest",)
    )
    await insert_ignore(
        conn, t.repository_blob, {"repository_id": repo.id, "blob_id": blob_id, "created_at": now}
    )
    return Blob(digest, size)


async def unlink_blob(conn: AsyncConnection, repository: str, digest: str) -> bool:
    """Unlink a blob from the repository; refused (BlobReferenced) while a manifest there
    references it. The foreign key from `manifest_blob` to the link holds the line against a
    manifest push that commits in between: the delete waits for it, then fails."""
    repo = await get_repository(conn, repository)
    if repo is None:
        return False
    blob_id = (await conn.execute(select(t.blob.c.id).where(t.blob.c.digest == digest))).scalar()
    if blob_id is None:
        return False
    referencing = (
        await conn.execute(
            select(func.count())
            .select_from(t.manifest_blob)
            .where(t.manifest_blob.c.repository_id == repo.id, t.manifest_blob.c.blob_id == blob_id)
        )
    ).scalar_one()
    if referencing:
        raise _blob_referenced(digest, referencing)
    try:
        result = await conn.execute(
            delete(t.repository_blob).where(
                t.repository_blob.c.repository_id == repo.id, t.repository_blob.c.blob_id == blob_id
            )
        )
    except IntegrityError as exc:  # a manifest referencing it committed meanwhile
        raise _blob_referenced(digest, None) from exc
    return result.rowcount > 0


def _blob_referenced(digest: str, manifests: int | None) -> BlobReferenced:
    return BlobReferenced(
        "the blob is referenced by a manifest in this repository; delete the manifests that use it first",
        digest=digest,
        **({"manifests": manifests} if manifests is not None else {}),
    )


# Bound parameters per statement stay well under every driver's cap (asyncpg: 32767), however
# many descriptors a manifest lists: IN lists and multi-row inserts go in batches of this many.
_BATCH = 1000


def _batches(items: list[_T]) -> Iterator[list[_T]]:
    return (items[start : start + _BATCH] for start in range(0, len(items), _BATCH))


async def _linked_blob_ids(
    conn: AsyncConnection, repository_id: int, digests: Iterable[str]
) -> dict[str, int]:
    found: dict[str, int] = {}
    for wanted in _batches(sorted(set(digests))):
        query = (
            select(t.blob.c.digest, t.blob.c.id)
            .select_from(t.blob.join(t.repository_blob, t.repository_blob.c.blob_id == t.blob.c.id))
            .where(t.repository_blob.c.repository_id == repository_id, t.blob.c.digest.in_(wanted))
        )
        found.update({row.digest: row.id for row in await conn.execute(query)})
    return found


async def _manifest_ids(conn: AsyncConnection, repository_id: int, digests: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for wanted in _batches(sorted(set(digests))):
        query = select(t.manifest.c.digest, t.manifest.c.id).where(
            t.manifest.c.repository_id == repository_id, t.manifest.c.digest.in_(wanted)
        )
        found.update({row.digest: row.id for row in await conn.execute(query)})
    return found


async def missing_references(conn: AsyncConnection, repository: str, parsed: ParsedManifest) -> list[str]:
    """What the manifest references that the repository lacks (a read-only `put_manifest` check)."""
    wanted = {d.digest for d in parsed.blobs} | {d.digest for d in parsed.children}
    repo = await get_repository(conn, repository)
    if repo is None:
        return sorted(wanted)
    found = await _linked_blob_ids(conn, repo.id, (d.digest for d in parsed.blobs))
    found |= await _manifest_ids(conn, repo.id, (d.digest for d in parsed.children))
    missing = {d.digest for d in parsed.blobs if d.digest not in found}
    missing |= {d.digest for d in parsed.children if d.digest not in found}
    return sorted(missing)


async def put_manifest(
    conn: AsyncConnection, repository: str, parsed: ParsedManifest, tag: str | None
) -> Manifest:
    """Make a manifest (and its tag) visible; everything it references must already be here."""
    repo = await ensure_repository(conn, repository)
    blob_ids = await _linked_blob_ids(conn, repo.id, (d.digest for d in parsed.blobs))
    child_ids = await _manifest_ids(conn, repo.id, (d.digest for d in parsed.children))
    missing = [d.digest for d in parsed.blobs if d.digest not in blob_ids]
    missing += [d.digest for d in parsed.children if d.digest not in child_ids]
    if missing:
        raise MissingReferences(sorted(set(missing)))
    now = utcnow()
    manifest_id = await insert_or_get_id(
        conn,
        t.manifest,
        {
            "repository_id": repo.id,
            "digest": parsed.digest,
            "media_type": parsed.media_type,
            "size": parsed.size,
            "artifact_type": parsed.artifact_type,
            "subject_digest": parsed.subject.digest if parsed.subject else None,
            "annotations": json.dumps(parsed.annotations) if parsed.annotations else None,
            "created_at": now,
        },
        unique=("repository_id", "digest"),
    )
    try:
        for batch in _batches(list(blob_ids.values())):
            await insert_ignore(
                conn,
                t.manifest_blob,
                [{"manifest_id": manifest_id, "repository_id": repo.id, "blob_id": b} for b in batch],
            )
    except IntegrityError as exc:
        # A blob was unlinked after the lookup above: the foreign key to the repository's link
        # refused the reference. Which one is for the caller to find (this transaction is spent).
        raise MissingReferences([]) from exc
    for batch in _batches(list(child_ids.values())):
        await insert_ignore(
            conn, t.manifest_child, [{"parent_id": manifest_id, "child_id": c} for c in batch]
        )
    if tag is not None:
        await upsert(
            conn,
            t.tag,
            {
                "repository_id": repo.id,
                "name": tag,
                "manifest_id": manifest_id,
                "created_at": now,
                "updated_at": now,
            },
            keys=("repository_id", "name"),
            update=("manifest_id", "updated_at"),
        )
    await conn.execute(update(t.repository).where(t.repository.c.id == repo.id).values(updated_at=now))
    return Manifest(manifest_id, repo.id, parsed.digest, parsed.media_type, parsed.size)


_MANIFEST_COLUMNS = (
    t.manifest.c.id,
    t.manifest.c.repository_id,
    t.manifest.c.digest,
    t.manifest.c.media_type,
    t.manifest.c.size,
)


async def find_manifest(
    conn: AsyncConnection, repository: str, reference: str, *, by_digest: bool
) -> Manifest | None:
    joined = t.manifest.join(t.repository, t.repository.c.id == t.manifest.c.repository_id)
    if by_digest:
        query = (
            select(*_MANIFEST_COLUMNS)
            .select_from(joined)
            .where(t.repository.c.name == repository, t.manifest.c.digest == reference)
        )
    else:
        query = (
            select(*_MANIFEST_COLUMNS)
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
    found = await find_manifest(conn, repository, tag, by_digest=False)
    if found is None:
        return None
    await conn.execute(
        delete(t.tag).where(and_(t.tag.c.repository_id == found.repository_id, t.tag.c.name == tag))
    )
    return found


async def list_tags(conn: AsyncConnection, repository_id: int, limit: int, last: str | None) -> list[str]:
    query = select(t.tag.c.name).where(t.tag.c.repository_id == repository_id)
    if last:
        query = query.where(t.tag.c.name > last)
    rows = await conn.execute(query.order_by(t.tag.c.name).limit(limit))
    return [row.name for row in rows]


async def list_repositories(conn: AsyncConnection, limit: int, last: str | None) -> list[str]:
    query = select(t.repository.c.name)
    if last:
        query = query.where(t.repository.c.name > last)
    rows = await conn.execute(query.order_by(t.repository.c.name).limit(limit))
    return [row.name for row in rows]


async def list_referrers(
    conn: AsyncConnection, repository_id: int, subject: str, artifact_type: str | None
) -> list[Descriptor]:
    query = select(
        t.manifest.c.digest,
        t.manifest.c.media_type,
        t.manifest.c.size,
        t.manifest.c.artifact_type,
        t.manifest.c.annotations,
    ).where(t.manifest.c.repository_id == repository_id, t.manifest.c.subject_digest == subject)
    if artifact_type is not None:
        query = query.where(t.manifest.c.artifact_type == artifact_type)
    rows = await conn.execute(query.order_by(t.manifest.c.id))
    return [
        Descriptor(
            media_type=row.media_type,
            digest=row.digest,
            size=row.size,
            artifact_type=row.artifact_type,
            annotations=json.loads(row.annotations) if row.annotations else None,
        )
        for row in rows
    ]


def artifact_type_of(media_type: str, artifact_type: str | None, config_media_type: str | None) -> str | None:
    """The referrers API's artifactType: the manifest's own, else its config's media type."""
    if artifact_type:
        return artifact_type
    if media_type in IMAGE_MANIFESTS:
        return config_media_type
    return None
