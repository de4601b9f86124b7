"""The project rules that need no database: `{project_name_or_id}`, metadata, role ids."""

from __future__ import annotations

import pytest

from wharf_shared.errors.domain import InvalidInput
from wharf_ui.members import check_role
from wharf_ui.projects import check_metadata, parse_reference, requested_public


@pytest.mark.parametrize(
    ("raw", "is_name", "expected"),
    [
        ("7", False, 7),
        ("007", False, 7),
        ("7", True, "7"),
        ("team", False, "team"),
        ("0", False, None),
        ("9" * 20, False, None),  # past BIGINT: no project has it
        ("9" * 20, True, "9" * 20),
        ("", True, None),
        ("a\x00b", False, None),
        ("\ud800", False, None),
        ("t" * 256, False, None),
        ("٣", False, "٣"),  # a digit to str.isdigit, not an ASCII number: a name (of nothing)
    ],
)
def test_name_or_id(raw: str, is_name: bool, expected: int | str | None) -> None:
    assert parse_reference(raw, is_name) == expected


def test_metadata_public_wins_over_the_deprecated_flag() -> None:
    assert requested_public("true", False) is True
    assert requested_public("false", True) is False
    assert requested_public(None, True) is True
    assert requested_public("", None) is None
    with pytest.raises(InvalidInput, match=r"metadata\.public"):
        requested_public("TRUE", None)


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"auto_scan": "true", "severity": "High", "reuse_sys_cve_allowlist": "false"},
        {"enable_content_trust": "false", "enable_content_trust_cosign": "", "prevent_vul": None},
    ],
)
def test_metadata_wharf_can_honour(metadata: dict[str, str | None]) -> None:
    check_metadata(metadata)


@pytest.mark.parametrize(
    ("metadata", "needle"),
    [
        ({"enable_content_trust": "true"}, "cannot enforce"),
        ({"enable_content_trust_cosign": "true"}, "cannot enforce"),
        ({"prevent_vul": "true"}, "cannot enforce"),
        ({"prevent_vul": "yes"}, "'true' or 'false'"),
        ({"auto_scan": "1"}, "'true' or 'false'"),
        ({"severity": "dire"}, "severity"),
    ],
)
def test_metadata_refused(metadata: dict[str, str | None], needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        check_metadata(metadata)


def test_roles_are_harbors_five() -> None:
    assert [int(check_role(i)) for i in range(1, 6)] == [1, 2, 3, 4, 5]
    for bad in (None, 0, 6, -1, 2**70):
        with pytest.raises(InvalidInput, match="role_id must be one of 1 \\(projectAdmin\\)"):
            check_role(bad)
