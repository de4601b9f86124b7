"""Token scope parsing, its bounds, and the project a repository belongs to."""

from __future__ import annotations

import pytest

from wharf_token.errors import InvalidScope
from wharf_token.grants import project_of
from wharf_token.scopes import Scope, parse_scopes


def test_several_scopes_in_parameters_and_within_one() -> None:
    scopes = parse_scopes(
        ["repository:lib/app:pull,push", "repository:a/b:pull registry:catalog:*"], limit=64
    )
    assert scopes == [
        Scope("repository", "lib/app", frozenset({"pull", "push"})),
        Scope("repository", "a/b", frozenset({"pull"})),
        Scope("registry", "catalog", frozenset({"*"})),
    ]
    assert [str(s) for s in scopes] == [
        "repository:lib/app:pull,push",
        "repository:a/b:pull",
        "registry:catalog:*",
    ]


def test_resource_class_and_empty_actions() -> None:
    assert parse_scopes(["repository(plugin):lib/app:pull"], limit=1) == [
        Scope("repository", "lib/app", frozenset({"pull"}))
    ]
    assert parse_scopes(["repository:lib/app:"], limit=1) == [Scope("repository", "lib/app", frozenset())]
    assert parse_scopes([], limit=1) == []


@pytest.mark.parametrize("value", ["repository", "repository:lib/app", ":lib/app:pull", "repository::pull"])
def test_malformed_scopes_are_refused(value: str) -> None:
    with pytest.raises(InvalidScope, match="malformed scope"):
        parse_scopes([value], limit=64)


def test_the_number_of_scopes_is_bounded() -> None:
    three = ["repository:a/b:pull repository:a/c:pull", "repository:a/d:pull"]
    assert len(parse_scopes(three, limit=3)) == 3
    with pytest.raises(InvalidScope, match="at most 2"):
        parse_scopes(three, limit=2)


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        ("repository:" + "a" * 255 + ":pull", False),  # the spec's bound on repository names
        ("repository:" + "a" * 256 + ":pull", True),
        ("repository:a/b:" + ",".join(["pull"] * 13), False),  # 64 characters of actions
        ("repository:a/b:" + ",".join(["pull"] * 14), True),
        ("r" * 64 + ":a/b:pull", False),
        ("r" * 65 + ":a/b:pull", True),
    ],
)
def test_each_scope_is_bounded(value: str, refused: bool) -> None:
    if refused:
        with pytest.raises(InvalidScope, match="longer than"):
            parse_scopes([value], limit=1)
    else:
        assert len(parse_scopes([value], limit=1)) == 1


def test_project_is_the_first_path_component() -> None:
    assert project_of("library/app") == "library"
    assert project_of("team/group/app") == "team"
    assert project_of("app") is None
