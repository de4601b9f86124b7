"""The registry model: every SQL read and write the registry makes, on SQLAlchemy Core.

Functions take a connection (reads) or run inside the caller's transaction (writes) and
return values from `datatypes`. The only place the registry queries its tables; the reads and
deletes the management API makes as well live in `wharf_shared.db.manifests`, re-exported here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TypeVar

from sqlalchemy import BigInteger, ScalarSelect, delete, func, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_registry.datatypes import Blob, Descriptor, Manifest, ParsedManifest, Repository
from wharf_shared.db import tables as t
from wharf_shared.db.engine import (
    insert_ignore,
    insert_ignore_select,
    insert_or_get_id,
    upsert,
    upsert_returning_id,
)
from wharf_shared.db.manifests import (  # the reads and deletes the management API shares
    delete_manifest,
    delete_tag,
    find_manifest,
    get_repository,
)
from wharf_shared.db.types import UTCDateTime, utcnow
from wharf_shared.errors.domain import BlobReferenced, MissingReferences
from wharf_shared.media_types import IMAGE_MANIFESTS
from wharf_shared.platforms import Platform

_T = TypeVar("_T")


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
    """Record a verified blob and make it visible in the repository (idempotent).

    Two statements on the common path (a new link in an existing repository): the blob row,
    then the link selected by the repository's name. A new repository, or a link that was
    there already, costs a look-up more."""
    now = utcnow()
    blob_id = await insert_or_get_id(
        conn, t.blob, {"digest": digest, "size": size, "created_at": now}, unique=("digest",)
    )
    linked = await insert_ignore_select(
        conn,
        t.repository_blob,
        ("repository_id", "blob_id", "created_at"),
        select(t.repository.c.id, literal(blob_id, BigInteger), literal(now, UTCDateTime())).where(
            t.repository.c.name == repository
        ),
    )
    if not linked:  # no such repository yet, or linked already
        repo = await ensure_repository(conn, repository)
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


async def missing_references(conn: AsyncConnection, repository: str, parsed: ParsedManifest) -> list[str]:
    """What the manifest references that the repository lacks (a read-only `put_manifest` check)."""
    blobs = sorted({d.digest for d in parsed.blobs})
    children = sorted({d.digest for d in parsed.children})
    found: set[str] = set()
    for wanted in _batches(blobs):
        query = (
            select(t.blob.c.digest)
            .select_from(
                t.repository.join(
                    t.repository_blob, t.repository_blob.c.repository_id == t.repository.c.id
                ).join(t.blob, t.blob.c.id == t.repository_blob.c.blob_id)
            )
            .where(t.repository.c.name == repository, t.blob.c.digest.in_(wanted))
        )
        found.update(row.digest for row in await conn.execute(query))
    for wanted in _batches(children):
        query = (
            select(t.manifest.c.digest)
            .select_from(t.repository.join(t.manifest, t.manifest.c.repository_id == t.repository.c.id))
            .where(t.repository.c.name == repository, t.manifest.c.digest.in_(wanted))
        )
        found.update(row.digest for row in await conn.execute(query))
    return [digest for digest in blobs + children if digest not in found]


async def put_manifest(
    conn: AsyncConnection, repository: str, parsed: ParsedManifest, tag: str | None
) -> Manifest:
    """Make a manifest (and its tag) visible; everything it references must already be here.

    Each reference is inserted with its id looked up by digest in the same statement: a blob
    missing from the repository leaves a NULL or breaks the foreign key to the repository's
    link (a child manifest: a NULL), so the database refuses the manifest rather than dropping
    the reference (MissingReferences without digests: the caller names them). Four statements
    for an image, whatever the number of its layers up to `_BATCH`.
    """
    now = utcnow()
    # Creates the repository if need be, and marks it updated; the row stays locked (PostgreSQL,
    # MySQL) until commit, so pushes to one repository write their manifests one at a time.
    repo_id = await upsert_returning_id(
        conn,
        t.repository,
        {"name": repository, "created_at": now, "updated_at": now},
        keys=("name",),
        update=("updated_at",),
    )
    manifest_id = await insert_or_get_id(
        conn,
        t.manifest,
        {
            "repository_id": repo_id,
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
        for batch in _batches(sorted({d.digest for d in parsed.blobs})):
            await insert_ignore(
                conn,
                t.manifest_blob,
                [
                    {"manifest_id": manifest_id, "repository_id": repo_id, "blob_id": _blob_id(d)}
                    for d in batch
                ],
            )
        platforms = _platforms(parsed.children)
        for batch in _batches(sorted(platforms)):
            # An upsert, not an insert that ignores the row: the same index pushed again fills
            # the platforms of rows recorded before they were kept (0008).
            await upsert(
                conn,
                t.manifest_child,
                [_child_row(manifest_id, _manifest_id(repo_id, d), platforms[d]) for d in batch],
                keys=("parent_id", "child_id"),
                update=_PLATFORM_COLUMNS,
            )
    except IntegrityError as exc:
        # A reference is not in the repository (unlinked since the caller's check, or never
        # there). Which one is for the caller to find (this transaction is spent).
        raise MissingReferences([]) from exc
    if tag is not None:
        await upsert(
            conn,
            t.tag,
            {
                "repository_id": repo_id,
                "name": tag,
                "manifest_id": manifest_id,
                "created_at": now,
                "updated_at": now,
            },
            keys=("repository_id", "name"),
            update=("manifest_id", "updated_at"),
        )
    return Manifest(manifest_id, repo_id, parsed.digest, parsed.media_type, parsed.size)


_PLATFORM_COLUMNS = ("os", "architecture", "variant", "os_version")


def _platforms(children: tuple[Descriptor, ...]) -> dict[str, Platform | None]:
    """Each listed manifest's platform by digest. A manifest listed twice (for two platforms it
    runs on) has one row: the first platform given for it."""
    found: dict[str, Platform | None] = {}
    for child in children:
        if found.get(child.digest) is None:
            found[child.digest] = child.platform
    return found


def _child_row(parent_id: int, child_id: ScalarSelect[Any], platform: Platform | None) -> dict[str, Any]:
    return {
        "parent_id": parent_id,
        "child_id": child_id,
        "os": platform.os if platform else None,
        "architecture": platform.architecture if platform else None,
        "variant": platform.variant if platform else None,
        "os_version": platform.os_version if platform else None,
    }


def _blob_id(digest: str) -> ScalarSelect[Any]:
    return select(t.blob.c.id).where(t.blob.c.digest == digest).scalar_subquery()


def _manifest_id(repository_id: int, digest: str) -> ScalarSelect[Any]:
    query = select(t.manifest.c.id).where(
        t.manifest.c.repository_id == repository_id, t.manifest.c.digest == digest
    )
    return query.scalar_subquery()


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


__all__ = [
    "artifact_type_of",
    "delete_manifest",
    "delete_tag",
    "ensure_repository",
    "find_blob",
    "find_manifest",
    "get_repository",
    "link_blob",
    "list_referrers",
    "list_repositories",
    "list_tags",
    "missing_references",
    "put_manifest",
    "unlink_blob",
]
