"""Artifacts (manifests) and their tags as Harbor's API sees them: lists, one by digest or tag,
deletion, retagging. Plain async functions over a connection or the Database; domain errors, no
HTTP. Deletes use the registry's own functions (`wharf_shared.db.manifests`) and record the
registry's `delete` event (kind `manifest`), so an artifact deleted here is audited as one deleted
with `docker`/`skopeo`; every change drops the registry's cached manifests of the repository
after its commit, so no pull is answered from a stale cache.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared import events, manifest_cache
from wharf_shared import media_types as mt
from wharf_shared.db import manifests
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.manifests import Manifest
from wharf_shared.db.types import utcnow
from wharf_shared.digests import Digest, DigestError, is_digest
from wharf_shared.errors.domain import Conflict, InvalidDigest, InvalidTag, NotFound
from wharf_shared.platforms import Platform
from wharf_shared.rbac import Identity
from wharf_shared.references import is_valid_tag
from wharf_ui.changes import record
from wharf_ui.listing import Filter, ListSpec
from wharf_ui.query import Exact, Fuzzy, Page, QueryError, SortKey, Term, as_int, as_text, as_time

m = t.manifest.c
g = t.tag.c

ARTIFACTS = ListSpec(
    filters={
        "id": Filter(m.id, as_int, frozenset({"exact", "range", "any"})),
        "digest": Filter(m.digest, kinds=frozenset({"exact", "any"})),
        "media_type": Filter(m.media_type, kinds=frozenset({"exact", "fuzzy", "any"})),
        "push_time": Filter(m.created_at, as_time, frozenset({"exact", "range"})),
        "pull_time": Filter(m.pull_time, as_time, frozenset({"exact", "range"})),
    },
    sorts={"id": m.id, "size": m.size, "push_time": m.created_at, "pull_time": m.pull_time},
    default_sort=(SortKey("push_time", True),),  # newest pushes first, as Harbor
    tiebreak=m.id,
    tiebreak_descending=True,
)

TAGS = ListSpec(
    filters={
        "id": Filter(g.id, as_int, frozenset({"exact", "range", "any"})),
        "name": Filter(g.name),
        "push_time": Filter(g.updated_at, as_time, frozenset({"exact", "range"})),
    },
    sorts={"id": g.id, "name": g.name, "push_time": g.updated_at},
    default_sort=(SortKey("push_time", True),),  # the newest first, as Harbor (the index's order)
    tiebreak=g.id,
    tiebreak_descending=True,
)


def tag_condition(term: Term) -> ColumnElement[bool]:
    """Harbor's `q=tags=…` on artifacts: `*` tagged, `nil` untagged, `v1` has that tag, `~v`
    has a tag containing `v`."""
    tagged = select(g.id).where(g.manifest_id == m.id).correlate(t.manifest)
    if isinstance(term, Exact) and term.value == "*":
        return exists(tagged)
    if isinstance(term, Exact) and term.value == "nil":
        return ~exists(tagged)
    if isinstance(term, Exact):
        return exists(tagged.where(g.name == as_text("tags", term.value)))
    if isinstance(term, Fuzzy):
        return exists(tagged.where(g.name.contains(as_text("tags", term.value), autoescape=True)))
    raise QueryError("q: tags takes *, nil, a tag name or ~part of one")


# Config media types that make an image manifest one of Harbor's artifact types.
_TYPES = {
    "application/vnd.oci.image.config.v1+json": "IMAGE",
    "application/vnd.docker.container.image.v1+json": "IMAGE",
    "application/vnd.cncf.helm.config.v1+json": "CHART",
    "application/vnd.cnab.manifest.v1": "CNAB",
}


@dataclass(frozen=True, slots=True)
class TagInfo:
    id: int
    repository_id: int
    artifact_id: int
    name: str
    pushed_at: dt.datetime
    pulled_at: dt.datetime | None  # the artifact's last pull: pulls are not counted per tag


@dataclass(frozen=True, slots=True)
class Reference:
    """A manifest an index lists, with the platform the index gives it (None: not known)."""

    parent_id: int
    child_id: int
    child_digest: str
    platform: Platform | None = None


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    id: int
    repository_id: int
    digest: str
    manifest_media_type: str
    artifact_type: str | None  # the manifest's artifactType, else its config's media type
    size: int
    annotations: dict[str, str] | None
    pushed_at: dt.datetime
    pulled_at: dt.datetime | None
    tags: list[TagInfo] | None = None  # None: not asked for (`with_tag=false`)
    references: list[Reference] = field(default_factory=list)

    @property
    def type(self) -> str:
        """Harbor's artifact type: IMAGE for images and indexes, CHART, CNAB, else UNKNOWN."""
        if self.manifest_media_type in mt.INDEXES:
            return "IMAGE"
        return _TYPES.get(self.artifact_type or "", "UNKNOWN")

    @property
    def media_type(self) -> str:
        """Harbor's `media_type`: an image's config type, the manifest's own for anything else."""
        if self.manifest_media_type in mt.IMAGE_MANIFESTS and self.artifact_type:
            return self.artifact_type
        return self.manifest_media_type


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """A reference from a path: a tag, or a digest."""

    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        return self.tag if self.tag is not None else str(self.digest)


