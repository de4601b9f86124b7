"""Repository names and tags, validated as the distribution spec defines them."""

from __future__ import annotations

import re

# One path component: lower-case alphanumerics separated by ".", "_", "__" or runs of "-".
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_PATTERN = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
NAME_MAX_LENGTH = 255
TAG_PATTERN = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")


def is_valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX_LENGTH and NAME_PATTERN.fullmatch(name) is not None


def is_valid_tag(tag: str) -> bool:
    return TAG_PATTERN.fullmatch(tag) is not None
