"""What the audit log records of each event: a table from event type to Harbor's
(resource_type, operation) and how the resource is named. Plain functions, no I/O.

Harbor's values: resource types `artifact`, `tag`, `repository`, `project`, `user`, `member`, `user_group`,
`configuration`, `registry`, `replication_policy`; operations `create`, `delete`, `pull` (and
`login`, `update`). A replication execution started or stopped by hand is resource type
`replication`, operation `start` or `stop`, named `<policy>#<execution id>`. A configuration
change is named by the keys it changed (`read_only,self_registration`). An artifact is named
`<repository>:<tag>`, or `<repository>@<digest>` when no tag was used; a tag `<repository>:<tag>`.
An anonymous operator is recorded as `anonymous`, as Harbor does. A login's
`operation_description` (Harbor's newer audit field) is the auth backend that checked it
(`db_auth`, `http_auth`, ...); a group sync's (`user_group.sync`, an `update` of the group by the
job service's account) is who it added and removed (`group sync: +alice -bob`).

An event type missing from the table is not audited: `Mapper.map` returns None and logs the
type once per process (a newer service may emit types this consumer does not know yet). A type
mapped to `SKIP` is known and deliberately not audited (blob deletes: Harbor audits artifacts).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wharf_shared.db.audit import AuditRecord
from wharf_shared.logging import get_logger

log = get_logger(__name__)

ANONYMOUS = "anonymous"
MAX_RESOURCE = 512
MAX_USERNAME = 255
MAX_DESCRIPTION = 255

Data = Mapping[str, Any]


def _artifact(data: Data) -> str:
    repository = str(data.get("repository", ""))
    if data.get("tag"):
        return f"{repository}:{data['tag']}"
    return f"{repository}@{data.get('digest', '')}"


def _tag(data: Data) -> str:
    return f"{data.get('repository', '')}:{data.get('tag', '')}"


def _field(name: str) -> Callable[[Data], str]:
    return lambda data: str(data.get(name, ""))


def _keys(data: Data) -> str:
    keys = data.get("keys")
    return ",".join(map(str, keys)) if isinstance(keys, list) and keys else "configuration"


def _member(data: Data) -> str:
    return f"{data.get('project', '')}/{data.get('member', '')}"


def _execution(data: Data) -> str:
    return f"{data.get('policy', '')}#{data.get('execution_id', '')}"


def _synced(data: Data) -> str:
    """A group sync's change, as the description: `group sync: +alice,bob -carol`."""
    added, removed = data.get("added"), data.get("removed")
    words = ["group sync:"]
    if isinstance(added, list) and added:
        words.append("+" + ",".join(map(str, added)))
    if isinstance(removed, list) and removed:
        words.append("-" + ",".join(map(str, removed)))
    text = " ".join(words)
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


@dataclass(frozen=True, slots=True)
class Rule:
    resource_type: str
    operation: str
    resource: Callable[[Data], str]
    counts_pull: bool = False
    description: Callable[[Data], str | None] | None = None


SKIP = None

# Keyed by event type, or `<type>:<kind>` for events whose `kind` says what they touched.
RULES: dict[str, Rule | None] = {
    "push": Rule("artifact", "create", _artifact),
    "pull": Rule("artifact", "pull", _artifact, counts_pull=True),
    "delete:manifest": Rule("artifact", "delete", _artifact),
    "delete:tag": Rule("tag", "delete", _tag),
    "delete:blob": SKIP,
    "login": Rule("user", "login", _field("operator"), description=lambda data: data.get("backend") or None),
    "tag.create": Rule("tag", "create", _tag),
    "tag.delete": Rule("tag", "delete", _tag),
    "repository.delete": Rule("repository", "delete", _field("repository")),
    "project.create": Rule("project", "create", _field("project")),
    "project.delete": Rule("project", "delete", _field("project")),
    "project.update": Rule("project", "update", _field("project")),
    "user.create": Rule("user", "create", _field("username")),
    "user.delete": Rule("user", "delete", _field("username")),
    "user.update": Rule("user", "update", _field("username")),
    "member.create": Rule("member", "create", _member),
    "member.update": Rule("member", "update", _member),
    "member.delete": Rule("member", "delete", _member),
    "user_group.create": Rule("user_group", "create", _field("group")),
    "user_group.update": Rule("user_group", "update", _field("group")),
    "user_group.delete": Rule("user_group", "delete", _field("group")),
    "user_group.sync": Rule("user_group", "update", _field("group"), description=_synced),
    "configuration.update": Rule("configuration", "update", _keys),
    "registry.create": Rule("registry", "create", _field("registry")),
    "registry.update": Rule("registry", "update", _field("registry")),
    "registry.delete": Rule("registry", "delete", _field("registry")),
    "replication_policy.create": Rule("replication_policy", "create", _field("policy")),
    "replication_policy.update": Rule("replication_policy", "update", _field("policy")),
    "replication_policy.delete": Rule("replication_policy", "delete", _field("policy")),
    "replication.start": Rule("replication", "start", _execution),
    "replication.stop": Rule("replication", "stop", _execution),
}


def rule_key(event: Mapping[str, Any]) -> str:
    event_type = str(event.get("type", ""))
    kind = (event.get("data") or {}).get("kind")
    return f"{event_type}:{kind}" if kind else event_type


def _project(data: Data) -> str | None:
    if data.get("project"):
        return str(data["project"])
    repository = str(data.get("repository", ""))
    project, slash, _ = repository.partition("/")
    return project if slash else None


def _time(value: Any) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return dt.datetime.now(dt.UTC)
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _description(rule: Rule, data: Data) -> str | None:
    value = rule.description(data) if rule.description is not None else None
    return str(value)[:MAX_DESCRIPTION] if value else None


class Mapper:
    """Events to audit records by `rules`; each unknown type is logged once."""

    def __init__(self, rules: Mapping[str, Rule | None] = RULES) -> None:
        self._rules = rules
        self.unknown: set[str] = set()

    def map(self, event: Mapping[str, Any]) -> AuditRecord | None:
        key = rule_key(event)
        if key not in self._rules:
            if key not in self.unknown:
                self.unknown.add(key)
                log.warning("audit_event_type_unknown", type=key, event_id=event.get("id"))
            return None
        rule = self._rules[key]
        if rule is None:
            return None
        data: Data = event.get("data") or {}
        project_id = data.get("project_id")
        return AuditRecord(
            event_id=str(event["id"]),
            resource_type=rule.resource_type,
            resource=rule.resource(data)[:MAX_RESOURCE],
            operation=rule.operation,
            username=(str(data.get("operator") or "") or ANONYMOUS)[:MAX_USERNAME],
            op_time=_time(event.get("time")),
            description=_description(rule, data),
            project=_project(data),
            project_id=int(project_id) if isinstance(project_id, int) else None,
            pulled_repository=str(data["repository"])
            if rule.counts_pull and data.get("repository")
            else None,
            pulled_digest=str(data["digest"]) if rule.counts_pull and data.get("digest") else None,
        )
