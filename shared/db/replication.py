"""Replication's registries (endpoints) and policies: the SQL of `registry_endpoint` and
`replication_policy`. The ui writes them through the API; the job service reads them to plan and
run executions. A policy's NULL registry is this Wharf."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.db.types import utcnow

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"

HARBOR = "harbor"
DOCKER_REGISTRY = "docker-registry"
REGISTRY_TYPES = (HARBOR, DOCKER_REGISTRY)

MANUAL = "manual"
SCHEDULED = "scheduled"
EVENT_BASED = "event_based"


@dataclass(frozen=True, slots=True)
class Registry:
    id: int
    name: str
    description: str
    type: str
    url: str
    insecure: bool
    credential_type: str
    access_key: str | None
    access_secret: str | None  # encrypted (wharf_shared.secrets.SecretBox); None: no password
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Policy:
    id: int
    name: str
    description: str
    src_registry_id: int | None  # None: this Wharf (a push-based policy)
    dest_registry_id: int | None  # None: this Wharf (pull-based), or every registry (every_registry)
    every_registry: bool
    dest_namespace: str | None
    dest_namespace_replace_count: int
    trigger_type: str
    cron: str | None
    filters: list[dict[str, Any]]
    replicate_deletion: bool
    override: bool
    enabled: bool
    speed_kb: int
    copy_by_chunk: bool
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def push_based(self) -> bool:
        return self.src_registry_id is None


_REGISTRY_COLUMNS = [t.registry_endpoint.c[name] for name in Registry.__dataclass_fields__]
_POLICY_COLUMNS = [t.replication_policy.c[name] for name in Policy.__dataclass_fields__]


def _policy(row: Any) -> Policy:
    values = dict(row._mapping)
    values["filters"] = json.loads(values["filters"] or "[]")
    return Policy(**values)


async def get_registry(conn: AsyncConnection, registry_id: int) -> Registry | None:
    query = select(*_REGISTRY_COLUMNS).where(t.registry_endpoint.c.id == registry_id)
    row = (await conn.execute(query)).first()
    return Registry(**row._mapping) if row else None


async def list_registries(conn: AsyncConnection) -> list[Registry]:
    rows = await conn.execute(select(*_REGISTRY_COLUMNS).order_by(t.registry_endpoint.c.id))
    return [Registry(**row._mapping) for row in rows]


async def get_policy(conn: AsyncConnection, policy_id: int) -> Policy | None:
    query = select(*_POLICY_COLUMNS).where(t.replication_policy.c.id == policy_id)
    row = (await conn.execute(query)).first()
    return _policy(row) if row else None


async def list_policies(
    conn: AsyncConnection, *, trigger_type: str | None = None, enabled: bool | None = None
) -> list[Policy]:
    query = select(*_POLICY_COLUMNS).order_by(t.replication_policy.c.id)
    if trigger_type is not None:
        query = query.where(t.replication_policy.c.trigger_type == trigger_type)
    if enabled is not None:
        query = query.where(t.replication_policy.c.enabled == enabled)
    return [_policy(row) for row in await conn.execute(query)]


# -- writes (the ui's, each inside the caller's transaction) --------------------------------------


@dataclass(frozen=True, slots=True)
class RegistryFields:
    """What a registry's writer sets; `access_secret` already encrypted."""

    name: str
    description: str
    type: str
    url: str
    insecure: bool
    credential_type: str
    access_key: str | None
    access_secret: str | None
    status: str


@dataclass(frozen=True, slots=True)
class PolicyFields:
    """What a policy's writer sets (`filters` already validated)."""

    name: str
    description: str
    src_registry_id: int | None
    dest_registry_id: int | None
    every_registry: bool
    dest_namespace: str | None
    dest_namespace_replace_count: int
    trigger_type: str
    cron: str | None
    filters: list[dict[str, Any]]
    replicate_deletion: bool
    override: bool
    enabled: bool
    speed_kb: int
    copy_by_chunk: bool


def _registry_values(fields: RegistryFields) -> dict[str, Any]:
    return {name: getattr(fields, name) for name in RegistryFields.__dataclass_fields__}


def _policy_values(fields: PolicyFields) -> dict[str, Any]:
    values = {name: getattr(fields, name) for name in PolicyFields.__dataclass_fields__}
    values["filters"] = json.dumps(fields.filters)
    return values


async def insert_registry(conn: AsyncConnection, fields: RegistryFields) -> int:
    now = utcnow()
    result = await conn.execute(
        insert(t.registry_endpoint).values(**_registry_values(fields), created_at=now, updated_at=now)
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


async def update_registry(conn: AsyncConnection, registry_id: int, fields: RegistryFields) -> bool:
    result = await conn.execute(
        update(t.registry_endpoint)
        .where(t.registry_endpoint.c.id == registry_id)
        .values(**_registry_values(fields), updated_at=utcnow())
    )
    return bool(result.rowcount)


async def set_registry_status(conn: AsyncConnection, registry_id: int, status: str) -> None:
    """What the latest check of the registry found (healthy, unhealthy); its update time stays."""
    await conn.execute(
        update(t.registry_endpoint).where(t.registry_endpoint.c.id == registry_id).values(status=status)
    )


async def delete_registry(conn: AsyncConnection, registry_id: int) -> bool:
    result = await conn.execute(delete(t.registry_endpoint).where(t.registry_endpoint.c.id == registry_id))
    return bool(result.rowcount)


async def registry_named(conn: AsyncConnection, name: str) -> int | None:
    """The id of the registry named `name`, if any."""
    row = (
        await conn.execute(select(t.registry_endpoint.c.id).where(t.registry_endpoint.c.name == name))
    ).first()
    return int(row[0]) if row else None


async def policies_using(conn: AsyncConnection, registry_id: int) -> list[int]:
    """The ids of the policies whose source or destination is this registry."""
    c = t.replication_policy.c
    rows = await conn.execute(
        select(c.id)
        .where(or_(c.src_registry_id == registry_id, c.dest_registry_id == registry_id))
        .order_by(c.id)
    )
    return [int(row[0]) for row in rows]


async def insert_policy(conn: AsyncConnection, fields: PolicyFields) -> int:
    now = utcnow()
    result = await conn.execute(
        insert(t.replication_policy).values(**_policy_values(fields), created_at=now, updated_at=now)
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


async def update_policy(conn: AsyncConnection, policy_id: int, fields: PolicyFields) -> bool:
    result = await conn.execute(
        update(t.replication_policy)
        .where(t.replication_policy.c.id == policy_id)
        .values(**_policy_values(fields), updated_at=utcnow())
    )
    return bool(result.rowcount)


async def delete_policy(conn: AsyncConnection, policy_id: int) -> bool:
    result = await conn.execute(delete(t.replication_policy).where(t.replication_policy.c.id == policy_id))
    return bool(result.rowcount)


async def policy_named(conn: AsyncConnection, name: str) -> int | None:
    """The id of the policy named `name`, if any."""
    row = (
        await conn.execute(select(t.replication_policy.c.id).where(t.replication_policy.c.name == name))
    ).first()
    return int(row[0]) if row else None


async def select_policies(
    conn: AsyncConnection, conditions: Sequence[Any], order: Sequence[Any], offset: int, limit: int
) -> list[Policy]:
    """A page of policies by the caller's conditions and order (the ui's lists)."""
    query = select(*_POLICY_COLUMNS).where(*conditions).order_by(*order).offset(offset).limit(limit)
    return [_policy(row) for row in await conn.execute(query)]
