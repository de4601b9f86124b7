"""Projects as Harbor's API sees them: who may see and change which project, and the SQL of
`project` (with its owner, the caller's role and its repository count) they need (SQLAlchemy
Core). Plain async functions over a connection; they raise domain errors and know nothing of
HTTP.

One lookup serves every endpoint under `/projects/{project_name_or_id}/…`: `resolve_project`
finds the project by name or id and checks one permission for the caller. Harbor's answers,
kept here: no such project is a 404 for everyone (sysadmin or not); a project the caller may
not act on is a 401 for an anonymous caller and a 403 for a signed-in one, so a signed-in
non-member learns that a private project of that name exists (Harbor does the same, and
`HEAD /projects?project_name=` tells anyone signed in anyway: names are one namespace). Lists
and search never show a private project to a non-member.

Repositories have no project column: the project of `team/app/web` is `team`, the part before
the first slash. A project's repositories are therefore the names from `team/` (inclusive) to
`team0` (exclusive; `0` follows `/` in ASCII), a range on the unique index of
`repository.name`, whose collation is byte-wise on every database. A range rather than LIKE,
since `_` and `.` are legal in project names.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared import rbac
from wharf_shared.accounts import MAX_NAME, check_project_name
from wharf_shared.db import projects as project_rows
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.groups import effective_role, group_rank, in_a_member_group
from wharf_shared.db.types import utcnow
from wharf_shared.errors.domain import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    Unauthenticated,
)
from wharf_shared.rbac import Identity, Permission, ProjectAccess, Role
from wharf_ui.changes import record
from wharf_ui.listing import Filter, ListSpec
from wharf_ui.query import INT_MAX, Page, SortKey, as_bool, as_int, as_time

p = t.project.c
u = t.user_account.c
m = t.project_member.c
r = t.repository.c

PROJECTS = ListSpec(
    filters={
        "name": Filter(p.name),
        "project_id": Filter(p.id, as_int, frozenset({"exact", "range", "any"})),
        "public": Filter(p.public, as_bool, frozenset({"exact"})),
        "owner": Filter(u.username),
        "creation_time": Filter(p.created_at, as_time, frozenset({"exact", "range"})),
        "update_time": Filter(p.updated_at, as_time, frozenset({"exact", "range"})),
    },
    sorts={
        "name": p.name,
        "project_id": p.id,
        "creation_time": p.created_at,
        "update_time": p.updated_at,
    },
    default_sort=(SortKey("name", False),),
    tiebreak=p.id,
)

READ: Permission = ("project", "read")
ROLE_IDS = frozenset(int(role) for role in Role)


@dataclass(frozen=True, slots=True)
class Project:
    """A project with what the API shows beside it: its owner's name and the caller's role."""

    id: int
    name: str
    public: bool
    owner_id: int
    owner_name: str
    created_at: dt.datetime
    updated_at: dt.datetime
    role: Role | None  # the caller's; None for a non-member

    @property
    def access(self) -> ProjectAccess:
        return ProjectAccess(self.id, self.public, self.role)


# -- reads ---------------------------------------------------------------------------------------


def _caller_id(identity: Identity) -> int:
    return identity.user_id if identity.user_id is not None else -1  # no user has id -1


def with_membership(joined: Any, identity: Identity) -> Any:
    """`joined` (which holds `project`) ⟕ the caller's direct membership: at most one row per
    project, the key being (project, user); what `visible_to` and the caller's role read (with
    the caller's groups, which they read through a correlated subquery)."""
    return joined.outerjoin(t.project_member, and_(m.project_id == p.id, m.user_id == _caller_id(identity)))


def _joined(identity: Identity) -> Any:
    """project ⋈ owner ⟕ the caller's membership."""
    return with_membership(t.project.join(t.user_account, u.id == p.owner_id), identity)


def _columns(identity: Identity) -> tuple[Any, ...]:
    through_groups = group_rank(p.id, _caller_id(identity))
    return (
        p.id,
        p.name,
        p.public,
        p.owner_id,
        u.username,
        p.created_at,
        p.updated_at,
        m.role_id,
        through_groups,
    )


