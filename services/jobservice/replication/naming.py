"""A source repository's name at the destination: Harbor's destination namespace and flattening
(a policy's `dest_namespace` and `dest_namespace_replace_count`).

With no namespace the name is kept as it is. With one, the last path component (the image's
name) is always kept, and the components before it are replaced:

- `-1` (flatten every level): `a/b/c/img` → `ns/img`;
- `0` (no flattening): `a/b/c/img` → `ns/a/b/c/img`;
- `N`: the first N components go: with 1, `a/b/c/img` → `ns/b/c/img`; with 3, `ns/img`; more
  than there are components before the name is refused.
"""

from __future__ import annotations

from wharf_shared.errors.domain import InvalidInput
from wharf_shared.references import NAME_MAX_LENGTH, is_valid_name


def destination_repository(src_repo: str, dest_namespace: str | None, replace_count: int) -> str:
    if not dest_namespace:
        name = src_repo
    else:
        components = src_repo.split("/")
        *path, last = components
        if replace_count < 0:
            kept: list[str] = []
        elif replace_count > len(path):
            raise InvalidInput(
                f"the repository {src_repo!r} has {len(path)} path components before its name, "
                f"fewer than the flattening level {replace_count}",
                repository=src_repo,
            )
        else:
            kept = path[replace_count:]
        name = "/".join([dest_namespace.strip("/"), *kept, last])
    if len(name) > NAME_MAX_LENGTH or not is_valid_name(name):
        raise InvalidInput(f"{name[:NAME_MAX_LENGTH]!r} is not a valid repository name", repository=name)
    return name
