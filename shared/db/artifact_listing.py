"""This Wharf's artifacts as replication lists them: the repositories a policy's name filter
matches, each one's top-level manifests (not an index's children) with their tags, the tags
cut down by the tag filter (`wharf_shared.replication_filters.selected_tags`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared import replication_filters
from wharf_shared.db import tables as t


@dataclass(frozen=True, slots=True)
class LocalArtifact:
    repository: str
    digest: str
    media_type: str
    tags: list[str]  # those the filters keep; [] for an untagged artifact that passes


async def matching_repositories(conn: AsyncConnection, filters: Sequence[Mapping[str, Any]]) -> list[str]:
    names = (await conn.execute(select(t.repository.c.name).order_by(t.repository.c.name))).scalars()
    return [name for name in names if replication_filters.repository_matches(filters, name)]


async def repository_artifacts(
    conn: AsyncConnection, repository: str, filters: Sequence[Mapping[str, Any]]
) -> list[LocalArtifact]:
    """The repository's artifacts that the tag filter keeps, oldest first."""
    m, r, tg, ch = t.manifest.c, t.repository.c, t.tag.c, t.manifest_child.c
    # An index's children come with it (a parent is always in its child's repository).
    is_child = select(ch.parent_id).where(ch.child_id == m.id).exists()
    rows = await conn.execute(
        select(m.id, m.digest, m.media_type, tg.name)
        .select_from(
            t.repository.join(t.manifest, m.repository_id == r.id).outerjoin(t.tag, tg.manifest_id == m.id)
        )
        .where(r.name == repository, ~is_child)
        .order_by(m.created_at, m.id, tg.name)
    )
    found: dict[int, tuple[str, str, list[str]]] = {}
    for manifest_id, digest, media_type, tag in rows:
        entry = found.setdefault(int(manifest_id), (digest, media_type, []))
        if tag is not None:
            entry[2].append(tag)
    artifacts: list[LocalArtifact] = []
    for digest, media_type, tags in found.values():
        kept = replication_filters.selected_tags(filters, tags)
        if kept is not None:
            artifacts.append(LocalArtifact(repository, digest, media_type, kept))
    return artifacts


async def list_local_artifacts(
    conn: AsyncConnection, filters: Sequence[Mapping[str, Any]]
) -> list[LocalArtifact]:
    """Every artifact of this Wharf that the filters select."""
    artifacts: list[LocalArtifact] = []
    for repository in await matching_repositories(conn, filters):
        artifacts.extend(await repository_artifacts(conn, repository, filters))
    return artifacts
