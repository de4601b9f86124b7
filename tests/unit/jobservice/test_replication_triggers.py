"""Which policies an event starts (event-based replication), and what the planner takes from an
execution's events: pure functions over policies and events."""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.support.replication_rows import NOW
from wharf_jobservice.planning import Artifact, event_artifacts, event_deletions, execution_events, resource
from wharf_jobservice.triggers import executions_for, policy_wants, trigger_event
from wharf_shared.db.replication import Policy

BASE = Policy(
    id=1,
    name="p",
    description="",
    src_registry_id=None,
    dest_registry_id=7,
    every_registry=False,
    dest_namespace=None,
    dest_namespace_replace_count=-1,
    trigger_type="event_based",
    cron=None,
    filters=[],
    replicate_deletion=False,
    override=True,
    enabled=True,
    speed_kb=-1,
    copy_by_chunk=False,
    created_at=NOW,
    updated_at=NOW,
)


def policy(**changes: Any) -> Policy:
    return dataclasses.replace(BASE, **changes)


def push(
    repository: str = "library/app", tag: str | None = "v1", digest: str = "sha256:aa"
) -> dict[str, Any]:
    return {"id": "e1", "type": "push", "data": {"repository": repository, "digest": digest, "tag": tag}}


def delete(repository: str = "library/app", tag: str | None = None, kind: str = "manifest") -> dict[str, Any]:
    data = {"repository": repository, "digest": "sha256:aa", "tag": tag, "kind": kind}
    return {"id": "e2", "type": "delete", "data": data}


def wants(p: Policy, raw: dict[str, Any]) -> bool:
    event = trigger_event(raw)
    return event is not None and policy_wants(p, event)


def test_only_tagged_pushes_and_deletes_are_triggers() -> None:
    assert trigger_event(push()) == {
        "type": "push",
        "repository": "library/app",
        "digest": "sha256:aa",
        "tag": "v1",
        "kind": None,
    }
    assert trigger_event(push(tag=None)) is None
    assert trigger_event(delete(kind="blob")) is None
    assert trigger_event({"id": "x", "type": "pull", "data": {"repository": "library/app"}}) is None
    assert trigger_event({"id": "x", "type": "login", "data": {}}) is None


def test_which_policies_an_event_starts() -> None:
    assert wants(BASE, push())
    assert not wants(policy(enabled=False), push())
    assert not wants(policy(trigger_type="manual"), push())
    assert not wants(policy(trigger_type="scheduled"), push())
    assert not wants(policy(src_registry_id=3, dest_registry_id=None), push())  # pull-based
    assert wants(policy(filters=[{"type": "name", "value": "library/**"}]), push())
    assert not wants(policy(filters=[{"type": "name", "value": "team/**"}]), push())
    assert wants(policy(filters=[{"type": "tag", "value": "v*"}]), push())
    assert not wants(policy(filters=[{"type": "tag", "value": "v*", "decoration": "excludes"}]), push())
    assert not wants(BASE, delete())  # deletions only when the policy replicates them
    assert wants(policy(replicate_deletion=True), delete())
    assert wants(policy(replicate_deletion=True), delete(tag="v1", kind="tag"))
    tagged = policy(replicate_deletion=True, filters=[{"type": "tag", "value": "release-*"}])
    assert not wants(tagged, delete(tag="v1", kind="tag"))
    assert wants(tagged, delete(tag="release-2", kind="tag"))


def test_a_batch_makes_one_execution_per_policy() -> None:
    library = policy(id=1, filters=[{"type": "name", "value": "library/**"}])
    everything = policy(id=2, replicate_deletion=True)
    events = [push("library/a", "v1"), push("team/b", "v2"), delete("library/a"), push("library/a", tag=None)]
    wanted = executions_for([library, everything], events)
    assert sorted(wanted) == [1, 2]
    assert [e["repository"] for e in wanted[1]] == ["library/a"]
    assert [(e["type"], e["repository"]) for e in wanted[2]] == [
        ("push", "library/a"),
        ("push", "team/b"),
        ("delete", "library/a"),
    ]


def test_planner_reads_the_events_back() -> None:
    events: list[dict[str, Any]] = [
        {"type": "push", "repository": "library/a", "digest": "sha256:aa", "tag": "v1"},
        {"type": "push", "repository": "library/a", "digest": "sha256:aa", "tag": "v2"},
        {"type": "push", "repository": "library/a", "digest": "sha256:bb", "tag": "dev"},
        {"type": "delete", "repository": "library/a", "digest": "sha256:cc", "tag": None, "kind": "manifest"},
        {"type": "delete", "repository": "library/a", "digest": "sha256:dd", "tag": "old", "kind": "tag"},
    ]
    assert execution_events({"events": events}) == events
    assert execution_events({"event": events[0]}) == [events[0]]
    assert execution_events({"fire_time": "x"}) is None
    p = policy(filters=[{"type": "tag", "value": "v*"}])
    assert event_artifacts(p, events) == [Artifact("library/a", "sha256:aa", ["v1", "v2"])]
    assert event_deletions(p, events) == []
    assert event_deletions(policy(replicate_deletion=True), events) == [
        ("library/a", "sha256:cc"),
        ("library/a", "old"),
    ]
    assert resource("library/a", "sha256:aa", ["v1", "v2"]) == "library/a:v1,v2"
    assert resource("library/a", "sha256:aa", []) == "library/a@sha256:aa"


def test_tags_added_and_removed_through_the_api_are_a_push_and_a_delete() -> None:
    data = {"repository": "library/app", "tag": "v2", "digest": "sha256:aa", "operator": "admin"}
    created = trigger_event({"id": "e3", "type": "tag.create", "data": data})
    assert created == {
        "type": "push",
        "repository": "library/app",
        "digest": "sha256:aa",
        "tag": "v2",
        "kind": None,
    }
    removed = trigger_event({"id": "e4", "type": "tag.delete", "data": data})
    assert removed == {
        "type": "delete",
        "repository": "library/app",
        "digest": "sha256:aa",
        "tag": "v2",
        "kind": "tag",
    }
    deleting = policy(replicate_deletion=True)
    assert policy_wants(deleting, removed)
    assert not policy_wants(policy(), removed)
    assert policy_wants(policy(), created)
