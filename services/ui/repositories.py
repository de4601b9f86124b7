"""Repositories as Harbor's API sees them: lists (a project's, and every one the caller may see),
one by name, its description, and its deletion with everything in it. Plain async functions over
a connection or the Database; domain errors, no HTTP.

A repository belongs to the project named by the part of its name before the first `/`; there
is no project column. A project's repositories are the name range [`proj/`, `proj0`) (`0`
follows `/` in byte order, and every backend compares these names byte-wise), which the unique
index on the name serves, and the project of each listed repository is joined on that range.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import ColumnElement, and_, exists, func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared import manifest_cache
from wharf_shared.db import manifests
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.groups import in_a_member_group
from wharf_shared.db.types import utcnow
from wharf_shared.errors.domain import NotFound
from wharf_shared.rbac import Identity
from wharf_ui.changes import record
from wharf_ui.listing import Filter, ListSpec
from wharf_ui.query import Page, SortKey, as_int, as_time

r = t.repository.c
p = t.project.c

REPOSITORIES = ListSpec(
    filters={
        "name": Filter(r.name),
        "id": Filter(r.id, as_int, frozenset({"exact", "range", "any"})),
        "project_id": Filter(p.id, as_int, frozenset({"exact", "any"})),  # every list joins the project
        "pull_count": Filter(r.pull_count, as_int, frozenset({"exact", "range"})),
        "creation_time": Filter(r.created_at, as_time, frozenset({"exact", "range"})),
        "update_time": Filter(r.updated_at, as_time, frozenset({"exact", "range"})),
    },
    sorts={
        "name": r.name,
        "pull_count": r.pull_count,
        "creation_time": r.created_at,
        "update_time": r.updated_at,
    },
    # Harbor's default: the newest repositories first.
    default_sort=(SortKey("creation_time", True),),
    tiebreak=r.id,
    tiebreak_descending=True,
)


@dataclass(frozen=True, slots=True)
class RepositoryInfo:
    id: int
    project_id: int
    name: str  # the full name, `proj/app`
    description: str
    artifact_count: int
    pull_count: int
    created_at: dt.datetime
    updated_at: dt.datetime


def in_project(project_name: str) -> ColumnElement[bool]:
    """The project's repositories, as a range of the unique name."""
    return and_(r.name >= project_name + "/", r.name < project_name + "0")


# The project a repository row belongs to (a join on the name range).
_OWNER = and_(r.name >= p.name + "/", r.name < p.name + "0")
_COLUMNS = (r.id, p.id.label("project_id"), r.name, r.description, r.pull_count, r.created_at, r.updated_at)


async def _artifact_counts(conn: AsyncConnection, ids: list[int]) -> dict[int, int]:
    """Artifacts per repository, for one page of them. A query of its own: as a correlated
    subquery in the list, SQLite would count for every row it sorts, not the page's ten."""
    if not ids:
        return {}
    m = t.manifest.c
    rows = await conn.execute(
        select(m.repository_id, func.count()).where(m.repository_id.in_(ids)).group_by(m.repository_id)
    )
    return {row[0]: int(row[1]) for row in rows}


async def _infos(conn: AsyncConnection, rows: list[Any]) -> list[RepositoryInfo]:
    counts = await _artifact_counts(conn, [row.id for row in rows])
    return [
        RepositoryInfo(
            row.id,
            row.project_id,
            row.name,
            row.description or "",
            counts.get(row.id, 0),
            int(row.pull_count),
            row.created_at,
            row.updated_at,
        )
        for row in rows
    ]


async def _page(
    conn: AsyncConnection, conditions: list[Any], order: list[Any], page: Page
) -> tuple[list[RepositoryInfo], int]:
    joined = t.repository.join(t.project, _OWNER)
    total = (await conn.execute(select(func.count()).select_from(joined).where(*conditions))).scalar()
    rows = await conn.execute(
        select(*_COLUMNS)
        .select_from(joined)
        .where(*conditions)
        .order_by(*order)
        .offset(page.offset)
        .limit(page.size)
    )
    return await _infos(conn, list(rows)), int(total or 0)


