"""Docker token scopes: `type[(class)]:name:action,action`, several per request.

A request names at most `limit` scopes, and each is bounded: the name as the distribution spec
bounds repository names, the type and the action list to lengths no real client comes near. A
token grows with every scope it names, so the bounds are what keep tokens (and the work to cut
them) small.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from wharf_shared.references import NAME_MAX_LENGTH
from wharf_token.errors import InvalidScope

TYPE_MAX_LENGTH = 64
ACTIONS_MAX_LENGTH = 64
SCOPE_MAX_LENGTH = TYPE_MAX_LENGTH + 1 + NAME_MAX_LENGTH + 1 + ACTIONS_MAX_LENGTH
_ECHO = 80  # how much of a refused scope the answer repeats


@dataclass(frozen=True, slots=True)
class Scope:
    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"


def parse_scopes(values: Iterable[str], *, limit: int) -> list[Scope]:
    """Every `scope` parameter, each possibly holding several space-separated scopes."""
    scopes: list[Scope] = []
    for value in values:
        for item in value.split():
            if len(scopes) == limit:
                raise InvalidScope(f"too many scopes: at most {limit} per request", detail={"limit": limit})
            scopes.append(_parse(item))
    return scopes


def _parse(item: str) -> Scope:
    kind, sep, rest = item.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name:
        raise InvalidScope(f"malformed scope {item[:_ECHO]!r}: expected type:name:actions")
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidScope(f"scope name longer than {NAME_MAX_LENGTH} characters: {name[:_ECHO]!r}")
    if len(kind) > TYPE_MAX_LENGTH or len(actions) > ACTIONS_MAX_LENGTH:
        raise InvalidScope(
            f"scope type or actions longer than {TYPE_MAX_LENGTH} characters: {item[:_ECHO]!r}"
        )
    kind = kind.split("(", 1)[0]  # `repository(plugin)` is a resource class: same type
    return Scope(kind, name, frozenset(a for a in actions.split(",") if a))