def parse_reference(value: str) -> ArtifactRef:
    """A digest (a malformed one is a 400) or a tag (a name no tag may have is found nowhere)."""
    if is_digest(value):
        try:
            return ArtifactRef(None, str(Digest.parse(value)))
        except DigestError as exc:
            raise InvalidDigest(str(exc)) from None
    if not is_valid_tag(value):
        raise NotFound(f"artifact {value[:200]!r} not found")
    return ArtifactRef(value, None)


_ARTIFACT_COLUMNS = (
    m.id,
    m.repository_id,
    m.digest,
    m.media_type,
    m.artifact_type,
    m.size,
    m.annotations,
    m.created_at,
    m.pull_time,
)


def _artifact(row: Any) -> ArtifactInfo:
    return ArtifactInfo(
        row.id,
        row.repository_id,
        row.digest,
        row.media_type,
        row.artifact_type,
        row.size,
        json.loads(row.annotations) if row.annotations else None,
        row.created_at,
        row.pull_time,
    )


async def _tags_of(conn: AsyncConnection, artifacts: Sequence[ArtifactInfo]) -> dict[int, list[TagInfo]]:
    pulled = {a.id: a.pulled_at for a in artifacts}
    found: dict[int, list[TagInfo]] = {a.id: [] for a in artifacts}
    if not artifacts:
        return found
    rows = await conn.execute(
        select(g.id, g.repository_id, g.manifest_id, g.name, g.updated_at)
        .where(g.manifest_id.in_(list(found)))
        .order_by(g.manifest_id, g.updated_at.desc(), g.id.desc())  # newest first, as the tags list
    )
    for row in rows:
        found[row.manifest_id].append(
            TagInfo(
                row.id, row.repository_id, row.manifest_id, row.name, row.updated_at, pulled[row.manifest_id]
            )
        )
    return found


async def _references_of(conn: AsyncConnection, ids: list[int]) -> dict[int, list[Reference]]:
    found: dict[int, list[Reference]] = {i: [] for i in ids}
    if not ids:
        return found
    c = t.manifest_child.c
    child = t.manifest.alias("child")
    rows = await conn.execute(
        select(c.parent_id, c.child_id, child.c.digest, *_platform_columns())
        .select_from(t.manifest_child.join(child, child.c.id == c.child_id))
        .where(c.parent_id.in_(ids))
        .order_by(c.parent_id, child.c.digest)
    )
    for row in rows:
        found[row.parent_id].append(Reference(row.parent_id, row.child_id, row.digest, _platform(row)))
    return found


def _platform_columns() -> tuple[ColumnElement[Any], ...]:
    c = t.manifest_child.c
    return (c.os, c.architecture, c.variant, c.os_version)


def _platform(row: Any) -> Platform | None:
    return Platform.from_columns(row.os, row.architecture, row.variant, row.os_version)


async def _sizes_of(conn: AsyncConnection, artifacts: Sequence[ArtifactInfo]) -> dict[int, int]:
    """Harbor's artifact size: the manifest and what it references (an image's config and layers;
    an index's manifests with theirs), not the manifest's own few hundred bytes. One query per
    kind for the whole page."""
    sizes = {a.id: a.size for a in artifacts}
    if not artifacts:
        return sizes
    mb, b, c = t.manifest_blob.c, t.blob.c, t.manifest_child.c
    child = t.manifest.alias("child")
    blobs = t.manifest_blob.join(t.blob, b.id == mb.blob_id)
    queries = [
        select(mb.manifest_id, func.sum(b.size))
        .select_from(blobs)
        .where(mb.manifest_id.in_(list(sizes)))
        .group_by(mb.manifest_id)
    ]
    indexes = [a.id for a in artifacts if a.manifest_media_type in mt.INDEXES]
    if indexes:
        queries.append(
            select(c.parent_id, func.sum(child.c.size))
            .select_from(t.manifest_child.join(child, child.c.id == c.child_id))
            .where(c.parent_id.in_(indexes))
            .group_by(c.parent_id)
        )
        queries.append(
            select(c.parent_id, func.sum(b.size))
            .select_from(t.manifest_child.join(blobs, mb.manifest_id == c.child_id))
            .where(c.parent_id.in_(indexes))
            .group_by(c.parent_id)
        )
    for query in queries:
        for artifact_id, total in await conn.execute(query):
            sizes[artifact_id] += int(total or 0)  # MySQL sums as DECIMAL
    return sizes


