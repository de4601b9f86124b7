"""Planning an execution (`wharf.replication.plan`): what to copy (or delete) where, as task rows.

The execution's policy names a source and destination(s) (a NULL registry is this Wharf;
`every_registry`: every registered registry). What to copy comes from SQL for this Wharf
(`wharf_shared.db.artifact_listing`), from the registry protocol for a remote source
(`replication.listing.list_artifacts`), or, for an event-based execution, from the events its
`extra` names (`{"events": [{"type", "repository", "digest", "tag"}, …]}`, or one `"event"`).
Every task row, `planned` and the execution's status are written in one transaction; a second
planning of the same execution (a duplicate message, the reconciler) finds it planned and adds
nothing. The caller enqueues the tasks after the commit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_jobservice.failures import describe, is_transient
from wharf_jobservice.sites import Site, SiteError, resolve_site
from wharf_shared import replication_filters
from wharf_shared.config import Settings
from wharf_shared.db import jobs, replication
from wharf_shared.db.accounts import find_user
from wharf_shared.db.artifact_listing import list_local_artifacts
from wharf_shared.db.engine import Database
from wharf_shared.db.projects import create_project, find_project
from wharf_shared.errors.domain import InvalidInput
from wharf_shared.events import DELETE, PUSH
from wharf_shared.logging import get_logger

log = get_logger(__name__)

Naming = Callable[[str, str | None, int], str]  # (source repository, namespace, replace count) → name
RemoteLister = Callable[[Site, Sequence[Mapping[str, Any]]], Awaitable[list["Artifact"]]]


@dataclass(frozen=True, slots=True)
class Artifact:
    repository: str
    digest: str
    tags: list[str]


class PlanError(Exception):
    """The execution cannot be planned (its policy or a registry is gone): it ends in Error."""


def resource(repository: str, digest: str, tags: Sequence[str]) -> str:
    """`library/app:v1`, `library/app:v1,v2`, or `library/app@sha256:…` for an untagged one."""
    return f"{repository}:{','.join(tags)}" if tags else f"{repository}@{digest}"


def execution_events(extra: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The events an event-based execution was made for; None: not event-based (plan all)."""
    if isinstance(extra.get("events"), list):
        return [dict(e) for e in extra["events"] if isinstance(e, Mapping)]
    if isinstance(extra.get("event"), Mapping):
        return [dict(extra["event"])]
    return None


def event_artifacts(policy: replication.Policy, events: Iterable[Mapping[str, Any]]) -> list[Artifact]:
    """The pushed artifacts the policy's filters select, one per digest (tags merged)."""
    found: dict[tuple[str, str], list[str]] = {}
    for event in events:
        if event.get("type") != PUSH or not event.get("repository") or not event.get("digest"):
            continue
        repository = str(event["repository"])
        if not replication_filters.repository_matches(policy.filters, repository):
            continue
        tag = event.get("tag")
        kept = replication_filters.selected_tags(policy.filters, [tag] if tag else [])
        if kept is None:
            continue
        tags = found.setdefault((repository, str(event["digest"])), [])
        tags.extend(t for t in kept if t not in tags)
    return [Artifact(repository, digest, tags) for (repository, digest), tags in found.items()]


