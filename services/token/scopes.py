"""Docker token scopes: `type[(class)]:name:action,action`, several per request."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from wharf_shared.errors.oci import TokenRequestInvalid


@dataclass(frozen=True, slots=True)
class Scope:
    type: str
    name: str
    actions: frozenset[str]


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Every `scope` parameter, each possibly holding several space-separated scopes."""
    scopes: list[Scope] = []
    for value in values:
        for item in value.split():
            kind, sep, rest = item.partition(":")
            name, sep2, actions = rest.rpartition(":")
            if not sep or not sep2 or not kind or not name:
                raise TokenRequestInvalid(detail={"scope": item}, message=f"malformed scope {item!r}")
            kind = kind.split("(", 1)[0]  # `repository(plugin)` is a resource class: same type
            scopes.append(Scope(kind, name, frozenset(a for a in actions.split(",") if a)))
    return scopes