async def _complete(
    conn: AsyncConnection, artifacts: list[ArtifactInfo], *, with_tags: bool
) -> list[ArtifactInfo]:
    """Each artifact with its total size, its tags (when asked) and, for an index, the manifests
    it lists."""
    tags = await _tags_of(conn, artifacts) if with_tags else {}
    references = await _references_of(conn, [a.id for a in artifacts if a.manifest_media_type in mt.INDEXES])
    sizes = await _sizes_of(conn, artifacts)
    return [
        replace(
            a,
            size=sizes[a.id],
            tags=tags.get(a.id) if with_tags else None,
            references=references.get(a.id, []),
        )
        for a in artifacts
    ]


async def list_artifacts(
    conn: AsyncConnection,
    repository_id: int,
    conditions: list[Any],
    order: list[Any],
    page: Page,
    *,
    with_tags: bool,
) -> tuple[list[ArtifactInfo], int]:
    where = [m.repository_id == repository_id, *conditions]
    total = (await conn.execute(select(func.count()).select_from(t.manifest).where(*where))).scalar()
    rows = await conn.execute(
        select(*_ARTIFACT_COLUMNS).where(*where).order_by(*order).offset(page.offset).limit(page.size)
    )
    found = await _complete(conn, [_artifact(row) for row in rows], with_tags=with_tags)
    return found, int(total or 0)


async def find(conn: AsyncConnection, repository: str, reference: ArtifactRef) -> Manifest:
    found = await manifests.find_manifest(
        conn, repository, str(reference), by_digest=reference.digest is not None
    )
    if found is None:
        raise NotFound(f"artifact {repository[:300]}{'@' if reference.digest else ':'}{reference} not found")
    return found


async def get_artifact(
    conn: AsyncConnection, repository: str, reference: ArtifactRef, *, with_tags: bool
) -> ArtifactInfo:
    found = await find(conn, repository, reference)
    row = (await conn.execute(select(*_ARTIFACT_COLUMNS).where(m.id == found.id))).one()
    (artifact,) = await _complete(conn, [_artifact(row)], with_tags=with_tags)
    return artifact


async def repository_id(conn: AsyncConnection, repository: str) -> int:
    found = await manifests.get_repository(conn, repository)
    if found is None:
        raise NotFound(f"repository {repository[:300]!r} not found")
    return found.id


async def list_tags(
    conn: AsyncConnection,
    repository: str,
    reference: ArtifactRef,
    conditions: list[Any],
    order: list[Any],
    page: Page,
) -> tuple[list[TagInfo], int]:
    artifact = await find(conn, repository, reference)
    pulled = (await conn.execute(select(m.pull_time).where(m.id == artifact.id))).scalar()
    where = [g.manifest_id == artifact.id, *conditions]
    total = (await conn.execute(select(func.count()).select_from(t.tag).where(*where))).scalar()
    rows = await conn.execute(
        select(g.id, g.repository_id, g.manifest_id, g.name, g.updated_at)
        .where(*where)
        .order_by(*order)
        .offset(page.offset)
        .limit(page.size)
    )
    tags = [TagInfo(r.id, r.repository_id, r.manifest_id, r.name, r.updated_at, pulled) for r in rows]
    return tags, int(total or 0)


def top_level() -> ColumnElement[bool]:
    """What a person browses a repository by (the portal's list, as Harbor's): not a manifest an
    index lists unless it is tagged itself, and not an accessory (a referrer) of an artifact the
    repository holds; those are shown with their index or subject."""
    child = t.manifest_child.c
    subject = t.manifest.alias("subject")
    tagged = exists(select(g.id).where(g.manifest_id == m.id).correlate(t.manifest))
    listed = exists(select(child.parent_id).where(child.child_id == m.id).correlate(t.manifest))
    accessory = and_(
        m.subject_digest.is_not(None),
        exists(
            select(subject.c.id)
            .where(subject.c.repository_id == m.repository_id, subject.c.digest == m.subject_digest)
            .correlate(t.manifest)
        ),
    )
    return and_(or_(~listed, tagged), ~accessory)


async def by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, ArtifactInfo]:
    """Artifacts by id (an index's children), complete with sizes, without tags."""
    if not ids:
        return {}
    rows = await conn.execute(select(*_ARTIFACT_COLUMNS).where(m.id.in_(list(ids))))
    return {a.id: a for a in await _complete(conn, [_artifact(row) for row in rows], with_tags=False)}


