"""Values the registry model hands out: frozen, never database rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Shared with the management API, which reads and deletes the same rows.
from wharf_shared.db.manifests import Manifest, Repository
from wharf_shared.platforms import Platform


@dataclass(frozen=True, slots=True)
class Blob:
    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    urls: tuple[str, ...] = ()
    platform: Platform | None = None  # an index's entry: the platform it gives the manifest

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = self.annotations
        return out


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    """What a pushed manifest says, once validated."""

    media_type: str
    digest: str
    size: int
    blobs: tuple[Descriptor, ...]  # config and layers that must be in the repository
    children: tuple[Descriptor, ...]  # manifests an index references
    subject: Descriptor | None
    artifact_type: str | None
    annotations: dict[str, str] | None


__all__ = ["Blob", "Descriptor", "Manifest", "ParsedManifest", "Repository"]
