"""Replication filters (Harbor's shape) and Harbor's 6-field cron: pure logic."""

from __future__ import annotations

import datetime as dt

import pytest

from wharf_shared import cron
from wharf_shared.errors.domain import InvalidInput
from wharf_shared.replication_filters import repository_matches, selected_tags, tag_matches, validate


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("library/**", "library/app", True),
        ("library/**", "library/team/app", True),
        ("library/*", "library/team/app", False),
        ("library/*", "library/app", True),
        ("**", "a/b/c", True),
        ("{team,ops}/*", "ops/api", True),
        ("{team,ops}/*", "dev/api", False),
        ("lib?ary/app", "library/app", True),
        ("[lm]ibrary/**", "mibrary/x", True),
        ("library/app", "library/app2", False),
        ("", "anything/at/all", True),
    ],
)
def test_name_filter_is_a_doublestar_glob(pattern: str, name: str, expected: bool) -> None:
    assert repository_matches([{"type": "name", "value": pattern}], name) is expected


def test_tag_filter_matches_and_excludes() -> None:
    only_v1 = validate([{"type": "tag", "value": "v1.*"}])
    assert tag_matches(only_v1, "v1.2")
    assert not tag_matches(only_v1, "v2.0")
    not_dev = validate([{"type": "tag", "value": "*-dev", "decoration": "excludes"}])
    assert tag_matches(not_dev, "v1")
    assert not tag_matches(not_dev, "v1-dev")
    assert selected_tags(only_v1, ["v1.0", "latest", "v1.1"]) == ["v1.0", "v1.1"]
    assert selected_tags(only_v1, ["latest"]) is None


def test_untagged_artifacts_pass_only_everything_or_excludes() -> None:
    assert selected_tags([], []) == []
    assert selected_tags(validate([{"type": "tag", "value": "**"}]), []) == []
    assert selected_tags(validate([{"type": "tag", "value": "v*"}]), []) is None
    assert selected_tags(validate([{"type": "tag", "value": "v*", "decoration": "excludes"}]), []) == []


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ("library/**", "must be a list"),
        ([1], "must be an object"),
        ([{"type": "label", "value": "x"}], "not supported"),
        ([{"type": "colour", "value": "x"}], "must be one of"),
        ([{"type": "name", "value": "a"}, {"type": "name", "value": "b"}], "only one name"),
        ([{"type": "name", "value": 3}], "must be a string"),
        ([{"type": "name", "value": "a", "decoration": "excludes"}], "must be matches"),
        ([{"type": "tag", "value": "a", "decoration": "maybe"}], "matches or excludes"),
        ([{"type": "resource", "value": "chart"}], "image or artifact"),
    ],
)
def test_bad_filters_are_refused_with_a_reason(filters: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate(filters)


def test_filters_are_normalised() -> None:
    assert validate(None) == []
    normalised = [{"type": "tag", "value": "v*", "decoration": "matches"}]
    assert validate([{"type": "tag", "value": "v*"}]) == normalised


def test_cron_has_six_fields_seconds_first() -> None:
    assert cron.validate("  0 0 2 * *  * ") == "0 0 2 * * *"
    start = dt.datetime(2026, 1, 1, 1, 0, 0, tzinfo=dt.UTC)
    assert cron.next_after("0 0 2 * * *", start) == dt.datetime(2026, 1, 1, 2, 0, 0, tzinfo=dt.UTC)
    assert cron.next_after("*/5 * * * * *", start) == start + dt.timedelta(seconds=5)
    # Strictly after: a fire time is never returned twice.
    five = start + dt.timedelta(seconds=5)
    assert cron.next_after("*/5 * * * * *", five) == start + dt.timedelta(seconds=10)


@pytest.mark.parametrize(
    "expression", ["", "* * * * *", "61 * * * * *", "a b c d e f", None, "0 0 0 30 2 * *"]
)
def test_bad_cron_is_refused(expression: object) -> None:
    with pytest.raises(InvalidInput):
        cron.validate(expression)
