"""`/search`: the projects and repositories whose names contain a text, among those the caller
may see (`projects.visible_to`: a private project, and its repositories, only for its members
and system admins). Harbor answers everything at once, unpaged; Wharf answers at most `LIMIT`
of each kind, by name, so that a one-letter search over a large registry stays cheap."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.rbac import Identity
from wharf_ui import projects
from wharf_ui.projects import Project
from wharf_ui.query import Page

LIMIT = 100

p = t.project.c
r = t.repository.c
mf = t.manifest.c
mc = t.manifest_child.c


@dataclass(frozen=True, slots=True)
class RepositoryHit:
    project_id: int
    project_name: str
    project_public: bool
    repository_name: str
    pull_count: int
    artifact_count: int


async def find_projects(conn: AsyncConnection, identity: Identity, text: str) -> list[Project]:
    found, _total = await projects.list_projects(
        conn,
        identity,
        [p.name.contains(text, autoescape=True)],
        [p.name.asc(), p.id.asc()],
        Page(1, LIMIT),
    )
    return found


# Artifacts as Harbor counts them: the manifests of the repository that no index in it holds
# (an index's children are parts of one artifact).
_ARTIFACTS = (
    select(func.count())
    .select_from(t.manifest)
    .where(mf.repository_id == r.id, ~exists().where(mc.child_id == mf.id))
    .scalar_subquery()
)


async def find_repositories(conn: AsyncConnection, identity: Identity, text: str) -> list[RepositoryHit]:
    joined = projects.with_membership(
        t.repository.join(t.project, projects.repositories_of(p.name)), identity
    )
    rows = await conn.execute(
        select(p.id, p.name, p.public, r.name, r.pull_count, _ARTIFACTS)
        .select_from(joined)
        .where(projects.visible_to(identity), r.name.contains(text, autoescape=True))
        .order_by(r.name)
        .limit(LIMIT)
    )
    return [RepositoryHit(row[0], row[1], bool(row[2]), row[3], int(row[4]), int(row[5])) for row in rows]
