"""What an upload in progress holds on the filesystem driver (see wharf_registry.uploads)."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from wharf_registry.uploads import ACC, _decode
from wharf_registry.uploads import _key as upload_key
from wharf_shared.storage import paths


def stored_bytes(root: Path, upload_id: str) -> int:
    """Bytes in every file of the upload's directory (recorded ones and any being written)."""
    directory = root / paths.upload_dir(upload_id)
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file()) if directory.is_dir() else 0


async def stored_upload(redis: Redis, root: Path, upload_id: str) -> bytes:
    """The upload's recorded bytes, part after part, as publishing would join them."""
    directory = root / paths.upload_dir(upload_id)
    data = b""
    for part in _decode(await redis.hget(upload_key(upload_id), "parts")):
        candidates = [directory / part.name]
        if part.name.startswith(ACC):  # possibly renamed by the request that last wrote it
            recorder = part.name.removeprefix(ACC)
            candidates += sorted(directory.glob(f"{part.name}-*")) + sorted(
                directory.glob(f"{ACC}*-{recorder}")
            )
        found = next(p for p in candidates if p.exists())
        data += found.read_bytes()[: part.size]
    return data
