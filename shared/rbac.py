"""Who may do what: Harbor's built-in project roles as one permission table.

Every service asks this module; nothing else encodes a rule. A permission is a (resource,
action) pair in a project; sysadmins may do everything; public projects let every logged-in
user (and, while anonymous access is on, anonymous callers) read and pull.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum


class Role(IntEnum):
    """Harbor's role ids."""

    PROJECT_ADMIN = 1
    DEVELOPER = 2
    GUEST = 3
    MAINTAINER = 4
    LIMITED_GUEST = 5


ROLE_NAMES = {
    Role.PROJECT_ADMIN: "projectAdmin",
    Role.DEVELOPER: "developer",
    Role.GUEST: "guest",
    Role.MAINTAINER: "maintainer",
    Role.LIMITED_GUEST: "limitedGuest",
}

# Which role counts when a user holds several in one project (directly and through groups, or
# through several groups): Harbor's order, strongest first. Not the ids' order.
PRECEDENCE = (Role.PROJECT_ADMIN, Role.MAINTAINER, Role.DEVELOPER, Role.GUEST, Role.LIMITED_GUEST)
RANK = {role: len(PRECEDENCE) - index for index, role in enumerate(PRECEDENCE)}  # higher is stronger
ROLE_OF_RANK = {rank: role for role, rank in RANK.items()}


def best_role(*roles: Role | None) -> Role | None:
    """The strongest of `roles` (None when there is none)."""
    held = [role for role in roles if role is not None]
    return max(held, key=RANK.__getitem__) if held else None


Permission = tuple[str, str]  # (resource, action)


def _grant(resource: str, *actions: str) -> set[Permission]:
    return {(resource, action) for action in actions}


# What every role may do, read off Harbor's built-in matrix (see ../shared/REFERENCE.md §2b).
_LIMITED_GUEST: set[Permission] = (
    _grant("project", "read")
    | _grant("quota", "read")
    | _grant("repository", "read", "list", "pull")
    | _grant("artifact", "read", "list")
    | _grant("artifact-addition", "read")
    | _grant("tag", "list")
    | _grant("accessory", "list")
    | _grant("configuration", "read")
    | _grant("scan", "read")
    | _grant("sbom", "read")
    | _grant("scanner", "read")
)
_GUEST: set[Permission] = (
    _LIMITED_GUEST
    | _grant("member", "read", "list")
    | _grant("label", "read", "list")
    | _grant("robot", "read", "list")
)
_DEVELOPER: set[Permission] = (
    _GUEST
    | _grant("repository", "create", "update", "push")
    | _grant("artifact", "create")
    | _grant("tag", "create")
    | _grant("artifact-label", "create", "delete")
    | _grant("tag-retention", "create", "read", "update", "delete", "list", "operate")
    | _grant("export-cve", "create", "read", "list")
)
_MAINTAINER: set[Permission] = (
    _DEVELOPER
    | _grant("repository", "delete")
    | _grant("artifact", "delete")
    | _grant("tag", "delete")
    | _grant("label", "create", "update", "delete")
    | _grant("immutable-tag", "create", "update", "delete", "list")
    | _grant("metadata", "read")
    | _grant("notification-policy", "read", "list")
    | _grant("scan", "create", "stop")
    | _grant("sbom", "create", "stop")
)
_PROJECT_ADMIN: set[Permission] = (
    _MAINTAINER
    | _grant("project", "update", "delete")
    | _grant("member", "create", "update", "delete")
    | _grant("metadata", "create", "read", "update", "delete", "list")
    | _grant("log", "list")
    | _grant("configuration", "update")
    | _grant("robot", "create", "update", "delete")
    | _grant("notification-policy", "create", "update", "delete")
    | _grant("scanner", "create")
    | _grant("preheat-policy", "create", "read", "update", "delete", "list")
)
# What a public project gives everyone who may see it (Harbor's public-project policy).
_PUBLIC: set[Permission] = (
    _grant("project", "read")
    | _grant("label", "read", "list")
    | _grant("repository", "list", "pull")
    | _grant("scan", "read")
    | _grant("scanner", "read")
    | _grant("tag", "list")
    | _grant("artifact", "read", "list")
    | _grant("artifact-addition", "read")
    | _grant("accessory", "list")
)

PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.LIMITED_GUEST: frozenset(_LIMITED_GUEST),
    Role.GUEST: frozenset(_GUEST),
    Role.DEVELOPER: frozenset(_DEVELOPER),
    Role.MAINTAINER: frozenset(_MAINTAINER),
    Role.PROJECT_ADMIN: frozenset(_PROJECT_ADMIN),
}
PUBLIC = frozenset(_PUBLIC)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking: a user (with the sysadmin flag), anonymous (`user_id` None), or one of
    Wharf's own services acting for itself (`system`: no user row)."""

    user_id: int | None
    username: str
    sysadmin: bool = False
    system: bool = False

    @property
    def anonymous(self) -> bool:
        return self.user_id is None and not self.system


