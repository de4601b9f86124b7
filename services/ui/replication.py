"""Replication policies (Harbor's `/replication/policies`) as the API sees them: the rules a policy
meets, their list's SQL, and the writes through `wharf_shared.db.replication`, each one
transaction. Plain async functions; domain errors; no HTTP.

A policy copies between this Wharf and one registered registry: push-based when the destination
is the registry (the source is this Wharf), pull-based when the source is. Harbor names this
Wharf as registry id 0, or leaves the side out. Wharf's own `every_registry` makes a push-based
policy's destination every registered registry, those added later too.

Deleting a policy deletes its executions with their tasks and logs (as Harbor does), refused
(412) while one of them is still running.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared import cron, replication_filters
from wharf_shared.db import executions as execution_rows
from wharf_shared.db import jobs
from wharf_shared.db import replication as rows
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.replication import EVENT_BASED, MANUAL, SCHEDULED, Policy, PolicyFields, Registry
from wharf_shared.errors.domain import Conflict, InvalidInput, NotFound, PreconditionFailed
from wharf_shared.rbac import Identity
from wharf_ui.changes import record
from wharf_ui.listing import Filter, ListSpec
from wharf_ui.query import Page, SortKey, as_bool, as_int, as_time
from wharf_ui.registries import by_ids

p = t.replication_policy.c

POLICIES = ListSpec(
    filters={
        "id": Filter(p.id, as_int, frozenset({"exact", "range", "any"})),
        "name": Filter(p.name),
        "enabled": Filter(p.enabled, as_bool, frozenset({"exact"})),
        "src_registry_id": Filter(p.src_registry_id, as_int, frozenset({"exact", "any"})),
        "dest_registry_id": Filter(p.dest_registry_id, as_int, frozenset({"exact", "any"})),
        "trigger_type": Filter(p.trigger_type, kinds=frozenset({"exact", "any"})),
        "creation_time": Filter(p.created_at, as_time, frozenset({"exact", "range"})),
        "update_time": Filter(p.updated_at, as_time, frozenset({"exact", "range"})),
    },
    sorts={"id": p.id, "name": p.name, "creation_time": p.created_at, "update_time": p.updated_at},
    default_sort=(SortKey("id", False),),
    tiebreak=p.id,
)

TRIGGERS = (MANUAL, SCHEDULED, EVENT_BASED)
MAX_NAME = 255
MAX_DESCRIPTION = 1024
MAX_NAMESPACE = 255
MAX_REPLACE_COUNT = 127  # Harbor's int8
MAX_SPEED = 2**31 - 1
UNLIMITED = -1
MAX_CRON = 128  # the column's
ID_MAX = 2**63 - 1
# A repository namespace: path components as the distribution spec allows them.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAMESPACE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")


@dataclass(frozen=True, slots=True)
class PolicyInput:
    """A create's or an update's fields; None: not given (an update keeps what is stored).
    `registries_given`: whether the request named src_registry, dest_registry or every_registry;
    then `src_registry_id`/`dest_registry_id` are 0 for this Wharf (null, left out or id 0)."""

    name: str | None = None
    description: str | None = None
    registries_given: bool = False
    src_registry_id: int = 0
    dest_registry_id: int = 0
    every_registry: bool = False
    dest_namespace: str | None = None
    dest_namespace_replace_count: int | None = None
    trigger_given: bool = False
    trigger_type: str | None = None
    cron: str | None = None
    filters: list[dict[str, Any]] | None = None
    replicate_deletion: bool | None = None
    override: bool | None = None
    enabled: bool | None = None
    speed: int | None = None
    copy_by_chunk: bool | None = None


# -- rules -------------------------------------------------------------------------------------


def _name(name: str | None) -> str:
    if name is None or not name.strip():
        raise InvalidInput("name: required")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"name: at most {MAX_NAME} characters")
    return name


def _namespace(namespace: str | None) -> str | None:
    if not namespace:
        return None
    if len(namespace) > MAX_NAMESPACE or not _NAMESPACE.match(namespace):
        raise InvalidInput(
            f"dest_namespace: {namespace[:100]!r} is not a repository namespace "
            "(lower-case letters and digits, separated by ., _, __, - or /)"
        )
    return namespace


def _directions(given: PolicyInput) -> tuple[int | None, int | None, bool]:
    """(source id, destination id, every registry) from the request; None is this Wharf."""
    src, dest = given.src_registry_id, given.dest_registry_id
    for side, value in (("src_registry", src), ("dest_registry", dest)):
        if not 0 <= value <= ID_MAX:
            raise InvalidInput(f"{side}.id: {value} is no registry id (0 is this Wharf)")
    if given.every_registry:
        if src:
            raise InvalidInput(
                "every_registry: only for push-based policies (from this Wharf); a pull-based policy "
                "has one source registry: leave src_registry out or set every_registry false"
            )
        if dest:
            raise InvalidInput("every_registry: replaces dest_registry; give one or the other")
        return None, None, True
    if src and dest:
        raise InvalidInput(
            "src_registry and dest_registry are both remote registries: one side must be this Wharf "
            "(id 0 or left out)"
        )
    if not src and not dest:
        raise InvalidInput(
            "src_registry or dest_registry must be a registered registry (the other side is this "
            "Wharf), or every_registry true for a push-based policy to every registry"
        )
    return src or None, dest or None, False


def _trigger(given: PolicyInput, current: Policy | None, pull_based: bool) -> tuple[str, str | None]:
    if given.trigger_given:
        kind = given.trigger_type or ""
        if kind not in TRIGGERS:
            raise InvalidInput(f"trigger.type: one of {', '.join(TRIGGERS)}, not {kind[:40]!r}")
        schedule = cron.validate(given.cron) if kind == SCHEDULED else None
        if schedule is not None and len(schedule) > MAX_CRON:
            raise InvalidInput(f"trigger.trigger_settings.cron: at most {MAX_CRON} characters")
    elif current is not None:
        kind, schedule = current.trigger_type, current.cron
    else:
        kind, schedule = MANUAL, None
    if kind == EVENT_BASED and pull_based:
        raise InvalidInput(
            "trigger.type: event_based needs a push-based policy (only this Wharf's pushes and "
            "deletions are events); a pull-based policy runs manual or scheduled"
        )
    return kind, schedule


def _replace_count(value: int | None) -> int:
    if value is None:
        return -1
    if not -1 <= value <= MAX_REPLACE_COUNT:
        raise InvalidInput(
            "dest_namespace_replace_count: -1 (Harbor's legacy mode) "
            f"or 0 to {MAX_REPLACE_COUNT}, not {value}"
        )
    return value


def _speed(value: int) -> int:
    if value > MAX_SPEED:
        raise InvalidInput(f"speed: at most {MAX_SPEED} KB/s (-1 or 0: unlimited)")
    return UNLIMITED if value < 0 else value


def _description(value: str) -> str:
    if len(value) > MAX_DESCRIPTION:
        raise InvalidInput(f"description: at most {MAX_DESCRIPTION} characters")
    return value


def _fields(given: PolicyInput, current: Policy | None) -> PolicyFields:
    def pick(value: Any, stored: Any, default: Any) -> Any:
        if value is not None:
            return value
        return stored if current is not None else default

    if given.registries_given or current is None:
        src, dest, every = _directions(given)
    else:
        src, dest, every = current.src_registry_id, current.dest_registry_id, current.every_registry
    kind, schedule = _trigger(given, current, pull_based=src is not None)
    filters = (
        replication_filters.validate(given.filters)
        if given.filters is not None
        else (current.filters if current is not None else [])
    )
    return PolicyFields(
        name=_name(pick(given.name, current and current.name, None)),
        description=_description(pick(given.description, current and current.description, "")),
        src_registry_id=src,
        dest_registry_id=dest,
        every_registry=every,
        dest_namespace=_namespace(
            given.dest_namespace
            if given.dest_namespace is not None
            else (current.dest_namespace if current is not None else None)
        ),
        dest_namespace_replace_count=_replace_count(
            pick(given.dest_namespace_replace_count, current and current.dest_namespace_replace_count, -1)
        ),
        trigger_type=kind,
        cron=schedule,
        filters=filters,
        replicate_deletion=bool(
            pick(given.replicate_deletion, current and current.replicate_deletion, False)
        ),
        override=bool(pick(given.override, current.override if current else None, True)),
        enabled=bool(pick(given.enabled, current.enabled if current else None, True)),
        speed_kb=_speed(int(pick(given.speed, current and current.speed_kb, UNLIMITED))),
        copy_by_chunk=bool(pick(given.copy_by_chunk, current and current.copy_by_chunk, False)),
    )


async def _check_registries(conn: AsyncConnection, fields: PolicyFields) -> None:
    for side, registry_id in (
        ("src_registry", fields.src_registry_id),
        ("dest_registry", fields.dest_registry_id),
    ):
        if registry_id is not None and await rows.get_registry(conn, registry_id) is None:
            raise InvalidInput(f"{side}: no registry with id {registry_id}")


# -- reads -------------------------------------------------------------------------------------


def registry_ids(policies: list[Policy]) -> set[int]:
    ids = {x.src_registry_id for x in policies} | {x.dest_registry_id for x in policies}
    return {x for x in ids if x is not None}


async def get(conn: AsyncConnection, policy_id: int) -> tuple[Policy, dict[int, Registry]]:
    """The policy and the registries it names."""
    policy = await rows.get_policy(conn, policy_id)
    if policy is None:
        raise NotFound(f"replication policy {policy_id} not found")
    return policy, await by_ids(conn, registry_ids([policy]))


async def list_policies(
    conn: AsyncConnection, conditions: list[Any], order: list[Any], page: Page
) -> tuple[list[Policy], int, dict[int, Registry]]:
    """A page of policies, their total, and the registries they name (one query each)."""
    total = (
        await conn.execute(select(func.count()).select_from(t.replication_policy).where(*conditions))
    ).scalar()
    policies = await rows.select_policies(conn, conditions, order, page.offset, page.size)
    return policies, int(total or 0), await by_ids(conn, registry_ids(policies))


# -- writes (each one transaction through `Database.run`) ----------------------------------------


async def create(db: Database, given: PolicyInput, identity: Identity) -> int:
    fields = _fields(given, None)

    async def go(conn: AsyncConnection) -> int:
        if await rows.policy_named(conn, fields.name) is not None:
            raise Conflict(f"a replication policy named {fields.name!r} already exists")
        await _check_registries(conn, fields)
        policy_id = await rows.insert_policy(conn, fields)
        await record(conn, "replication_policy.create", identity, policy=fields.name, policy_id=policy_id)
        return policy_id

    try:
        return await db.run(go)
    except IntegrityError:  # the unique name decided a race, or a registry was deleted meanwhile
        raise Conflict(
            f"a replication policy named {fields.name!r} already exists, or its registry is gone"
        ) from None


async def update(db: Database, policy_id: int, given: PolicyInput, identity: Identity) -> None:
    async def go(conn: AsyncConnection) -> None:
        current = await rows.get_policy(conn, policy_id)
        if current is None:
            raise NotFound(f"replication policy {policy_id} not found")
        fields = _fields(given, current)
        other = await rows.policy_named(conn, fields.name)
        if other is not None and other != policy_id:
            raise Conflict(f"a replication policy named {fields.name!r} already exists")
        await _check_registries(conn, fields)
        await rows.update_policy(conn, policy_id, fields)
        await record(conn, "replication_policy.update", identity, policy=fields.name, policy_id=policy_id)

    try:
        await db.run(go)
    except IntegrityError:
        raise Conflict("another policy took that name meanwhile, or its registry is gone") from None


async def remove(db: Database, policy_id: int, identity: Identity) -> None:
    async def go(conn: AsyncConnection) -> None:
        current = await rows.get_policy(conn, policy_id)
        if current is None:
            raise NotFound(f"replication policy {policy_id} not found")
        running = await execution_rows.running_executions(conn, jobs.REPLICATION, policy_id)
        if running:
            raise PreconditionFailed(
                f"the execution {running[0]} of policy {policy_id} has not ended: stop it first "
                f"(PUT /api/v2.0/replication/executions/{running[0]})"
            )
        await execution_rows.delete_executions(conn, jobs.REPLICATION, policy_id)
        await rows.delete_policy(conn, policy_id)
        await record(conn, "replication_policy.delete", identity, policy=current.name, policy_id=policy_id)

    await db.run(go)