def _project(row: Any) -> Project:
    role = effective_role(row[7], row[8])
    return Project(row[0], row[1], bool(row[2]), row[3], row[4], row[5], row[6], role)


def usable_name(name: str) -> bool:
    """Whether `name` could be a project's: within the column, and text every database takes
    (PostgreSQL refuses NUL; a lone surrogate cannot be encoded). Anything else names nothing."""
    if not name or len(name) > MAX_NAME or "\x00" in name:
        return False
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def parse_reference(raw: str, is_name: bool) -> int | str | None:
    """Harbor's `{project_name_or_id}`: an id when it reads as one (and the client did not say
    `X-Is-Resource-Name: true`), else a name; None when it can name no project at all."""
    if not is_name and raw.isascii() and raw.isdigit():
        number = int(raw)
        return number if 1 <= number <= INT_MAX else None
    return raw if usable_name(raw) else None


async def find(conn: AsyncConnection, reference: int | str, identity: Identity) -> Project | None:
    key = p.id == reference if isinstance(reference, int) else p.name == reference
    row = (await conn.execute(select(*_columns(identity)).select_from(_joined(identity)).where(key))).first()
    return _project(row) if row else None


def require(identity: Identity, project: Project, permission: Permission, *, anonymous_access: bool) -> None:
    """401 for an anonymous caller, 403 for a signed-in one, unless `permission` is granted."""
    if rbac.can(identity, project.access, *permission, anonymous_access=anonymous_access):
        return
    # Named as Harbor names permissions (`member:create`), which its clients show as they are.
    needed = f"{permission[0]}:{permission[1]} in project {project.name}"
    if identity.anonymous:
        raise Unauthenticated(f"sign in first: anonymous callers lack {needed}")
    raise Forbidden(f"{identity.username} lacks {needed}")


async def resolve_project(
    conn: AsyncConnection,
    raw: str,
    *,
    is_name: bool,
    identity: Identity,
    anonymous_access: bool,
    permission: Permission = READ,
) -> Project:
    """The project `{project_name_or_id}` names, once the caller is known to hold `permission`
    in it (a `wharf_shared.rbac` pair such as ("repository", "list")). 404 when there is no such
    project and the caller a system admin; 401/403 (see `require`) when the caller lacks the
    permission or, not being a system admin, when there is no such project."""
    reference = parse_reference(raw, is_name)
    project = await find(conn, reference, identity) if reference is not None else None
    if project is None:
        # Harbor's order: a caller who could not act on it learns nothing of whether it exists.
        # A system admin may act on anything, so for them the truth: it does not.
        needed = f"{permission[0]}:{permission[1]} in project {raw[:100]}"
        if identity.sysadmin:
            raise NotFound(f"project {raw[:100]!r} not found")
        if identity.anonymous:
            raise Unauthenticated(f"sign in first: anonymous callers lack {needed}")
        raise Forbidden(f"{identity.username} lacks {needed}")
    require(identity, project, permission, anonymous_access=anonymous_access)
    return project


def visible_to(identity: Identity) -> ColumnElement[bool]:
    """The projects a caller sees in lists and search: all for a sysadmin, public ones and their
    own (directly or through a group) for a user, public ones for an anonymous caller (whom the
    handler has let in). Reads the membership `with_membership` joins."""
    if identity.sysadmin:
        return true()
    if identity.anonymous:
        return p.public == true()
    return or_(p.public == true(), m.user_id.is_not(None), in_a_member_group(p.id, _caller_id(identity)))


async def list_projects(
    conn: AsyncConnection, identity: Identity, conditions: list[Any], order: list[Any], page: Page
) -> tuple[list[Project], int]:
    where = [visible_to(identity), *conditions]
    joined = _joined(identity)
    total = (await conn.execute(select(func.count()).select_from(joined).where(*where))).scalar()
    rows = await conn.execute(
        select(*_columns(identity))
        .select_from(joined)
        .where(*where)
        .order_by(*order)
        .offset(page.offset)
        .limit(page.size)
    )
    return [_project(row) for row in rows], int(total or 0)


