"""`accounts.provision` on every backend: a directory user's local row made on the first login
and refreshed on the next ones, tagged with the backend; a local account is never taken over;
an e-mail address another user holds refuses; two first logins at once make one row."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from wharf_shared.db import accounts
from wharf_shared.db import tables as t
from wharf_shared.db.accounts import DirectoryUser
from wharf_shared.db.engine import Database


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=4)
    try:
        yield database
    finally:
        await database.close()


async def provision(db: Database, person: DirectoryUser, backend: str = "http_auth") -> accounts.User | None:
    async def go(conn: Any) -> accounts.User | None:
        return await accounts.provision(conn, backend, person)

    return await db.run(go)


async def backend_of(db: Database, user_id: int) -> str | None:
    async with db.read() as conn:
        query = sa.select(t.user_account.c.auth_backend).where(t.user_account.c.id == user_id)
        return (await conn.execute(query)).scalar()


async def test_made_then_refreshed(db: Database) -> None:
    made = await provision(db, DirectoryUser("erin", "erin@corp.test", "Erin"))
    assert made is not None
    assert (made.username, made.email, made.realname, made.password_hash, made.sysadmin) == (
        "erin",
        "erin@corp.test",
        "Erin",
        None,
        False,
    )
    assert await backend_of(db, made.id) == "http_auth"
    again = await provision(db, DirectoryUser("erin", "erin.doe@corp.test", "Erin Doe", sysadmin=True))
    assert again is not None
    assert (again.id, again.email, again.realname, again.sysadmin) == (
        made.id,
        "erin.doe@corp.test",
        "Erin Doe",
        True,
    )
    # sysadmin None: the local flag stays as it is (an admin may have granted it here).
    kept = await provision(db, DirectoryUser("erin", "erin.doe@corp.test", "Erin Doe"))
    assert kept is not None
    assert kept.sysadmin is True


async def test_a_local_account_is_not_taken_over(db: Database) -> None:
    async with db.transaction() as conn:
        await accounts.create_user(conn, "frank", "$argon2id$fake", email="frank@corp.test")
    assert await provision(db, DirectoryUser("frank", "frank@corp.test")) is None


async def test_an_email_held_by_another_user_refuses(db: Database) -> None:
    assert await provision(db, DirectoryUser("gina", "shared@corp.test")) is not None
    assert await provision(db, DirectoryUser("hank", "shared@corp.test")) is None
    async with db.read() as conn:
        assert await accounts.find_user(conn, "hank") is None


async def test_two_first_logins_at_once_make_one_row(db: Database) -> None:
    made = await asyncio.gather(*(provision(db, DirectoryUser("ivy", "ivy@corp.test")) for _ in range(4)))
    assert len({u.id for u in made if u is not None}) == 1
