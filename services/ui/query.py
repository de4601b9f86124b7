"""Harbor's list parameters, parsed into small typed values: `q`, `sort`, `page`, `page_size`.

`q` is comma-separated `key=value` terms (Harbor's query language):

    name=foo         exact            Exact("foo")
    name=~foo        fuzzy (contains) Fuzzy("foo")
    id=[1~9]         range (either end may be empty)   Range("1", "9")
    name={a b c}     any of           AnyOf(("a", "b", "c"))
    name=(a b)       all of           AllOf(("a", "b"))

Values may be quoted with `"` or `'` (to hold spaces, commas or brackets). Values stay strings
here; a list's `Filters` table says which keys it takes, which kinds, and how to read a value
(int, bool, time), so every refusal is a 400 with a message naming the key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 10
MAX_QUERY_LENGTH = 4096


class QueryError(ValueError):
    """A list parameter that cannot be read; the message is for the client."""


@dataclass(frozen=True, slots=True)
class Exact:
    value: str


@dataclass(frozen=True, slots=True)
class Fuzzy:
    value: str


@dataclass(frozen=True, slots=True)
class Range:
    low: str | None
    high: str | None


@dataclass(frozen=True, slots=True)
class AnyOf:
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AllOf:
    values: tuple[str, ...]


Term = Exact | Fuzzy | Range | AnyOf | AllOf
Kind = Literal["exact", "fuzzy", "range", "any", "all"]
KIND: dict[type[Term], Kind] = {Exact: "exact", Fuzzy: "fuzzy", Range: "range", AnyOf: "any", AllOf: "all"}


@dataclass(frozen=True, slots=True)
class SortKey:
    field: str
    descending: bool


@dataclass(frozen=True, slots=True)
class Page:
    number: int  # from 1
    size: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


def _split_terms(text: str) -> list[str]:
    """Split on commas outside quotes and brackets."""
    terms: list[str] = []
    depth, quote, start = 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    if quote or depth != 0:
        raise QueryError("q: unbalanced quotes or brackets")
    terms.append(text[start:])
    return terms


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _words(inner: str) -> tuple[str, ...]:
    """Space-separated values, each optionally quoted."""
    words: list[str] = []
    current, quote, quoted = "", "", False
    for ch in inner:
        if quote:
            if ch == quote:
                quote = ""
            else:
                current += ch
        elif ch in "\"'":
            quote, quoted = ch, True
        elif ch == " ":
            if current or quoted:
                words.append(current)
            current, quoted = "", False
        else:
            current += ch
    if current or quoted:
        words.append(current)
    return tuple(words)


def _term(raw: str) -> Term:
    value = raw.strip()
    if value.startswith("~"):
        return Fuzzy(_unquote(value[1:]))
    if value.startswith("[") and value.endswith("]"):
        low, sep, high = value[1:-1].partition("~")
        if not sep:
            raise QueryError(f"q: a range is [min~max], not {raw!r}")
        return Range(_unquote(low) or None, _unquote(high) or None)
    if value.startswith("{") and value.endswith("}"):
        return AnyOf(_words(value[1:-1]))
    if value.startswith("(") and value.endswith(")"):
        return AllOf(_words(value[1:-1]))
    return Exact(_unquote(value))


def parse_q(text: str) -> dict[str, Term]:
    """`q`'s terms by key (a key given twice is refused: which one would win is a guess)."""
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(f"q: longer than {MAX_QUERY_LENGTH} characters")
    terms: dict[str, Term] = {}
    if not text.strip():
        return terms
    for part in _split_terms(text):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise QueryError(f"q: {part.strip()[:100]!r} is not key=value")
        if key in terms:
            raise QueryError(f"q: the key {key[:100]!r} is given twice")
        terms[key] = _term(value)
    return terms


def parse_sort(text: str, allowed: Mapping[str, object]) -> list[SortKey]:
    """`sort=name,-creation_time`: each field once, each one the list can sort by."""
    keys: list[SortKey] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        descending = part.startswith("-")
        name = part.lstrip("-")
        if name not in allowed:
            raise QueryError(f"sort: unknown field {name[:100]!r}; one of {', '.join(sorted(allowed))}")
        if any(k.field == name for k in keys):
            raise QueryError(f"sort: the field {name!r} is given twice")
        keys.append(SortKey(name, descending))
    return keys


def _integer(name: str, raw: str | None, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"{name}: {raw[:40]!r} is not an integer") from None
    if not low <= value <= high:
        raise QueryError(f"{name}: must be between {low} and {high}")
    return value


def parse_page(page: str | None, page_size: str | None) -> Page:
    return Page(
        _integer("page", page, 1, 1, 2**31 - 1),
        _integer("page_size", page_size, DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE),
    )


# -- typed readings of a value, for the `Filters` tables --------------------------------------

INT_MAX = 2**63 - 1


def as_int(key: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise QueryError(f"q: {key} takes integers, not {value[:40]!r}") from None
    if not -INT_MAX <= number <= INT_MAX:
        raise QueryError(f"q: {key} is out of range")
    return number


def as_bool(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise QueryError(f"q: {key} takes true or false, not {value[:40]!r}")
    return lowered == "true"


def as_time(key: str, value: str) -> dt.datetime:
    """Harbor's `2020-04-09 02:36:00` (UTC) or RFC 3339."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"q: {key} takes times like 2020-04-09 02:36:00, not {value[:40]!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def as_text(key: str, value: str) -> str:
    if "\x00" in value or len(value) > 1024:
        raise QueryError(f"q: {key} holds an unusable value")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise QueryError(f"q: {key} is not valid UTF-8") from None
    return value
