"""Replication's work over the registry protocol, on the copy engine (`replication.copy`,
`replication.listing`, `wharf_shared.remote`): a remote source's listing for the planner, and a
task's copy or deletion for the runner. Each client gets the worker's one ClientSession.

- A remote Harbor/Wharf destination gets the project first (`ensure_namespace`); this Wharf's
  projects are made by the planner in SQL.
- Blobs already at a destination are mounted from the repository that has them (`MountHints`,
  one per destination registry, kept by this process).
- A client per registry (its sign-in challenge and tokens) is kept across tasks, so a task does
  not begin with a 401 round trip; a speed-limited one is the task's own (its limit is per task).
  A destination project known to exist is not asked about again for `NAMESPACE_SECONDS`.
- An interrupted upload is resumed by the next attempt, in any worker: the upload URLs of the
  blobs in flight (`resume`) are saved in Redis every `RESUME_SAVE_SECONDS` and when the attempt
  ends, and dropped once the task succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from redis.asyncio import Redis

from wharf_jobservice.planning import Artifact
from wharf_jobservice.replication.copy import copy_artifact, delete_artifact
from wharf_jobservice.replication.listing import list_artifacts
from wharf_jobservice.replication.naming import destination_repository
from wharf_jobservice.replication.progress import MountHints
from wharf_jobservice.sites import Site, resolve_site
from wharf_jobservice.task_runner import TaskProgress
from wharf_shared.config import Settings
from wharf_shared.db import jobs
from wharf_shared.db.engine import Database
from wharf_shared.remote import Endpoint, RemoteRegistry

__all__ = ["Transfers", "destination_repository"]

RESUME_SAVE_SECONDS = 1.0
NAMESPACE_SECONDS = 60.0
_CLIENTS_MAX = 64
RESUME_TTL_SECONDS = 7 * 24 * 3600


def client(session: aiohttp.ClientSession, site: Site, *, speed_kib: int = 0) -> RemoteRegistry:
    endpoint = Endpoint(site.url, site.kind, site.username, site.password, site.insecure)
    return RemoteRegistry(session, endpoint, speed_kib=max(0, speed_kib))


def resume_key(task_id: int) -> str:
    return f"wharf:jobs:resume:{task_id}"


class Transfers:
    def __init__(
        self, db: Database, redis: Redis, settings: Settings, session: aiohttp.ClientSession
    ) -> None:
        self._db = db
        self._redis = redis
        self._settings = settings
        self._session = session
        self._mounts: dict[int | None, MountHints] = {}
        self._clients: dict[Endpoint, RemoteRegistry] = {}
        self._namespaces: dict[tuple[int | None, str], float] = {}

    def _client(self, site: Site, *, speed_kib: int = 0) -> RemoteRegistry:
        if speed_kib > 0:
            return client(self._session, site, speed_kib=speed_kib)
        endpoint = Endpoint(site.url, site.kind, site.username, site.password, site.insecure)
        found = self._clients.get(endpoint)
        if found is None:
            if len(self._clients) >= _CLIENTS_MAX:
                self._clients.pop(next(iter(self._clients)))
            found = self._clients[endpoint] = RemoteRegistry(self._session, endpoint)
        return found

    async def _ensure_namespace(self, site: Site, dst: RemoteRegistry, project: str) -> None:
        key = (site.registry_id, project)
        now = asyncio.get_running_loop().time()
        if self._namespaces.get(key, -NAMESPACE_SECONDS) + NAMESPACE_SECONDS > now:
            return
        await dst.ensure_namespace(project)
        self._namespaces[key] = now

    async def list_remote(self, source: Site, filters: Sequence[Mapping[str, Any]]) -> list[Artifact]:
        found: list[Artifact] = []
        async for artifact in list_artifacts(self._client(source), filters):
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
        dst = self._client(destination)
        if task.operation == jobs.DELETION:
            deleted = await delete_artifact(dst, job["dst_repository"], job["reference"], progress)
            return "deleted" if deleted else "not found at the destination (nothing to delete)"
        if source is None:
            raise ValueError(f"task {task.id}: a copy without a source")
        src = self._client(source, speed_kib=int(job.get("speed_kb") or 0))
        dst_repo: str = job["dst_repository"]
        if destination.registry_id is not None and "/" in dst_repo:
            await self._ensure_namespace(destination, dst, dst_repo.split("/", 1)[0])
        resume = await self._load_resume(task.id)
        saver = asyncio.create_task(self._keep_saving(task.id, resume))
        try:
            result = await copy_artifact(
                src,
                job["src_repository"],
                job["digest"],
                dst,
                dst_repo,
                tags=list(job.get("tags") or []),
                override=bool(job.get("override", True)),
                progress=progress,
                mounts=self._mounts.setdefault(destination.registry_id, MountHints()),
                resume=resume,
            )
        except BaseException:
            saver.cancel()
            with contextlib.suppress(Exception):
                await self._save_resume(task.id, resume)
            raise
        saver.cancel()
        with contextlib.suppress(Exception):
            await self._redis.delete(resume_key(task.id))
        if result.skipped:
            return f"{result.digest} is at the destination already"
        return (
            f"copied {result.digest}: {result.blobs_copied} blob(s), {result.bytes_copied} bytes "
            f"({result.blobs_skipped} there already, {result.blobs_mounted} mounted)"
        )

    async def _load_resume(self, task_id: int) -> dict[str, str]:
        raw = await self._redis.get(resume_key(task_id))
        try:
            saved = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in saved.items()} if isinstance(saved, dict) else {}

    async def _save_resume(self, task_id: int, resume: Mapping[str, str]) -> None:
        if resume:
            await self._redis.set(resume_key(task_id), json.dumps(dict(resume)), ex=RESUME_TTL_SECONDS)
        else:
            await self._redis.delete(resume_key(task_id))

    async def _keep_saving(self, task_id: int, resume: Mapping[str, str]) -> None:
        saved: dict[str, str] = dict(resume)
        while True:
            await asyncio.sleep(RESUME_SAVE_SECONDS)
            if dict(resume) != saved:
                with contextlib.suppress(Exception):
                    await self._save_resume(task_id, resume)
                    saved = dict(resume)