def repositories_of(name: Any) -> ColumnElement[bool]:
    """The repositories of the project named `name` (a string, or the project's name column)."""
    return and_(r.name >= name + "/", r.name < name + "0")


async def repo_counts(conn: AsyncConnection, project_ids: list[int]) -> dict[int, int]:
    """Each project's number of repositories, in one query."""
    if not project_ids:
        return {}
    rows = await conn.execute(
        select(p.id, func.count(r.id))
        .select_from(t.project.join(t.repository, repositories_of(p.name)))
        .where(p.id.in_(project_ids))
        .group_by(p.id)
    )
    counts = {row[0]: int(row[1]) for row in rows}
    return {project_id: counts.get(project_id, 0) for project_id in project_ids}


async def repo_count(conn: AsyncConnection, name: str) -> int:
    total = await conn.execute(select(func.count()).select_from(t.repository).where(repositories_of(name)))
    return int(total.scalar() or 0)


async def member_counts(conn: AsyncConnection, project_id: int) -> dict[Role, int]:
    """Members by role, users and groups alike (a group counts once, as in Harbor)."""
    pg = t.project_group_member.c
    counts = dict.fromkeys(Role, 0)
    for query in (
        select(m.role_id, func.count()).where(m.project_id == project_id).group_by(m.role_id),
        select(pg.role_id, func.count()).where(pg.project_id == project_id).group_by(pg.role_id),
    ):
        for role_id, count in await conn.execute(query):
            if role_id in ROLE_IDS:
                counts[Role(role_id)] += int(count)
    return counts


async def name_taken(conn: AsyncConnection, name: str) -> bool:
    if not usable_name(name):
        return False
    return (await conn.execute(select(p.id).where(p.name == name))).first() is not None


@dataclass(frozen=True, slots=True)
class Summary:
    """Harbor's `/projects/{p}/summary`: the repository count for whoever may read the project;
    member counts by role only for those who may list its members (None otherwise)."""

    repo_count: int
    member_counts: dict[Role, int] | None


async def summary(
    conn: AsyncConnection, project: Project, identity: Identity, *, anonymous_access: bool
) -> Summary:
    counts = None
    if rbac.can(identity, project.access, "member", "list", anonymous_access=anonymous_access):
        counts = await member_counts(conn, project.id)
    return Summary(await repo_count(conn, project.name), counts)


def deletable_message(repositories: int) -> str | None:
    """Why a project may not be deleted yet (Harbor's rule: while it holds repositories)."""
    if repositories == 1:
        return "the project holds 1 repository: delete it first"
    if repositories:
        return f"the project holds {repositories} repositories: delete them first"
    return None


# -- writes (each one transaction through `Database.run`) ----------------------------------------


def may_create(identity: Identity, project_creation_restriction: str) -> None:
    if identity.anonymous:
        raise Unauthenticated("sign in to create projects")
    if project_creation_restriction == "adminonly" and not identity.sysadmin:
        raise Forbidden("only system admins may create projects (project_creation_restriction is adminonly)")


async def create(db: Database, identity: Identity, name: str, public: bool) -> int:
    """A project owned by the caller, who becomes its project admin; its id."""
    check_project_name(name)
    if identity.user_id is None:
        raise Unauthenticated("sign in to create projects")
    owner_id = identity.user_id

    async def go(conn: AsyncConnection) -> int:
        if await name_taken(conn, name):
            raise Conflict(f"a project named {name} already exists")
        now = utcnow()
        result = await conn.execute(
            t.project.insert().values(
                name=name, public=public, owner_id=owner_id, created_at=now, updated_at=now
            )
        )
        project_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        assert project_id is not None
        await project_rows.set_member(conn, int(project_id), owner_id, Role.PROJECT_ADMIN)
        await record(conn, "project.create", identity, project=name, project_id=int(project_id))
        return int(project_id)

    try:
        return await db.run(go)
    except IntegrityError:
        # The name's unique constraint decided a race with another creation (or the caller's
        # account was deleted meanwhile, which the foreign key refuses).
        raise Conflict(f"a project named {name} already exists") from None


