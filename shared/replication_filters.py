"""Replication policies' filters, in Harbor's shape: `[{"type", "value", "decoration"}]`.

- `name`: a doublestar glob on the full repository name (`library/**`, `**`, `{team,ops}/*`):
  `*` and `?` stay within one path segment, `**` spans segments, `[…]` and `{a,b}` as usual (a
  malformed pattern, `[a`, is taken literally).
- `tag`: a glob on the tag (`v1.*`), `decoration` `matches` (default) or `excludes`. An artifact is
  kept when one of its tags passes; an untagged artifact passes only a `matches` filter of `**`
  (or an empty value: no tag filter at all), and every `excludes` filter.
- `resource`: `image` or `artifact`; both mean every artifact here (there are no charts).
- `label`: Harbor's artifact labels, which Wharf does not have: refused.

The ui validates a policy's filters when it is written (`validate`); the job service applies them
(`repository_matches`, `tag_matches`, `artifact_matches`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from wcmatch import glob

from wharf_shared.errors.domain import InvalidInput

NAME = "name"
TAG = "tag"
RESOURCE = "resource"
LABEL = "label"
MATCHES = "matches"
EXCLUDES = "excludes"
_FLAGS = glob.GLOBSTAR | glob.BRACE | glob.DOTMATCH
_MAX_VALUE = 256
_EVERYTHING = ("", "**")


def validate(filters: Any) -> list[dict[str, str]]:
    """The filters, normalised (`decoration` filled in, at most one of each type); InvalidInput
    naming the first thing wrong."""
    if filters is None:
        return []
    if not isinstance(filters, list):
        raise InvalidInput("filters must be a list of {type, value, decoration} objects")
    seen: set[str] = set()
    normalised: list[dict[str, str]] = []
    for item in filters:
        if not isinstance(item, Mapping):
            raise InvalidInput("each filter must be an object with type and value")
        kind = item.get("type")
        value = item.get("value", "")
        decoration = item.get("decoration") or MATCHES
        if kind == LABEL:
            raise InvalidInput("label filters are not supported: Wharf has no artifact labels")
        if kind not in (NAME, TAG, RESOURCE):
            raise InvalidInput(f"filter type must be one of name, tag, resource (got {kind!r})")
        if kind in seen:
            raise InvalidInput(f"only one {kind} filter is allowed")
        seen.add(kind)
        if not isinstance(value, str) or len(value) > _MAX_VALUE:
            raise InvalidInput(
                f"the {kind} filter's value must be a string of at most {_MAX_VALUE} characters"
            )
        if decoration not in (MATCHES, EXCLUDES) or (decoration == EXCLUDES and kind != TAG):
            raise InvalidInput(
                f"the {kind} filter's decoration must be matches" + (" or excludes" if kind == TAG else "")
            )
        if kind == RESOURCE and value not in ("", "image", "artifact"):
            raise InvalidInput("the resource filter's value must be image or artifact")
        normalised.append({"type": kind, "value": value, "decoration": decoration})
    return normalised


def _pattern(filters: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    return next((f for f in filters if f.get("type") == kind), None)


def repository_matches(filters: Sequence[Mapping[str, Any]], repository: str) -> bool:
    found = _pattern(filters, NAME)
    if found is None or found.get("value", "") in _EVERYTHING:
        return True
    return glob.globmatch(repository, found["value"], flags=_FLAGS)


def tag_matches(filters: Sequence[Mapping[str, Any]], tag: str | None) -> bool:
    """Whether one tag (None: untagged) passes the tag filter."""
    found = _pattern(filters, TAG)
    if found is None:
        return True
    value = found.get("value", "")
    excludes = found.get("decoration") == EXCLUDES
    if tag is None:
        return excludes or value in _EVERYTHING
    hit = value in _EVERYTHING or glob.globmatch(tag, value, flags=_FLAGS)
    return hit != excludes


def selected_tags(filters: Sequence[Mapping[str, Any]], tags: Iterable[str]) -> list[str] | None:
    """The artifact's tags to replicate: those passing the tag filter; `[]` for an untagged artifact
    that passes; None when the artifact is not to be replicated."""
    tags = list(tags)
    if not tags:
        return [] if tag_matches(filters, None) else None
    kept = [tag for tag in tags if tag_matches(filters, tag)]
    return kept or None
