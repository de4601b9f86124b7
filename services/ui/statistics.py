"""Harbor's `/statistics`: how many projects and repositories there are, as the caller may count
them, and how much storage the registry holds.

As Harbor counts: public projects and their repositories for everyone; a system admin gets
every project and repository (private = all - public) and the storage consumption; anyone else
the private projects they are a member of and their repositories, and a storage consumption of
0 (Harbor shows the storage to system admins only). Unlike Harbor, which leaves the totals 0
for non-admins, the totals are what the caller may see (private + public).

A repository belongs to the project its name starts with (`library/app` → `library`); the
join compares names byte-wise (`name/` ≤ repository < `name0`, '0' being the byte after '/'),
which the unique index on repository names serves, on every database.
The storage consumption counts each stored object once: every blob, and every manifest (kept
by digest, however many repositories hold it), summed over distinct digests.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, exists, false, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.db.groups import in_a_member_group
from wharf_shared.rbac import Identity

p, r, m = t.project.c, t.repository.c, t.project_member.c


def _in_project() -> Any:
    return and_(r.name >= p.name + "/", r.name < p.name + "0")


async def _count(conn: AsyncConnection, query: Any) -> int:
    return int((await conn.execute(query)).scalar() or 0)


async def storage_consumption(conn: AsyncConnection) -> int:
    b, mf = t.blob.c, t.manifest.c
    stored = select(b.digest, b.size).union(select(mf.digest, mf.size)).subquery()
    return await _count(conn, select(func.coalesce(func.sum(stored.c.size), 0)))


async def statistics(conn: AsyncConnection, identity: Identity) -> dict[str, int]:
    repos_of = t.repository.join(t.project, _in_project())
    public_projects = await _count(
        conn, select(func.count()).select_from(t.project).where(p.public == true())
    )
    public_repos = await _count(conn, select(func.count()).select_from(repos_of).where(p.public == true()))
    storage = 0
    if identity.sysadmin:
        total_projects = await _count(conn, select(func.count()).select_from(t.project))
        total_repos = await _count(conn, select(func.count()).select_from(t.repository))
        private_projects = total_projects - public_projects
        private_repos = total_repos - public_repos
        storage = await storage_consumption(conn)
    else:
        assert identity.user_id is not None  # statistics are for signed-in callers
        # A member directly or through a group (each project counted once).
        direct = exists().where(m.project_id == p.id, m.user_id == identity.user_id)
        mine = and_(p.public == false(), or_(direct, in_a_member_group(p.id, identity.user_id)))
        private_projects = await _count(conn, select(func.count()).select_from(t.project).where(mine))
        private_repos = await _count(
            conn, select(func.count()).select_from(t.project.join(t.repository, _in_project())).where(mine)
        )
        total_projects = private_projects + public_projects
        total_repos = private_repos + public_repos
    return {
        "private_project_count": private_projects,
        "private_repo_count": private_repos,
        "public_project_count": public_projects,
        "public_repo_count": public_repos,
        "total_project_count": total_projects,
        "total_repo_count": total_repos,
        "total_storage_consumption": storage,
    }
