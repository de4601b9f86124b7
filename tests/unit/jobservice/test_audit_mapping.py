"""The audit mapping: each event type to Harbor's (resource_type, operation) and resource name."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from structlog.testing import capture_logs

from wharf_jobservice.audit import RULES, Mapper
from wharf_shared.events import AUDIT_OPERATIONS, AUDIT_RESOURCE_TYPES, new_event

DIGEST = "sha256:" + "a" * 64

# (event type, data) → (resource_type, operation, resource, username, project, counts a pull)
CASES: list[tuple[str, dict[str, Any], tuple[str, str, str, str, str | None, bool]]] = [
    (
        "push",
        {"repository": "library/app", "digest": DIGEST, "tag": "v1", "operator": "alice"},
        ("artifact", "create", "library/app:v1", "alice", "library", False),
    ),
    (
        "push",
        {"repository": "team/a/b", "digest": DIGEST, "tag": None, "operator": "bob"},
        ("artifact", "create", f"team/a/b@{DIGEST}", "bob", "team", False),
    ),
    (
        "pull",
        {"repository": "library/app", "digest": DIGEST, "tag": "v1", "operator": ""},
        ("artifact", "pull", "library/app:v1", "anonymous", "library", True),
    ),
    (
        "delete",
        {"repository": "library/app", "digest": DIGEST, "tag": None, "kind": "manifest", "operator": "carol"},
        ("artifact", "delete", f"library/app@{DIGEST}", "carol", "library", False),
    ),
    (
        "delete",
        {"repository": "library/app", "digest": DIGEST, "tag": "old", "kind": "tag", "operator": "carol"},
        ("tag", "delete", "library/app:old", "carol", "library", False),
    ),
    ("login", {"operator": "dave", "address": "10.0.0.1"}, ("user", "login", "dave", "dave", None, False)),
    (
        "user_group.create",
        {"group": "devs", "group_id": 3, "group_type": 1, "operator": "admin"},
        ("user_group", "create", "devs", "admin", None, False),
    ),
    (
        "project.create",
        {"project": "team", "project_id": 7, "operator": "admin"},
        ("project", "create", "team", "admin", "team", False),
    ),
    (
        "project.update",
        {"project": "team", "project_id": 7, "public": True, "operator": "admin"},
        ("project", "update", "team", "admin", "team", False),
    ),
    (
        "repository.delete",
        {"repository": "team/app", "operator": "admin"},
        ("repository", "delete", "team/app", "admin", "team", False),
    ),
    (
        "user.create",
        {"username": "erin", "operator": "admin"},
        ("user", "create", "erin", "admin", None, False),
    ),
    (
        "member.create",
        {"project": "team", "member": "erin", "operator": "admin"},
        ("member", "create", "team/erin", "admin", "team", False),
    ),
    (
        "configuration.update",
        {"keys": ["read_only", "self_registration"], "operator": "admin"},
        ("configuration", "update", "read_only,self_registration", "admin", None, False),
    ),
    (
        "registry.create",
        {"registry": "site-b", "registry_id": 3, "operator": "admin"},
        ("registry", "create", "site-b", "admin", None, False),
    ),
    (
        "replication_policy.delete",
        {"policy": "to-b", "policy_id": 4, "operator": "admin"},
        ("replication_policy", "delete", "to-b", "admin", None, False),
    ),
    (
        "replication.start",
        {"policy": "to-b", "policy_id": 4, "execution_id": 17, "operator": "admin"},
        ("replication", "start", "to-b#17", "admin", None, False),
    ),
    (
        "replication.stop",
        {"policy": "to-b", "policy_id": 4, "execution_id": 17, "operator": "ops"},
        ("replication", "stop", "to-b#17", "ops", None, False),
    ),
]


@pytest.mark.parametrize(("event_type", "data", "expected"), CASES)
def test_events_map_to_harbor_audit_fields(
    event_type: str, data: dict[str, Any], expected: tuple[str, str, str, str, str | None, bool]
) -> None:
    event = new_event(event_type, **data)
    record = Mapper().map(event)
    assert record is not None
    resource_type, operation, resource, username, project, pull = expected
    assert (record.resource_type, record.operation, record.resource) == (resource_type, operation, resource)
    assert (record.username, record.project, record.event_id) == (username, project, event["id"])
    assert record.op_time == dt.datetime.fromisoformat(event["time"])
    assert (record.pulled_repository is not None) == pull
    if pull:
        assert (record.pulled_repository, record.pulled_digest) == (data["repository"], data["digest"])


def test_project_id_in_the_event_is_kept() -> None:
    record = Mapper().map(new_event("project.delete", project="team", project_id=7, operator="admin"))
    assert record is not None
    assert record.project_id == 7


def test_blob_deletes_are_known_and_not_audited() -> None:
    with capture_logs() as logs:
        assert Mapper().map(new_event("delete", repository="library/app", digest=DIGEST, kind="blob")) is None
    assert logs == []


def test_unknown_type_is_skipped_and_logged_once() -> None:
    mapper = Mapper()
    with capture_logs() as logs:
        for _ in range(3):
            assert mapper.map(new_event("robot.create", name="robot$ci", operator="admin")) is None
        assert mapper.map(new_event("delete", repository="a/b", kind="volume")) is None
    assert [(e["event"], e["type"]) for e in logs] == [
        ("audit_event_type_unknown", "robot.create"),
        ("audit_event_type_unknown", "delete:volume"),
    ]


def test_long_names_are_cut_to_the_columns() -> None:
    record = Mapper().map(new_event("login", operator="u" * 1000))
    assert record is not None
    assert (len(record.resource), len(record.username)) == (512, 255)


def test_every_rule_names_harbor_values() -> None:
    for rule in RULES.values():
        if rule is not None:
            assert rule.resource_type in AUDIT_RESOURCE_TYPES
            assert rule.operation in AUDIT_OPERATIONS


def test_a_login_is_described_by_its_backend() -> None:
    record = Mapper().map(new_event("login", operator="erin", address="10.0.0.1", backend="http_auth"))
    assert record is not None
    assert (record.operation, record.resource, record.description) == ("login", "erin", "http_auth")
    older = Mapper().map(new_event("login", operator="erin", address="10.0.0.1"))  # before backends
    assert older is not None
    assert older.description is None
    push = Mapper().map(
        new_event("push", repository="library/app", digest="sha256:" + "0" * 64, operator="x")
    )
    assert push is not None
    assert push.description is None


def test_a_group_sync_is_an_update_of_the_group_described_by_its_changes() -> None:
    event = new_event(
        "user_group.sync",
        operator="wharf$jobservice",
        group="developers",
        group_id=4,
        group_type=1,
        added=["carol"],
        removed=["bob", "dave"],
    )
    record = Mapper().map(event)
    assert record is not None
    assert (record.resource_type, record.operation, record.resource, record.username) == (
        "user_group",
        "update",
        "developers",
        "wharf$jobservice",
    )
    assert record.description == "group sync: +carol -bob,dave"
    many = Mapper().map({**event, "data": {**event["data"], "removed": [f"user{i}" for i in range(100)]}})
    assert many is not None
    assert many.description is not None
    assert len(many.description) <= 255
    assert many.description.endswith("…")
