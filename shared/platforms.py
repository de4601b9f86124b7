"""The platform an index gives each manifest it lists (`linux/arm64/v8`): the `platform` object of
an OCI index's `manifests[]` entries, which Docker manifest lists share. The registry keeps it
with the index's rows (`manifest_child`), so that readers (the ui's API and portal) need the
database only, never the index's bytes in storage.

The spec makes `platform` optional and nothing checks it on a push, so whatever a client sends
must never fail one: a value that is not a short printable string is dropped (NULL) rather than
refused. `os` and `architecture` are the spec's required pair: without both, no platform at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Column lengths in `manifest_child`: generous for every value in use (`windows`,
# `arm64`, `v8`, `10.0.20348.2340`), bounded so that one odd index cannot bloat the table.
OS_LEN = 64
ARCHITECTURE_LEN = 64
VARIANT_LEN = 32
OS_VERSION_LEN = 128

# Printable ASCII without spaces: what the spec's values are made of, and safe in every
# backend's column, in JSON and in a page whatever the column's character set.
_TEXT = re.compile(r"[!-~]+")


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)

    def to_json(self) -> dict[str, str]:
        """Harbor's `platform` object (the OCI names), with the keys that are known."""
        found = {"os": self.os, "architecture": self.architecture}
        if self.variant:
            found["variant"] = self.variant
        if self.os_version:
            found["os.version"] = self.os_version
        return found

    @classmethod
    def from_columns(
        cls, os: str | None, architecture: str | None, variant: str | None, os_version: str | None
    ) -> Platform | None:
        """From `manifest_child`'s columns; None when unknown (an index recorded before they
        existed, or one that gave no usable platform)."""
        if not os or not architecture:
            return None
        return cls(os, architecture, variant or None, os_version or None)


def _text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str) or len(value) > limit or not _TEXT.fullmatch(value):
        return None
    return value


def parse_platform(value: Any) -> Platform | None:
    """A descriptor's `platform`, as far as it is usable; None for anything else (never raises)."""
    if not isinstance(value, dict):
        return None
    os = _text(value.get("os"), OS_LEN)
    architecture = _text(value.get("architecture"), ARCHITECTURE_LEN)
    if os is None or architecture is None:
        return None
    return Platform(
        os,
        architecture,
        _text(value.get("variant"), VARIANT_LEN),
        _text(value.get("os.version"), OS_VERSION_LEN),
    )
