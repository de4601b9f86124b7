"""The platforms of an index's manifests (`linux/arm64/v8`). The database keeps which manifests an
index lists, not their platforms: those are in the index itself, whose bytes are in the registry's
storage. The ui service opens that storage only to read them, on first use; where it cannot (a
host that does not mount the registry's filesystem), platforms are unknown and pages say so."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from wharf_shared.config import Settings
from wharf_shared.digests import Digest, DigestError
from wharf_shared.logging import get_logger
from wharf_shared.metrics import Metrics
from wharf_shared.storage import paths
from wharf_shared.storage.base import Instrumented, StorageError
from wharf_shared.storage.factory import open_storage

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)


def platforms_in(index: bytes) -> dict[str, Platform]:
    """Each listed manifest's platform by digest, from an index's bytes (entries without one, and
    bytes that are no index, give nothing)."""
    try:
        document = json.loads(index)
    except ValueError:
        return {}
    entries = document.get("manifests") if isinstance(document, dict) else None
    found: dict[str, Platform] = {}
    for entry in entries if isinstance(entries, list) else []:
        platform: Any = entry.get("platform") if isinstance(entry, dict) else None
        digest = entry.get("digest") if isinstance(entry, dict) else None
        if not isinstance(platform, dict) or not isinstance(digest, str):
            continue
        found.setdefault(
            digest,
            Platform(
                str(platform.get("os", "")),
                str(platform.get("architecture", "")),
                str(platform.get("variant", "") or ""),
                str(platform.get("os.version", "") or ""),
            ),
        )
    return found


class IndexReader:
    """Reads indexes from the registry's storage, opened the first time one is asked for."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._storage: Instrumented | None = None
        self._unavailable = False

    def _open(self) -> Instrumented | None:
        if self._storage is None and not self._unavailable:
            try:
                self._storage = open_storage(self._settings, self._metrics)
            except (OSError, ValueError, StorageError) as exc:
                log.warning("index_storage_unavailable", error=str(exc))
                self._unavailable = True
        return self._storage

    async def platforms(self, digest: str) -> dict[str, Platform]:
        """The platforms the index `digest` names for its manifests; {} when it cannot be read."""
        storage = self._open()
        if storage is None:
            return {}
        try:
            body = await storage.get_content(paths.blob_path(Digest.parse(digest)))
        except (StorageError, DigestError, OSError) as exc:
            log.warning("index_unreadable", digest=digest, error=str(exc))
            return {}
        return platforms_in(body)
