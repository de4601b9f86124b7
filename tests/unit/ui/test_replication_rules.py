"""Replication's rules that need no database: registry URLs, and Harbor's status words read back."""

from __future__ import annotations

import pytest

from wharf_shared.db import jobs
from wharf_shared.errors.domain import InvalidInput
from wharf_ui.executions import EXECUTIONS, TASKS
from wharf_ui.query import QueryError
from wharf_ui.registries import check_url


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("https://registry.example.test", "https://registry.example.test"),
        ("https://registry.example.test/", "https://registry.example.test"),
        ("HTTP://Registry.Example.TEST:5000", "http://registry.example.test:5000"),
        ("http://10.1.2.3:80", "http://10.1.2.3:80"),
        ("https://[2001:db8::1]:8443/", "https://[2001:db8::1]:8443"),
        ("  https://localhost  ", "https://localhost"),
    ],
)
def test_urls_are_normalised(raw: str, normal: str) -> None:
    assert check_url(raw) == normal


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("", "required"),
        ("registry.example.test", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("https://registry.example.test/harbor", "no path"),
        ("https://registry.example.test/v2/", "no path"),
        ("https://registry.example.test?x=1", "no query"),
        ("https://registry.example.test/?", "no query"),
        ("https://registry.example.test#top", "no query"),
        ("https://u:p@registry.example.test", "credential"),
        ("https://registry.example.test:0", "port 0"),
        ("https://registry.example.test:70000", "not a valid URL"),
        ("https://registry.example.test:https", "not a valid URL"),
        ("https://[::1", "not a valid URL"),
        ("https://[zz::1]", "not a valid URL"),
        ("https://-bad-.test", "not a valid host"),
        ("https://bad..test", "not a valid host"),
        ("https://régistry.test", "ASCII"),
        ("https://a b.test", "without spaces"),
        ("https:\\\\host", "backslashes"),
        ("https://" + "a" * 1020, "at most 1024"),
    ],
)
def test_urls_refused_with_a_reason(raw: str, needle: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_url(raw)
    assert needle in caught.value.message


def test_harbors_status_words_are_read_back_to_row_statuses() -> None:
    read = EXECUTIONS.filters["status"].read
    assert [read("status", x) for x in ("InProgress", "Succeed", "Failed", "Stopped")] == [
        jobs.RUNNING,
        jobs.SUCCESS,
        jobs.ERROR,
        jobs.STOPPED,
    ]
    assert read("status", "Running") == jobs.RUNNING  # the rows' own word works too
    for wrong in ("Pending", "done", ""):
        with pytest.raises(QueryError):
            read("status", wrong)
    assert TASKS.filters["status"].read("status", "Pending") == jobs.PENDING
