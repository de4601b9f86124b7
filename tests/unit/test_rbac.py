"""The permission table and the registry actions it yields, written out role by role."""

from __future__ import annotations

import pytest

from wharf_shared import rbac
from wharf_shared.rbac import ANONYMOUS, Identity, ProjectAccess, Role

USER = Identity(7, "user")
ADMIN = Identity(1, "admin", sysadmin=True)
ALL = frozenset({"pull", "push", "delete", "*"})


def access(role: Role | None, *, public: bool = False) -> ProjectAccess:
    return ProjectAccess(1, public, role)


@pytest.mark.parametrize(
    ("role", "granted"),
    [
        (Role.PROJECT_ADMIN, {"pull", "push", "delete", "*"}),
        (Role.MAINTAINER, {"pull", "push", "delete", "*"}),
        (Role.DEVELOPER, {"pull", "push"}),
        (Role.GUEST, {"pull"}),
        (Role.LIMITED_GUEST, {"pull"}),
        (None, set()),
    ],
)
def test_registry_actions_by_role_in_a_private_project(role: Role | None, granted: set[str]) -> None:
    assert rbac.registry_actions(USER, access(role), ALL, anonymous_access=True) == granted


def test_public_project_gives_pull_to_users_and_to_anonymous_while_allowed() -> None:
    public = access(None, public=True)
    assert rbac.registry_actions(USER, public, ALL, anonymous_access=False) == {"pull"}
    assert rbac.registry_actions(ANONYMOUS, public, ALL, anonymous_access=True) == {"pull"}
    assert rbac.registry_actions(ANONYMOUS, public, ALL, anonymous_access=False) == set()
    assert rbac.registry_actions(ANONYMOUS, access(None), ALL, anonymous_access=True) == set()
    # A member of a public project keeps the role's rights on top.
    assert rbac.registry_actions(USER, access(Role.DEVELOPER, public=True), ALL, anonymous_access=True) == {
        "pull",
        "push",
    }


def test_sysadmin_gets_everything_and_unknown_project_nothing() -> None:
    assert rbac.registry_actions(ADMIN, access(None), ALL, anonymous_access=False) == ALL
    assert rbac.registry_actions(ADMIN, None, ALL, anonymous_access=True) == set()
    assert rbac.registry_actions(USER, None, {"pull"}, anonymous_access=True) == set()


def test_only_requested_and_known_actions_are_granted() -> None:
    maintainer = access(Role.MAINTAINER)
    assert rbac.registry_actions(USER, maintainer, {"pull"}, anonymous_access=True) == {"pull"}
    assert rbac.registry_actions(USER, maintainer, {"pull", "fly"}, anonymous_access=True) == {"pull"}
    assert rbac.registry_actions(USER, maintainer, set(), anonymous_access=True) == set()


@pytest.mark.parametrize(
    ("resource", "action", "lowest"),
    [
        # (resource, action, the least role allowed to; None: project admins only)
        ("repository", "pull", Role.LIMITED_GUEST),
        ("artifact", "read", Role.LIMITED_GUEST),
        ("member", "list", Role.GUEST),
        ("repository", "push", Role.DEVELOPER),
        ("tag", "create", Role.DEVELOPER),
        ("artifact", "delete", Role.MAINTAINER),
        ("tag", "delete", Role.MAINTAINER),
        ("repository", "delete", Role.MAINTAINER),
        ("member", "create", Role.PROJECT_ADMIN),
        ("project", "update", Role.PROJECT_ADMIN),
        ("project", "delete", Role.PROJECT_ADMIN),
    ],
)
def test_roles_are_ordered_in_the_matrix(resource: str, action: str, lowest: Role) -> None:
    order = [Role.LIMITED_GUEST, Role.GUEST, Role.DEVELOPER, Role.MAINTAINER, Role.PROJECT_ADMIN]
    for role in order:
        allowed = rbac.can(USER, access(role), resource, action, anonymous_access=True)
        assert allowed == (order.index(role) >= order.index(lowest)), (role, resource, action)
    assert rbac.can(ADMIN, access(None), resource, action, anonymous_access=False)
    assert not rbac.can(USER, access(None), resource, action, anonymous_access=True)


def test_public_projects_never_give_writes() -> None:
    for resource, action in (("repository", "push"), ("artifact", "delete"), ("member", "create")):
        assert not rbac.can(USER, access(None, public=True), resource, action, anonymous_access=True)
        assert not rbac.can(ANONYMOUS, access(None, public=True), resource, action, anonymous_access=True)


def test_role_ids_are_harbors() -> None:
    assert {role.name: role.value for role in Role} == {
        "PROJECT_ADMIN": 1,
        "DEVELOPER": 2,
        "GUEST": 3,
        "MAINTAINER": 4,
        "LIMITED_GUEST": 5,
    }
