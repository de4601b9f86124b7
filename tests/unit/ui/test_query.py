"""Harbor's list parameters: `q` into typed terms, `sort`, `page`/`page_size`; every refusal a
QueryError with a message."""

from __future__ import annotations

import datetime as dt

import pytest

from wharf_ui.query import (
    AllOf,
    AnyOf,
    Exact,
    Fuzzy,
    Page,
    QueryError,
    Range,
    SortKey,
    as_bool,
    as_int,
    as_text,
    as_time,
    parse_page,
    parse_q,
    parse_sort,
)


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("", {}),
        ("name=foo", {"name": Exact("foo")}),
        ("name=~foo", {"name": Fuzzy("foo")}),
        ("id=[1~9]", {"id": Range("1", "9")}),
        ("id=[~9]", {"id": Range(None, "9")}),
        ("id=[1~]", {"id": Range("1", None)}),
        ("name={a b  c}", {"name": AnyOf(("a", "b", "c"))}),
        ("name=(a b)", {"name": AllOf(("a", "b"))}),
        ("name={'a b' \"c,d\"}", {"name": AnyOf(("a b", "c,d"))}),
        ("name='x,y',id=[1~2]", {"name": Exact("x,y"), "id": Range("1", "2")}),
        ("a=1, b=~2", {"a": Exact("1"), "b": Fuzzy("2")}),
        (
            "creation_time=[2020-04-09 02:36:00~2020-04-10 00:00:00]",
            {"creation_time": Range("2020-04-09 02:36:00", "2020-04-10 00:00:00")},
        ),
        ("name=", {"name": Exact("")}),
    ],
)
def test_q_terms(text: str, terms: dict[str, object]) -> None:
    assert parse_q(text) == terms


@pytest.mark.parametrize(
    "text",
    ["noequals", "=value", "a=1,a=2", "name=[1", "name='open", "id=[1 2]", "x" * 5000],
)
def test_q_refusals(text: str) -> None:
    with pytest.raises(QueryError, match="q"):
        parse_q(text)


def test_sort() -> None:
    allowed = {"name": 1, "creation_time": 2}
    assert parse_sort("name,-creation_time", allowed) == [
        SortKey("name", False),
        SortKey("creation_time", True),
    ]
    assert parse_sort("", allowed) == []
    with pytest.raises(QueryError, match="unknown field"):
        parse_sort("password", allowed)
    with pytest.raises(QueryError, match="twice"):
        parse_sort("name,-name", allowed)


def test_page() -> None:
    assert parse_page(None, None) == Page(1, 10)
    assert parse_page("3", "100") == Page(3, 100)
    assert Page(3, 20).offset == 40
    for page, size in (("0", None), ("-1", None), ("x", None), (None, "101"), (None, "0"), ("1.5", None)):
        with pytest.raises(QueryError):
            parse_page(page, size)


def test_value_readers() -> None:
    assert as_int("id", "42") == 42
    assert as_bool("f", "TRUE") is True
    assert as_time("t", "2020-04-09 02:36:00") == dt.datetime(2020, 4, 9, 2, 36, tzinfo=dt.UTC)
    assert as_time("t", "2020-04-09T02:36:00Z") == dt.datetime(2020, 4, 9, 2, 36, tzinfo=dt.UTC)
    for reader, value in ((as_int, "x"), (as_int, str(2**64)), (as_bool, "yes"), (as_time, "soon")):
        with pytest.raises(QueryError):
            reader("k", value)
    with pytest.raises(QueryError):
        as_text("k", "a\x00b")
    with pytest.raises(QueryError):
        as_text("k", "\ud800")