def event_deletions(policy: replication.Policy, events: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(repository, reference) of the deleted manifests and tags the policy replicates."""
    if not policy.replicate_deletion:
        return []
    deletions: list[tuple[str, str]] = []
    for event in events:
        if event.get("type") != DELETE or not event.get("repository"):
            continue
        repository = str(event["repository"])
        tag = event.get("tag")
        if not replication_filters.repository_matches(policy.filters, repository):
            continue
        if event.get("kind") == "tag" or (tag and not event.get("digest")):
            if tag and replication_filters.tag_matches(policy.filters, str(tag)):
                deletions.append((repository, str(tag)))
        elif event.get("digest"):
            deletions.append((repository, str(event["digest"])))
    return list(dict.fromkeys(deletions))


def copy_tasks(
    policy: replication.Policy,
    source: int | None,
    destinations: Sequence[int | None],
    artifacts: Sequence[Artifact],
    naming: Naming,
) -> list[jobs.NewTask]:
    tasks: list[jobs.NewTask] = []
    for destination in destinations:
        for artifact in artifacts:
            target = naming(artifact.repository, policy.dest_namespace, policy.dest_namespace_replace_count)
            job = {
                "policy_id": policy.id,
                "src_registry_id": source,
                "dst_registry_id": destination,
                "src_repository": artifact.repository,
                "digest": artifact.digest,
                "dst_repository": target,
                "tags": list(artifact.tags),
                "override": policy.override,
                "speed_kb": policy.speed_kb,
            }
            tasks.append(
                jobs.NewTask(
                    jobs.COPY,
                    resource(artifact.repository, artifact.digest, artifact.tags),
                    resource(target, artifact.digest, artifact.tags),
                    job,
                )
            )
    return tasks


def deletion_tasks(
    policy: replication.Policy,
    destinations: Sequence[int | None],
    deletions: Sequence[tuple[str, str]],
    naming: Naming,
) -> list[jobs.NewTask]:
    tasks: list[jobs.NewTask] = []
    for destination in destinations:
        for repository, reference in deletions:
            target = naming(repository, policy.dest_namespace, policy.dest_namespace_replace_count)
            sep = "@" if ":" in reference else ":"
            job = {
                "policy_id": policy.id,
                "dst_registry_id": destination,
                "dst_repository": target,
                "reference": reference,
            }
            tasks.append(
                jobs.NewTask(jobs.DELETION, f"{repository}{sep}{reference}", f"{target}{sep}{reference}", job)
            )
    return tasks


async def destinations_of(conn: AsyncConnection, policy: replication.Policy) -> list[int | None]:
    if policy.every_registry:
        return [r.id for r in await replication.list_registries(conn)]
    return [policy.dest_registry_id]


@dataclass(frozen=True, slots=True)
class Planned:
    execution_id: int
    task_ids: list[int]


async def plan_execution(
    db: Database,
    settings: Settings,
    execution_id: int,
    *,
    naming: Naming,
    list_remote: RemoteLister,
    now: Callable[[], dt.datetime],
) -> Planned | None:
    """Plan the execution once; its tasks to enqueue, or None (already planned, stopped, gone).
    A plan that cannot be made (a policy or registry gone, the source unreachable for good) ends
    the execution in Error; a transient failure (the source down) raises, for a retry."""
    failure: str | None = None
    async with db.read() as conn:
        row = await jobs.get_execution(conn, execution_id)
        if row is None or row.status != jobs.RUNNING or row.planned:
            return None
        policy = await replication.get_policy(conn, row.vendor_id)
        events = execution_events(row.extra)
        artifacts: list[Artifact] = []
        deletions: list[tuple[str, str]] = []
        destinations: list[int | None] = []
        try:
            if policy is None:
                raise PlanError(f"policy {row.vendor_id} no longer exists")
            source = await resolve_site(conn, policy.src_registry_id, settings)
            destinations = await destinations_of(conn, policy)
            for destination in destinations:
                await resolve_site(conn, destination, settings)  # each one must exist
            if events is not None:
                artifacts = event_artifacts(policy, events)
                deletions = event_deletions(policy, events)
            elif policy.src_registry_id is None:
                listed = await list_local_artifacts(conn, policy.filters)
                artifacts = [Artifact(a.repository, a.digest, a.tags) for a in listed]
        except (PlanError, SiteError) as exc:
            failure = str(exc)
    if failure is not None or policy is None:
        message = failure or "no policy"
        await db.run(lambda c: jobs.fail_execution(c, execution_id, message, now()))
        log.warning("execution_plan_failed", execution=execution_id, error=message)
        return None
    if events is None and policy.src_registry_id is not None:
        try:
            artifacts = await list_remote(source, policy.filters)
        except Exception as exc:
            if is_transient(exc):
                raise  # the source is down: planned again later
            message = f"listing the source: {describe(exc)}"
            await db.run(lambda c: jobs.fail_execution(c, execution_id, message, now()))
            log.warning("execution_plan_failed", execution=execution_id, error=message)
            return None
    try:
        tasks = copy_tasks(policy, policy.src_registry_id, destinations, artifacts, naming)
        tasks += deletion_tasks(policy, destinations, deletions, naming)
    except InvalidInput as exc:  # the namespace rule makes no valid name of a repository's
        message = f"destination name: {exc}"
        await db.run(lambda c: jobs.fail_execution(c, execution_id, message, now()))
        log.warning("execution_plan_failed", execution=execution_id, error=message)
        return None
    projects = sorted(
        {
            task.job["dst_repository"].split("/", 1)[0]
            for task in tasks
            if task.job["dst_registry_id"] is None and "/" in task.job["dst_repository"]
        }
    )

    async def write(conn: AsyncConnection) -> list[int] | None:
        if not await jobs.mark_planned(conn, execution_id, f"{len(tasks)} task(s)"):
            return None
        await _ensure_projects(conn, projects)
        ids = await jobs.add_tasks(conn, execution_id, tasks, now())
        await jobs.refresh_execution(conn, execution_id)
        return ids

    ids = await db.run(write)
    if ids is None:
        return None
    log.info("execution_planned", execution=execution_id, policy=policy.id, tasks=len(ids))
    return Planned(execution_id, ids)


async def _ensure_projects(conn: AsyncConnection, names: Sequence[str]) -> None:
    """A pull into this Wharf lands in projects that may not exist yet: made, owned by admin."""
    if not names:
        return
    admin = await find_user(conn, "admin")
    if admin is None:
        return  # the copy's push will fail and say why
    for name in names:
        if await find_project(conn, name) is None:
            await create_project(conn, name, admin.id)
