"""Auth backends: who a username and password belong to.

One interface, so that LDAP, an HTTP validation endpoint and CAS can join later without
touching callers. Backends answer None for every failure alike: unknown user and wrong
password are indistinguishable to the caller, in result and in time.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from wharf_shared.db import accounts
from wharf_shared.db.engine import Database
from wharf_shared.passwords import verify_password
from wharf_shared.rbac import Identity


class AuthBackend(Protocol):
    name: str

    async def authenticate(self, username: str, password: str) -> Identity | None: ...


class DatabaseBackend:
    """Users and argon2id password hashes in Wharf's own database (`db_auth`)."""

    name = "db_auth"

    def __init__(self, db: Database) -> None:
        self._db = db

    async def authenticate(self, username: str, password: str) -> Identity | None:
        async with self._db.read() as conn:
            user = await accounts.find_user(conn, username)
        stored = user.password_hash if user is not None else None
        # The KDF runs even for unknown users (against a dummy hash), off the event loop.
        if not await asyncio.to_thread(verify_password, stored, password) or user is None:
            return None
        return Identity(user.id, user.username, user.sysadmin)
