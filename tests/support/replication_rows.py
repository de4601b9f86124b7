"""Rows the job service's tests start from: the admin, projects, repositories with manifests and
tags, registries and replication policies (written straight to the tables)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def digest(n: int) -> str:
    return "sha256:" + f"{n:064x}"


async def add_admin(db: Database) -> int:
    async with db.transaction() as conn:
        result = await conn.execute(
            sa.insert(t.user_account).values(username="admin", sysadmin=True, created_at=NOW, updated_at=NOW)
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]


async def add_repository(
    db: Database,
    name: str,
    manifests: Sequence[tuple[int, Sequence[str]]],
    *,
    children: Sequence[tuple[int, int]] = (),
) -> int:
    """`name` with manifests (digest number, tags) in order; `children`: (parent, child) numbers."""
    async with db.transaction() as conn:
        repo_id = int(
            (
                await conn.execute(sa.insert(t.repository).values(name=name, created_at=NOW, updated_at=NOW))
            ).inserted_primary_key[0]  # type: ignore[index]
        )
        ids: dict[int, int] = {}
        for i, (number, tags) in enumerate(manifests):
            media = OCI_INDEX if any(p == number for p, _ in children) else OCI_MANIFEST
            result = await conn.execute(
                sa.insert(t.manifest).values(
                    repository_id=repo_id,
                    digest=digest(number),
                    media_type=media,
                    size=100,
                    created_at=NOW + dt.timedelta(seconds=i),
                )
            )
            ids[number] = int(result.inserted_primary_key[0])  # type: ignore[index]
            for tag in tags:
                await conn.execute(
                    sa.insert(t.tag).values(
                        repository_id=repo_id,
                        name=tag,
                        manifest_id=ids[number],
                        created_at=NOW,
                        updated_at=NOW,
                    )
                )
        for parent, child in children:
            await conn.execute(sa.insert(t.manifest_child).values(parent_id=ids[parent], child_id=ids[child]))
    return repo_id


async def add_registry(db: Database, name: str, url: str, *, kind: str = "docker-registry") -> int:
    async with db.transaction() as conn:
        result = await conn.execute(
            sa.insert(t.registry_endpoint).values(
                name=name,
                description="",
                type=kind,
                url=url,
                insecure=False,
                credential_type="basic",
                status="unknown",
                created_at=NOW,
                updated_at=NOW,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]


async def add_policy(db: Database, name: str, **fields: Any) -> int:
    values: dict[str, Any] = {
        "name": name,
        "description": "",
        "src_registry_id": None,
        "dest_registry_id": None,
        "every_registry": False,
        "dest_namespace": None,
        "dest_namespace_replace_count": -1,
        "trigger_type": "manual",
        "cron": None,
        "filters": [],
        "replicate_deletion": False,
        "override": True,
        "enabled": True,
        "speed_kb": -1,
        "copy_by_chunk": False,
        "created_at": NOW,
        "updated_at": NOW,
        **fields,
    }
    values["filters"] = json.dumps(values["filters"])
    async with db.transaction() as conn:
        result = await conn.execute(sa.insert(t.replication_policy).values(**values))
        return int(result.inserted_primary_key[0])  # type: ignore[index]
