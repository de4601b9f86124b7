"""How a registry client signs in (`wharf_shared.remote`): a `WWW-Authenticate` challenge
parsed, Bearer tokens fetched from the realm and kept per scope set until shortly before they
expire, Basic credentials encoded. No I/O here but the token fetch's, which the client runs."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
DEFAULT_EXPIRES_IN = 60  # seconds, when the token service names none (Docker token spec)
_MARGIN = 10  # seconds before expiry at which a cached token is not used any more
_MAX_TOKENS = 256


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # "bearer" or "basic", lower case
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        return self.params.get("scope")


def parse_challenge(header: str | None) -> Challenge | None:
    """The first challenge of a `WWW-Authenticate` value (None when there is none)."""
    if not header or not header.strip():
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def scope_key(scopes: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(scopes)))


class TokenCache:
    """Bearer tokens by the set of scopes they were asked for, until `expires_in` (minus a
    margin) is over; bounded (the oldest entries go first)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}

    def get(self, key: tuple[str, ...]) -> str | None:
        found = self._tokens.get(key)
        if found is None:
            return None
        token, until = found
        if self._clock() >= until:
            del self._tokens[key]
            return None
        return token

    def put(self, key: tuple[str, ...], token: str, expires_in: float) -> None:
        if len(self._tokens) >= _MAX_TOKENS:
            self._tokens.pop(next(iter(self._tokens)))
        lifetime = max(expires_in - _MARGIN, expires_in / 2)
        self._tokens[key] = (token, self._clock() + lifetime)

    def drop(self, key: tuple[str, ...]) -> None:
        self._tokens.pop(key, None)