async def referrers_of(
    conn: AsyncConnection, repository_id: int, digests: Sequence[str]
) -> dict[str, list[ArtifactInfo]]:
    """The accessories (signatures, SBOMs…: manifests whose `subject` is one of `digests`) in the
    repository, by subject digest, oldest first (the registry's referrers order)."""
    found: dict[str, list[ArtifactInfo]] = {d: [] for d in digests}
    if not digests:
        return found
    rows = list(
        await conn.execute(
            select(*_ARTIFACT_COLUMNS, m.subject_digest)
            .where(m.repository_id == repository_id, m.subject_digest.in_(list(digests)))
            .order_by(m.id)
        )
    )
    complete = await _complete(conn, [_artifact(row) for row in rows], with_tags=True)
    for row, artifact in zip(rows, complete, strict=True):
        found[row.subject_digest].append(artifact)
    return found


@dataclass(frozen=True, slots=True)
class Relations:
    """What an artifact belongs to: the indexes in its repository that list it, and the artifact
    it is an accessory of (its `subject`), if any."""

    parents: list[str]  # digests
    subject: str | None
    platform: Platform | None = None  # the one its indexes give it (the first known); None: unknown


async def relations(conn: AsyncConnection, artifact: ArtifactInfo) -> Relations:
    c = t.manifest_child.c
    parent = t.manifest.alias("parent")
    parents = list(
        await conn.execute(
            select(parent.c.digest, *_platform_columns())
            .select_from(t.manifest_child.join(parent, parent.c.id == c.parent_id))
            .where(c.child_id == artifact.id)
            .order_by(parent.c.digest)
        )
    )
    subject = (await conn.execute(select(m.subject_digest).where(m.id == artifact.id))).scalar()
    platform = next((p for p in map(_platform, parents) if p is not None), None)
    return Relations([row.digest for row in parents], subject, platform)


# -- writes (each one transaction, then the registry's cache of the repository is dropped) ------


async def delete_artifact(
    db: Database, redis: Redis, identity: Identity, repository: str, reference: ArtifactRef
) -> None:
    """Delete the artifact and every tag on it, as the registry's manifest DELETE does; refused
    (ManifestReferenced) while an index lists it."""

    async def go(conn: AsyncConnection) -> None:
        found = await find(conn, repository, reference)
        await manifests.delete_manifest(conn, repository, found.digest)
        await record(
            conn,
            events.DELETE,
            identity,
            repository=repository,
            digest=found.digest,
            tag=reference.tag,
            kind="manifest",
        )

    await db.run(go)
    await manifest_cache.invalidate(redis, repository)


async def create_tag(
    db: Database, redis: Redis, identity: Identity, repository: str, reference: ArtifactRef, name: str
) -> None:
    """A new tag on the artifact; a name the repository already has is a Conflict (Harbor moves
    no tag here: delete it first)."""
    if not is_valid_tag(name):
        raise InvalidTag(f"tag {name[:200]!r} is not a valid tag name")

    async def go(conn: AsyncConnection) -> None:
        found = await find(conn, repository, reference)
        taken = await conn.execute(select(g.id).where(g.repository_id == found.repository_id, g.name == name))
        if taken.first() is not None:
            raise Conflict(f"the tag {name!r} already exists in {repository[:300]}")
        now = utcnow()
        await conn.execute(
            t.tag.insert().values(
                repository_id=found.repository_id,
                name=name,
                manifest_id=found.id,
                created_at=now,
                updated_at=now,
            )
        )
        await record(conn, "tag.create", identity, repository=repository, tag=name, digest=found.digest)

    try:
        await db.run(go)
    except IntegrityError:  # the same name, created meanwhile
        raise Conflict(f"the tag {name!r} already exists in {repository[:300]}") from None
    await manifest_cache.invalidate(redis, repository)


async def delete_tag(
    db: Database, redis: Redis, identity: Identity, repository: str, reference: ArtifactRef, name: str
) -> None:
    """Delete a tag of the artifact (the artifact stays, even untagged)."""

    async def go(conn: AsyncConnection) -> None:
        found = await find(conn, repository, reference)
        removed = await conn.execute(
            delete(t.tag).where(
                and_(g.repository_id == found.repository_id, g.manifest_id == found.id, g.name == name)
            )
        )
        if not removed.rowcount:
            raise NotFound(f"tag {name[:200]!r} of artifact {found.digest} not found")
        await record(conn, "tag.delete", identity, repository=repository, tag=name, digest=found.digest)

    await db.run(go)
    await manifest_cache.invalidate(redis, repository)