async def list_in_project(
    conn: AsyncConnection,
    project_id: int,
    project_name: str,
    conditions: list[Any],
    order: list[Any],
    page: Page,
) -> tuple[list[RepositoryInfo], int]:
    """One project's repositories (the name range narrows the scan; the id pins the join)."""
    return await _page(conn, [in_project(project_name), p.id == project_id, *conditions], order, page)


def visible_to(identity: Identity, *, anonymous_access: bool) -> ColumnElement[bool] | None:
    """Which projects' repositories the caller may list (None: none at all): a system admin
    every project's, a user the public ones and those they are a member of, an anonymous caller
    the public ones while anonymous access is on (Harbor's `/repositories`)."""
    if identity.sysadmin:
        return true()
    if identity.anonymous:
        return p.public == true() if anonymous_access else None
    m = t.project_member.c
    member = exists().where(m.project_id == p.id, m.user_id == identity.user_id)
    return or_(p.public == true(), member, in_a_member_group(p.id, identity.user_id))


async def stored_sizes(conn: AsyncConnection, ids: list[int]) -> dict[int, int]:
    """What each repository of one page stores: its manifests' bytes and the blobs (configs,
    layers) they reference, a blob shared by several of its artifacts counted once, which is
    what deleting the repository would let garbage collection free, blobs of other repositories
    aside. Two grouped queries over the page's ids (the `manifest_blob` (repository, blob) index
    and the manifest's repository index), so a page costs the same in a project of 10,000."""
    if not ids:
        return {}
    mf, mb, b = t.manifest.c, t.manifest_blob.c, t.blob.c
    sizes = dict.fromkeys(ids, 0)
    referenced = select(mb.repository_id, mb.blob_id).where(mb.repository_id.in_(ids)).distinct().subquery()
    queries = [
        select(mf.repository_id, func.sum(mf.size))
        .where(mf.repository_id.in_(ids))
        .group_by(mf.repository_id),
        select(referenced.c.repository_id, func.sum(b.size))
        .select_from(referenced.join(t.blob, b.id == referenced.c.blob_id))
        .group_by(referenced.c.repository_id),
    ]
    for query in queries:
        for repository_id, total in await conn.execute(query):
            sizes[repository_id] += int(total or 0)  # MySQL sums as DECIMAL
    return sizes


async def list_visible(
    conn: AsyncConnection, visible: ColumnElement[bool], conditions: list[Any], order: list[Any], page: Page
) -> tuple[list[RepositoryInfo], int]:
    return await _page(conn, [visible, *conditions], order, page)


async def get(conn: AsyncConnection, project_id: int, full_name: str) -> RepositoryInfo:
    rows = await conn.execute(
        select(*_COLUMNS)
        .select_from(t.repository.join(t.project, _OWNER))
        .where(r.name == full_name, p.id == project_id)
    )
    found = await _infos(conn, list(rows))
    if not found:
        raise NotFound(f"repository {full_name[:300]!r} not found")
    return found[0]


async def update_description(db: Database, project_id: int, full_name: str, description: str) -> None:
    async def go(conn: AsyncConnection) -> None:
        found = await get(conn, project_id, full_name)
        await conn.execute(
            update(t.repository).where(r.id == found.id).values(description=description, updated_at=utcnow())
        )

    await db.run(go)


async def remove(db: Database, redis: Redis, identity: Identity, project_id: int, full_name: str) -> None:
    """Delete the repository, its tags and artifacts in one transaction (the bytes stay for garbage
    collection), record `repository.delete`, then drop what the registry cached of it."""

    async def go(conn: AsyncConnection) -> None:
        found = await get(conn, project_id, full_name)
        await manifests.delete_repository(conn, found.id)
        await record(conn, "repository.delete", identity, repository=full_name)

    await db.run(go)
    await manifest_cache.invalidate(redis, full_name)
