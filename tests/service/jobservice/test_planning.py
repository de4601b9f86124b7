"""Planning an execution on every backend: this Wharf's artifacts listed from SQL through the
policy's filters (an index's children come with it), one task per artifact and destination,
written once (a second planning adds nothing), zero artifacts → Success, a policy or registry
gone → Error, a pull into this Wharf creates the missing project, an event-based execution plans
only its events (a deletion when the policy replicates them)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support.replication_rows import add_admin, add_policy, add_registry, add_repository, digest
from wharf_jobservice.planning import Artifact, Planned, plan_execution
from wharf_jobservice.sites import Site
from wharf_shared.config import Settings
from wharf_shared.db import jobs
from wharf_shared.db import tables as t
from wharf_shared.db.artifact_listing import LocalArtifact, list_local_artifacts
from wharf_shared.db.engine import Database
from wharf_shared.db.projects import find_project
from wharf_shared.errors.domain import InvalidInput


def naming(repository: str, namespace: str | None, _count: int) -> str:
    """A stand-in for replication.naming (its rule is tested with it): the project replaced."""
    if namespace == "Bad Name":
        raise InvalidInput(f"{namespace}/{repository} is not a valid repository name")
    return f"{namespace}/{repository.split('/', 1)[-1]}" if namespace else repository


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url, secret_key="test-secret-key")  # type: ignore[arg-type]


async def nothing_remote(_site: Site, _filters: Sequence[Mapping[str, Any]]) -> list[Artifact]:
    raise AssertionError("no remote listing expected")


async def new_execution(db: Database, policy_id: int, extra: dict[str, Any] | None = None) -> int:
    async with db.transaction() as conn:
        return await jobs.create_execution(conn, jobs.REPLICATION, policy_id, "manual", extra)


async def plan(
    db: Database, settings: Settings, execution_id: int, lister: Any = nothing_remote
) -> Planned | None:
    return await plan_execution(
        db, settings, execution_id, naming=naming, list_remote=lister, now=lambda: dt.datetime.now(dt.UTC)
    )


async def tasks_of(db: Database, execution_id: int) -> list[tuple[str, str, str, dict[str, Any]]]:
    async with db.read() as conn:
        rows = await conn.execute(
            sa.select(t.task.c.operation, t.task.c.src_resource, t.task.c.dst_resource, t.task.c.job)
            .where(t.task.c.execution_id == execution_id)
            .order_by(t.task.c.id)
        )
        return [(r.operation, r.src_resource, r.dst_resource, json.loads(r.job)) for r in rows]


async def execution(db: Database, execution_id: int) -> jobs.Execution:
    async with db.read() as conn:
        found = await jobs.get_execution(conn, execution_id)
    assert found is not None
    return found


async def library(db: Database) -> None:
    await add_repository(
        db, "library/app", [(1, ["v1", "latest"]), (2, []), (4, []), (3, ["v2"])], children=[(3, 4)]
    )
    await add_repository(db, "library/tools/cli", [(5, ["v9"])])
    await add_repository(db, "team/x", [(6, ["v1"])])


async def test_local_listing_through_filters(db: Database) -> None:
    await library(db)
    async with db.read() as conn:
        everything = await list_local_artifacts(conn, [])
        filtered = await list_local_artifacts(
            conn, [{"type": "name", "value": "library/*"}, {"type": "tag", "value": "v*"}]
        )
    assert everything == [
        LocalArtifact(
            "library/app", digest(1), "application/vnd.oci.image.manifest.v1+json", ["latest", "v1"]
        ),
        LocalArtifact("library/app", digest(2), "application/vnd.oci.image.manifest.v1+json", []),
        LocalArtifact("library/app", digest(3), "application/vnd.oci.image.index.v1+json", ["v2"]),
        LocalArtifact("library/tools/cli", digest(5), "application/vnd.oci.image.manifest.v1+json", ["v9"]),
        LocalArtifact("team/x", digest(6), "application/vnd.oci.image.manifest.v1+json", ["v1"]),
    ]
    assert [(a.repository, a.digest, a.tags) for a in filtered] == [
        ("library/app", digest(1), ["v1"]),
        ("library/app", digest(3), ["v2"]),
    ]


async def test_push_policy_is_planned_once(db: Database, settings: Settings) -> None:
    await library(db)
    target = await add_registry(db, "target", "http://127.0.0.1:1")
    policy_id = await add_policy(
        db,
        "push",
        dest_registry_id=target,
        dest_namespace="mirror",
        filters=[{"type": "name", "value": "library/**"}, {"type": "tag", "value": "v*"}],
        override=False,
        speed_kb=512,
    )
    execution_id = await new_execution(db, policy_id)
    planned = await plan(db, settings, execution_id)
    assert planned is not None
    assert len(planned.task_ids) == 3
    tasks = await tasks_of(db, execution_id)
    assert [(op, src, dst) for op, src, dst, _ in tasks] == [
        ("copy", "library/app:v1", "mirror/app:v1"),
        ("copy", "library/app:v2", "mirror/app:v2"),
        ("copy", "library/tools/cli:v9", "mirror/tools/cli:v9"),
    ]
    assert tasks[0][3] == {
        "policy_id": policy_id,
        "src_registry_id": None,
        "dst_registry_id": target,
        "src_repository": "library/app",
        "digest": digest(1),
        "dst_repository": "mirror/app",
        "tags": ["v1"],
        "override": False,
        "speed_kb": 512,
    }
    found = await execution(db, execution_id)
    assert (found.status, found.planned) == (jobs.RUNNING, True)
    assert await plan(db, settings, execution_id) is None  # a duplicate message
    assert len(await tasks_of(db, execution_id)) == 3


async def test_nothing_to_copy_is_success_and_unusable_registry_is_error(
    db: Database, settings: Settings
) -> None:
    target = await add_registry(db, "target", "http://127.0.0.1:1")
    empty = await new_execution(db, await add_policy(db, "empty", dest_registry_id=target))
    assert await plan(db, settings, empty) is not None
    assert (await execution(db, empty)).status == jobs.SUCCESS
    locked = await add_registry(db, "locked", "http://127.0.0.1:3")
    async with db.transaction() as conn:  # a secret written under another key
        await conn.execute(
            sa.update(t.registry_endpoint)
            .where(t.registry_endpoint.c.id == locked)
            .values(access_secret="garbage")
        )
    gone = await new_execution(db, await add_policy(db, "locked", dest_registry_id=locked))
    assert await plan(db, settings, gone) is None
    failed = await execution(db, gone)
    assert failed.status == jobs.ERROR
    assert "registry locked: a stored secret cannot be decrypted" in failed.status_message
    await add_repository(db, "library/app", [(1, ["v1"])])
    misnamed = await new_execution(
        db, await add_policy(db, "misnamed", dest_registry_id=target, dest_namespace="Bad Name")
    )
    assert await plan(db, settings, misnamed) is None
    failed = await execution(db, misnamed)
    assert (failed.status, failed.planned) == (jobs.ERROR, True)
    assert "is not a valid repository name" in failed.status_message
    orphan = await new_execution(db, 424_242)
    assert await plan(db, settings, orphan) is None
    assert (await execution(db, orphan)).status == jobs.ERROR


async def test_every_registry_and_pull_into_this_wharf(db: Database, settings: Settings) -> None:
    await add_admin(db)
    await add_repository(db, "library/app", [(1, ["v1"])])
    one = await add_registry(db, "one", "http://127.0.0.1:1")
    two = await add_registry(db, "two", "http://127.0.0.1:2")
    fan_out = await new_execution(db, await add_policy(db, "fan-out", every_registry=True))
    assert await plan(db, settings, fan_out) is not None
    assert [job["dst_registry_id"] for *_, job in await tasks_of(db, fan_out)] == [one, two]

    seen: list[Site] = []

    async def remote(site: Site, filters: Sequence[Mapping[str, Any]]) -> list[Artifact]:
        seen.append(site)
        assert filters == [{"type": "name", "value": "upstream/**"}]
        return [Artifact("upstream/db", digest(8), ["15"])]

    pull = await add_policy(
        db,
        "pull",
        src_registry_id=one,
        dest_registry_id=None,
        dest_namespace="pulled",
        filters=[{"type": "name", "value": "upstream/**"}],
    )
    pulled = await new_execution(db, pull)
    assert await plan(db, settings, pulled, remote) is not None
    assert [s.registry_id for s in seen] == [one]
    assert [(src, dst) for _, src, dst, _ in await tasks_of(db, pulled)] == [
        ("upstream/db:15", "pulled/db:15")
    ]
    async with db.read() as conn:
        project = await find_project(conn, "pulled")
    assert project is not None


async def test_event_based_plans_only_its_events(db: Database, settings: Settings) -> None:
    target = await add_registry(db, "target", "http://127.0.0.1:1")
    policy_id = await add_policy(
        db, "events", dest_registry_id=target, trigger_type="event_based", replicate_deletion=True
    )
    events = [
        {"type": "push", "repository": "library/app", "digest": digest(1), "tag": "v1"},
        {"type": "delete", "repository": "library/old", "digest": digest(2), "tag": None, "kind": "manifest"},
    ]
    execution_id = await new_execution(db, policy_id, {"events": events})
    assert await plan(db, settings, execution_id) is not None
    assert [
        (op, src, dst, job.get("reference")) for op, src, dst, job in await tasks_of(db, execution_id)
    ] == [
        ("copy", "library/app:v1", "library/app:v1", None),
        ("deletion", f"library/old@{digest(2)}", f"library/old@{digest(2)}", digest(2)),
    ]


class Refused(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


async def test_remote_listing_failures(db: Database, settings: Settings) -> None:
    source = await add_registry(db, "upstream", "http://127.0.0.1:1")
    policy_id = await add_policy(db, "pull", src_registry_id=source, dest_registry_id=None)

    async def down(_site: Site, _filters: Sequence[Mapping[str, Any]]) -> list[Artifact]:
        raise Refused("503 Service Unavailable", transient=True)

    async def refused(_site: Site, _filters: Sequence[Mapping[str, Any]]) -> list[Artifact]:
        raise Refused("401 unauthorized", transient=False)

    execution_id = await new_execution(db, policy_id)
    with pytest.raises(Refused):  # the source is down: left unplanned, for the reconciler
        await plan(db, settings, execution_id, down)
    found = await execution(db, execution_id)
    assert (found.status, found.planned) == (jobs.RUNNING, False)
    assert await plan(db, settings, execution_id, refused) is None
    found = await execution(db, execution_id)
    assert found.status == jobs.ERROR
    assert found.status_message == "listing the source: Refused: 401 unauthorized"
