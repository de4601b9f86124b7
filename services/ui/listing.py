"""A list endpoint's table of what it filters and sorts by, and the SQL that follows from `q`
and `sort` (SQLAlchemy Core): each list declares its keys once, the rules live here."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, or_

from wharf_ui.query import KIND, AllOf, AnyOf, Exact, Fuzzy, Kind, QueryError, Range, SortKey, Term, as_text

Reader = Callable[[str, str], Any]


@dataclass(frozen=True, slots=True)
class Filter:
    column: ColumnElement[Any]
    read: Reader = as_text
    kinds: frozenset[Kind] = frozenset({"exact", "fuzzy", "any"})


@dataclass(frozen=True, slots=True)
class ListSpec:
    filters: Mapping[str, Filter]
    sorts: Mapping[str, ColumnElement[Any]]
    default_sort: Sequence[SortKey] = field(default_factory=tuple)
    tiebreak: ColumnElement[Any] | None = None  # a unique column: pages never overlap
    tiebreak_descending: bool = False  # Harbor breaks ties newest first in some lists


def _condition(key: str, f: Filter, term: Term) -> ColumnElement[bool]:
    kind = KIND[type(term)]
    if kind not in f.kinds:
        raise QueryError(f"q: {key} does not take {kind} matches; it takes {', '.join(sorted(f.kinds))}")
    if isinstance(term, Exact):
        exact: ColumnElement[bool] = f.column == f.read(key, term.value)
        return exact
    if isinstance(term, Fuzzy):
        return f.column.contains(f.read(key, term.value), autoescape=True)
    if isinstance(term, Range):
        parts = []
        if term.low is not None:
            parts.append(f.column >= f.read(key, term.low))
        if term.high is not None:
            parts.append(f.column <= f.read(key, term.high))
        if not parts:
            raise QueryError(f"q: the range for {key} has no end")
        return and_(*parts)
    values = [f.read(key, v) for v in term.values]
    if not values:
        raise QueryError(f"q: the list for {key} is empty")
    if len(values) > 100:
        raise QueryError(f"q: the list for {key} holds more than 100 values")
    if isinstance(term, AnyOf):
        return or_(*(f.column == v for v in values))
    assert isinstance(term, AllOf)
    return and_(*(f.column == v for v in values))


def where(spec: ListSpec, terms: Mapping[str, Term]) -> list[ColumnElement[bool]]:
    conditions = []
    for key, term in terms.items():
        f = spec.filters.get(key)
        if f is None:
            raise QueryError(f"q: unknown key {key[:100]!r}; one of {', '.join(sorted(spec.filters))}")
        conditions.append(_condition(key, f, term))
    return conditions


def order_by(spec: ListSpec, keys: Sequence[SortKey]) -> list[ColumnElement[Any]]:
    chosen = list(keys) or list(spec.default_sort)
    clauses: list[ColumnElement[Any]] = [
        spec.sorts[k.field].desc() if k.descending else spec.sorts[k.field].asc() for k in chosen
    ]
    if spec.tiebreak is not None:
        clauses.append(spec.tiebreak.desc() if spec.tiebreak_descending else spec.tiebreak.asc())
    return clauses
