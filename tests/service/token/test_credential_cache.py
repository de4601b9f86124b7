"""Remembered logins: a warm request skips the password KDF, and a changed password or a
deleted user is noticed at once, however fresh the cache entry."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.service.token.conftest import Suite, basic
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.passwords import hash_password

SCOPE = {"service": "wharf-registry", "scope": "repository:library/app:pull"}


@pytest.fixture
def db_kind() -> str:
    return "postgresql"


async def status(suite: Suite, username: str, password: str) -> int:
    resp = await suite.token.get("/service/token", params=SCOPE, headers=basic(username, password))
    return resp.status


async def test_password_change_and_deletion_void_remembered_logins(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id = await suite.add_user("carol", "first-password-1")
    assert await status(suite, "carol", "first-password-1") == 200  # verified, then remembered
    # A warm request does not run the KDF at all.
    import wharf_shared.auth.backends as backends

    def refuse(*_args: object) -> bool:
        raise AssertionError("the password KDF ran for a remembered login")

    with monkeypatch.context() as patch:
        patch.setattr(backends, "verify_password", refuse)
        assert await status(suite, "carol", "first-password-1") == 200

    db = Database(suite.settings.effective_database_url, pool_size=1)
    try:
        async with db.transaction() as conn:
            await conn.execute(
                sa.update(t.user_account)
                .where(t.user_account.c.id == user_id)
                .values(password_hash=hash_password("second-password-2"))
            )
        assert await status(suite, "carol", "first-password-1") == 401
        assert await status(suite, "carol", "second-password-2") == 200
        async with db.transaction() as conn:
            await conn.execute(sa.delete(t.user_account).where(t.user_account.c.id == user_id))
        assert await status(suite, "carol", "second-password-2") == 401
    finally:
        await db.close()
