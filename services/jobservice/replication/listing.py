"""The artifacts of a remote source registry a pull-based policy replicates: its repositories
through the name filter, each one's tags grouped by the digest they point at (a HEAD each), the
tags kept by the tag filter (`wharf_shared.replication_filters`). A registry's `/v2/` lists
tags only, so untagged artifacts of a remote are not seen."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wharf_shared.remote import NotFound, RemoteRegistry
from wharf_shared.replication_filters import repository_matches, selected_tags


@dataclass(frozen=True, slots=True)
class RemoteArtifact:
    repository: str
    digest: str
    tags: list[str]


async def list_artifacts(
    src: RemoteRegistry, filters: Sequence[Mapping[str, Any]]
) -> AsyncIterator[RemoteArtifact]:
    async for repository in src.repositories():
        if not repository_matches(filters, repository):
            continue
        try:
            tags = await src.tags(repository)
        except NotFound:
            continue  # deleted since the catalog named it
        by_digest: dict[str, list[str]] = {}
        for tag in tags:
            found = await src.head_manifest(repository, tag)
            if found is not None:
                by_digest.setdefault(found[0], []).append(tag)
        for digest, its_tags in by_digest.items():
            chosen = selected_tags(filters, its_tags)
            if chosen is not None:
                yield RemoteArtifact(repository, digest, chosen)