async def set_visibility(
    db: Database, identity: Identity, raw: str, *, is_name: bool, anonymous_access: bool, public: bool | None
) -> None:
    async def go(conn: AsyncConnection) -> None:
        project = await resolve_project(
            conn,
            raw,
            is_name=is_name,
            identity=identity,
            anonymous_access=anonymous_access,
            permission=("project", "update"),
        )
        if public is not None and public != project.public:
            await conn.execute(
                update(t.project).where(p.id == project.id).values(public=public, updated_at=utcnow())
            )
            await record(
                conn, "project.update", identity, project=project.name, project_id=project.id, public=public
            )

    await db.run(go)


async def remove(
    db: Database, identity: Identity, raw: str, *, is_name: bool, anonymous_access: bool
) -> None:
    """Delete a project and its memberships; refused while it holds repositories (412)."""

    async def go(conn: AsyncConnection) -> None:
        project = await resolve_project(
            conn,
            raw,
            is_name=is_name,
            identity=identity,
            anonymous_access=anonymous_access,
            permission=("project", "delete"),
        )
        reason = deletable_message(await repo_count(conn, project.name))
        if reason is not None:
            raise PreconditionFailed(reason)
        await conn.execute(delete(t.project_member).where(m.project_id == project.id))
        await conn.execute(
            delete(t.project_group_member).where(t.project_group_member.c.project_id == project.id)
        )
        await conn.execute(delete(t.project).where(p.id == project.id))
        await record(conn, "project.delete", identity, project=project.name, project_id=project.id)

    await db.run(go)


# -- request bodies' metadata ------------------------------------------------------------------

BOOLEAN_TEXT = frozenset({"true", "false"})
SEVERITIES = frozenset({"none", "low", "medium", "high", "critical"})
# Harbor's project metadata that Wharf has no feature behind. Each accepted value reads the same
# as Wharf behaves (nothing is scanned on push, no allowlist) or asks for nothing it would have
# to enforce; a value that asks Wharf to refuse pulls (signed images only, no vulnerable ones)
# is a 400: Wharf cannot keep that promise, and silence would let the caller believe it does.
_UNSUPPORTED_GUARDS = ("enable_content_trust", "enable_content_trust_cosign", "prevent_vul")
_ACCEPTED_FLAGS = ("auto_scan", "auto_sbom_generation", "reuse_sys_cve_allowlist")


def check_metadata(metadata: dict[str, str | None]) -> None:
    for key in _UNSUPPORTED_GUARDS:
        value = metadata.get(key)
        if value is None or value == "":
            continue
        if value not in BOOLEAN_TEXT:
            raise InvalidInput(f"metadata.{key} should be 'true' or 'false', not {value[:40]!r}")
        if value == "true":
            raise InvalidInput(f"metadata.{key}: Wharf cannot enforce this policy; leave it 'false'")
    for key in _ACCEPTED_FLAGS:
        value = metadata.get(key)
        if value not in (None, "", *BOOLEAN_TEXT):
            raise InvalidInput(f"metadata.{key} should be 'true' or 'false', not {str(value)[:40]!r}")
    severity = metadata.get("severity")
    if severity not in (None, "") and str(severity).lower() not in SEVERITIES:
        raise InvalidInput(f"metadata.severity should be one of {', '.join(sorted(SEVERITIES))}")


def requested_public(metadata_public: str | None, public: bool | None) -> bool | None:
    """`metadata.public` ("true"/"false") wins over the deprecated top-level `public`."""
    if metadata_public is not None and metadata_public != "":
        if metadata_public not in BOOLEAN_TEXT:
            raise InvalidInput(f"metadata.public should be 'true' or 'false', not {metadata_public[:40]!r}")
        return metadata_public == "true"
    return public
