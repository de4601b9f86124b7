"""Auth backends: whether a username and password prove a user, behind one interface.

The login flow reads the local user row of that name once (with the caller's roles, in one
query) and hands it to the backend; the database backend checks the password against the row's
hash, and a directory backend (LDAP, an HTTP endpoint, chosen by the runtime setting
`auth_mode`) checks the directory instead and may create or refresh the local row, returning it.
Every failure is None alike: an unknown user and a wrong password look the same to the caller,
in result and in time. A directory backend fails closed: an unreachable, slow or confused
directory is None (logged), never an exception and never a way in.

`wharf_shared.auth.modes.AuthModes` picks the backend per login by `auth_mode`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from wharf_shared.db.projects import Caller
from wharf_shared.passwords import verify_password


class AuthBackend(Protocol):
    name: str  # the auth mode it serves (db_auth, http_auth, ...)

    async def authenticate(self, username: str, password: str, local: Caller | None) -> Caller | None:
        """The local user the credentials prove (`local`, or a row the backend made), else None."""


class DatabaseBackend:
    """Users and argon2id password hashes in Wharf's own database (`db_auth`)."""

    name = "db_auth"

    async def authenticate(self, username: str, password: str, local: Caller | None) -> Caller | None:
        stored = local.password_hash if local is not None else None
        # The KDF runs even for unknown users (against a dummy hash), off the event loop.
        if not await asyncio.to_thread(verify_password, stored, password):
            return None
        return local


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a login's check decided (`caller`: None when refused) and which backend decided it:
    the audit log and the metrics name it."""

    backend: str
    caller: Caller | None
