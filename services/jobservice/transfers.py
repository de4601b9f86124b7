"""Replication's work over the registry protocol, on the copy engine (`replication.copy`,
`replication.listing`, `wharf_shared.remote`): a remote source's listing for the planner, and a
task's copy or deletion for the runner. Each client gets the worker's one ClientSession."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from wharf_jobservice.planning import Artifact
from wharf_jobservice.replication.copy import copy_artifact, delete_artifact
from wharf_jobservice.replication.listing import list_artifacts
from wharf_jobservice.replication.naming import destination_repository
from wharf_jobservice.sites import Site, resolve_site
from wharf_jobservice.task_runner import TaskProgress
from wharf_shared.config import Settings
from wharf_shared.db import jobs
from wharf_shared.db.engine import Database
from wharf_shared.remote import Endpoint, RemoteRegistry

__all__ = ["Transfers", "destination_repository"]


def client(session: aiohttp.ClientSession, site: Site, *, speed_kib: int = 0) -> RemoteRegistry:
    endpoint = Endpoint(site.url, site.kind, site.username, site.password, site.insecure)
    return RemoteRegistry(session, endpoint, speed_kib=max(0, speed_kib))


class Transfers:
    def __init__(self, db: Database, settings: Settings, session: aiohttp.ClientSession) -> None:
        self._db = db
        self._settings = settings
        self._session = session

    async def list_remote(self, source: Site, filters: Sequence[Mapping[str, Any]]) -> list[Artifact]:
        found: list[Artifact] = []
        async for artifact in list_artifacts(client(self._session, source), filters):
            found.append(Artifact(artifact.repository, artifact.digest, list(artifact.tags)))
        return found

    async def perform(self, task: jobs.ClaimedTask, progress: TaskProgress) -> str:
        job = task.job
        async with self._db.read() as conn:
            destination = await resolve_site(conn, job.get("dst_registry_id"), self._settings)
            source = (
                await resolve_site(conn, job.get("src_registry_id"), self._settings)
                if task.operation == jobs.COPY
                else None
            )
        dst = client(self._session, destination)
        if task.operation == jobs.DELETION:
            deleted = await delete_artifact(dst, job["dst_repository"], job["reference"], progress)
            return "deleted" if deleted else "not found at the destination (nothing to delete)"
        assert source is not None
        speed = int(job.get("speed_kb") or 0)
        src = client(self._session, source, speed_kib=speed)
        result = await copy_artifact(
            src,
            job["src_repository"],
            job["digest"],
            dst,
            job["dst_repository"],
            tags=list(job.get("tags") or []),
            override=bool(job.get("override", True)),
            progress=progress,
        )
        if result.skipped:
            return f"{result.digest} already at the destination"
        return (
            f"copied {result.digest}: {result.blobs_copied} blob(s), {result.bytes_copied} bytes "
            f"({result.blobs_skipped} present, {result.blobs_mounted} mounted)"
        )
