"""Token scope parsing and the project a repository belongs to."""

from __future__ import annotations

import pytest

from wharf_shared.errors.oci import TokenRequestInvalid
from wharf_token.grants import project_of
from wharf_token.scopes import Scope, parse_scopes


def test_several_scopes_in_parameters_and_within_one() -> None:
    scopes = parse_scopes(["repository:lib/app:pull,push", "repository:a/b:pull registry:catalog:*"])
    assert scopes == [
        Scope("repository", "lib/app", frozenset({"pull", "push"})),
        Scope("repository", "a/b", frozenset({"pull"})),
        Scope("registry", "catalog", frozenset({"*"})),
    ]


def test_resource_class_and_empty_actions() -> None:
    assert parse_scopes(["repository(plugin):lib/app:pull"]) == [
        Scope("repository", "lib/app", frozenset({"pull"}))
    ]
    assert parse_scopes(["repository:lib/app:"]) == [Scope("repository", "lib/app", frozenset())]
    assert parse_scopes([]) == []


@pytest.mark.parametrize("value", ["repository", "repository:lib/app", ":lib/app:pull", "repository::pull"])
def test_malformed_scopes_are_refused(value: str) -> None:
    with pytest.raises(TokenRequestInvalid):
        parse_scopes([value])


def test_project_is_the_first_path_component() -> None:
    assert project_of("library/app") == "library"
    assert project_of("team/group/app") == "team"
    assert project_of("app") is None