ANONYMOUS = Identity(None, "")
# The job service's account at the token service (replication): a name no user can take (account
# rules refuse `$`), a system admin with every registry action on every repository, whether its
# project exists or not, and the catalog. Only the token service signs it in (with a password
# derived from the secret key, `wharf_shared.secrets`); `/api/` does not know it.
JOBSERVICE = Identity(None, "wharf$jobservice", sysadmin=True, system=True)
SYSTEM_IDENTITIES = {JOBSERVICE.username: JOBSERVICE}


def system_identity(subject: str) -> Identity | None:
    """The system identity a token's subject names, if it names one."""
    return SYSTEM_IDENTITIES.get(subject)


@dataclass(frozen=True, slots=True)
class ProjectAccess:
    """What a project is to one caller: its visibility and the caller's role in it (if any)."""

    project_id: int
    public: bool
    role: Role | None


def can(
    identity: Identity, access: ProjectAccess, resource: str, action: str, *, anonymous_access: bool
) -> bool:
    if identity.sysadmin:
        return True
    if access.role is not None and (resource, action) in PERMISSIONS[access.role]:
        return True
    if access.public and (resource, action) in PUBLIC:
        return not identity.anonymous or anonymous_access
    return False


# Registry token actions and the permission each stands for.
REGISTRY_ACTIONS: dict[str, Permission] = {
    "pull": ("repository", "pull"),
    "push": ("repository", "push"),
    "delete": ("artifact", "delete"),
}


def registry_actions(
    identity: Identity, access: ProjectAccess | None, requested: Iterable[str], *, anonymous_access: bool
) -> frozenset[str]:
    """The subset of requested registry actions (`pull`, `push`, `delete`, `*`) to grant.

    No project (it does not exist) grants nothing, except to a system identity, which is granted
    everything everywhere. `*` means every registry action, so it goes to callers who may do all
    of them (maintainers and up; clients such as skopeo ask for it to delete). Unknown actions are
    dropped.
    """
    if identity.system:
        return frozenset(a for a in requested if a in REGISTRY_ACTIONS or a == "*")
    if access is None:
        return frozenset()
    allowed = {
        action
        for action, permission in REGISTRY_ACTIONS.items()
        if can(identity, access, *permission, anonymous_access=anonymous_access)
    }
    granted = {action for action in requested if action in allowed}
    if "*" in requested and allowed == set(REGISTRY_ACTIONS):
        granted.add("*")
    return frozenset(granted)


def project_permissions(
    identity: Identity, access: ProjectAccess | None, *, anonymous_access: bool
) -> frozenset[Permission]:
    """Everything `identity` may do in one project (none in a project that does not exist)."""
    if access is None:
        return frozenset()
    if identity.sysadmin:
        return PERMISSIONS[Role.PROJECT_ADMIN] | PUBLIC
    granted: set[Permission] = set(PERMISSIONS[access.role]) if access.role is not None else set()
    if access.public and (not identity.anonymous or anonymous_access):
        granted |= PUBLIC
    return frozenset(granted)


# System-level resources (Harbor's system policies) and what a system admin may do with them.
SYSTEM: frozenset[Permission] = frozenset(
    _grant("audit-log", "list")
    | _grant("catalog", "read")
    | _grant("project", "create", "list")
    | _grant("user", "create", "read", "update", "delete", "list")
    | _grant("user-group", "create", "read", "update", "delete", "list")
    | _grant("registry", "create", "read", "update", "delete", "list")
    | _grant("replication", "create", "read", "list")
    | _grant("replication-policy", "create", "read", "update", "delete", "list")
    | _grant("replication-adapter", "list")
    | _grant("garbage-collection", "create", "read", "update", "list", "stop")
    | _grant("scan-all", "create", "read", "update", "stop")
    | _grant("system-volumes", "read")
    | _grant("purge-audit", "create", "read", "update", "list", "stop")
    | _grant("configuration", "read", "update")
)


def system_permissions(identity: Identity, *, project_creation_restriction: str) -> frozenset[Permission]:
    """What `identity` may do outside any project: everything for system admins; a signed-in user
    creates projects unless creation is restricted to admins."""
    if identity.sysadmin:
        return SYSTEM
    if not identity.anonymous and project_creation_restriction == "everyone":
        return frozenset(_grant("project", "create"))
    return frozenset()
