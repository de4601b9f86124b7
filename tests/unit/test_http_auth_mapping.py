"""`http_auth`'s reading of the OA's answer: dotted paths, the username check, admins by name
or group, and values of the wrong type left out (pure logic; the exchange itself is tested
against the OA stand-in in tests/service/token/test_http_auth.py)."""

from __future__ import annotations

from typing import Any

import pytest

from wharf_shared.auth.http import dig, person
from wharf_shared.runtime import HttpAuthSettings

MAPPED = HttpAuthSettings(
    http_authproxy_username_field="user.login",
    http_authproxy_email_field="user.mail",
    http_authproxy_realname_field="user.name",
    http_authproxy_groups_field="groups",
)


def test_dig() -> None:
    doc = {"a": {"b": {"c": 1}}, "l": [1]}
    assert dig(doc, "a.b.c") == 1
    assert dig(doc, "a.x") is None
    assert dig(doc, "l.0") is None  # paths name object keys only
    assert dig("text", "a") is None


def test_no_mapping_needs_no_answer() -> None:
    found = person(HttpAuthSettings(), "erin", b"not even json")
    assert found is not None
    assert (found.username, found.email, found.realname, found.sysadmin, found.groups) == (
        "erin",
        None,
        "",
        None,
        (),
    )


def test_the_mapping_reads_the_attributes() -> None:
    answer = {"user": {"login": "erin", "mail": "erin@corp.test", "name": "Erin"}, "groups": ["dev", 3, ""]}
    found = person(MAPPED, "erin", answer)
    assert found is not None
    assert (found.email, found.realname, found.groups, found.sysadmin) == (
        "erin@corp.test",
        "Erin",
        ("dev",),
        None,
    )


@pytest.mark.parametrize(
    "answer",
    [
        [],  # not an object
        "erin",
        {"user": {"login": "root"}},  # vouches for someone else
        {"user": {}},  # the username is mapped and missing
    ],
)
def test_an_answer_that_does_not_fit_is_refused(answer: Any) -> None:
    assert person(MAPPED, "erin", answer) is None


def test_wrong_types_are_left_out() -> None:
    answer = {"user": {"login": "erin", "mail": ["x"], "name": 5}, "groups": "dev"}
    found = person(MAPPED, "erin", answer)
    assert found is not None
    assert (found.email, found.realname, found.groups) == (None, "", ())
    long_mail = {"user": {"login": "erin", "mail": "x" * 250 + "@corp.test"}}
    assert person(MAPPED, "erin", long_mail).email is None  # type: ignore[union-attr]


def test_admins_by_username_or_group() -> None:
    config = HttpAuthSettings(
        http_authproxy_groups_field="groups",
        http_authproxy_admin_usernames=" root , ops-lead",
        http_authproxy_admin_groups="wharf-admins",
    )
    assert person(config, "ops-lead", {}).sysadmin is True  # type: ignore[union-attr]
    assert person(config, "erin", {"groups": ["wharf-admins"]}).sysadmin is True  # type: ignore[union-attr]
    assert person(config, "erin", {"groups": ["dev"]}).sysadmin is None  # type: ignore[union-attr]
