"""What a token grants: each requested scope cut down to what the caller's role allows.

A repository belongs to the project named by its first path component. An unknown project
grants nothing for its scopes (not an error: the client sees "denied" when it tries); a
repository that does not exist yet is granted like any other in its project (a push creates
it). `registry:catalog:*` is for sysadmins only. Unknown types and actions are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from wharf_shared import rbac
from wharf_shared.references import is_valid_name
from wharf_shared.tokens import Access
from wharf_token.scopes import Scope


def project_of(repository: str) -> str | None:
    head, sep, _rest = repository.partition("/")
    return head if sep else None


def project_names(scopes: Sequence[Scope]) -> set[str]:
    """The projects whose rows the scopes need."""
    names = {project_of(s.name) for s in scopes if s.type == "repository" and is_valid_name(s.name)}
    return {n for n in names if n}


def resolve(
    identity: rbac.Identity,
    access_by_project: Mapping[str, rbac.ProjectAccess],
    scopes: Sequence[Scope],
    *,
    anonymous_access: bool,
) -> list[Access]:
    """Each scope cut down to what the permission table allows (`access_by_project` holds the
    caller's view of every project in `project_names(scopes)` that exists)."""
    granted: list[Access] = []
    for scope in scopes:
        if scope.type == "registry" and scope.name == "catalog":
            actions = frozenset({"*"}) if identity.sysadmin and "*" in scope.actions else frozenset()
        elif scope.type == "repository" and is_valid_name(scope.name):
            project = project_of(scope.name)
            access = access_by_project.get(project) if project else None
            actions = rbac.registry_actions(
                identity, access, scope.actions, anonymous_access=anonymous_access
            )
        else:
            actions = frozenset()
        granted.append(Access(scope.type, scope.name, actions))
    return granted
