"""Harbor's destination namespace and flattening rule, case by case."""

from __future__ import annotations

import pytest

from wharf_jobservice.replication.naming import destination_repository
from wharf_shared.errors.domain import InvalidInput


@pytest.mark.parametrize(
    ("source", "namespace", "count", "expected"),
    [
        ("a/b/c/img", None, -1, "a/b/c/img"),  # no namespace: unchanged, whatever the count
        ("a/b/c/img", "", 2, "a/b/c/img"),
        ("a/b/c/img", "ns", -1, "ns/img"),  # flatten every level
        ("a/b/c/img", "ns", 0, "ns/a/b/c/img"),  # no flattening
        ("a/b/c/img", "ns", 1, "ns/b/c/img"),
        ("a/b/c/img", "ns", 2, "ns/c/img"),
        ("a/b/c/img", "ns", 3, "ns/img"),
        ("library/nginx", "mirror", 1, "mirror/nginx"),
        ("library/nginx", "mirror", 0, "mirror/library/nginx"),
        ("nginx", "mirror", 0, "mirror/nginx"),
        ("nginx", "mirror", -1, "mirror/nginx"),
    ],
)
def test_destination_names(source: str, namespace: str | None, count: int, expected: str) -> None:
    assert destination_repository(source, namespace, count) == expected


@pytest.mark.parametrize(
    ("source", "namespace", "count"),
    [
        ("a/b/c/img", "ns", 4),  # more levels than there are before the name
        ("nginx", "mirror", 1),
        ("library/app", "Bad Namespace", 0),  # the result is no repository name
        ("library/app", "x" * 250, 0),  # too long
    ],
)
def test_refused(source: str, namespace: str, count: int) -> None:
    with pytest.raises(InvalidInput):
        destination_repository(source, namespace, count)
