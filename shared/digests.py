"""Content digests (`algorithm:hex`): parsing, validation and hashing."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

# Registered algorithms and their encoded lengths (OCI image-spec, "Digests").
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")


class DigestError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @classmethod
    def parse(cls, value: str) -> Digest:
        if not isinstance(value, str) or not _GRAMMAR.match(value):
            raise DigestError(f"invalid digest {value!r}")
        algorithm, encoded = value.split(":", 1)
        length = ALGORITHMS.get(algorithm)
        if length is None:
            raise DigestError(f"unsupported digest algorithm {algorithm!r}")
        if len(encoded) != length or not re.fullmatch(r"[a-f0-9]+", encoded):
            raise DigestError(f"invalid {algorithm} digest {value!r}")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        if algorithm not in ALGORITHMS:
            raise DigestError(f"unsupported digest algorithm {algorithm!r}")
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> Any:
        return hashlib.new(self.algorithm)


def is_digest(reference: str) -> bool:
    return ":" in reference
