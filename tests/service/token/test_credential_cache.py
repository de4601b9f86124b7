"""Remembered logins: a warm request skips the password KDF and costs one Redis round trip and
one SQL query; a cold one reads the user once; a changed password or a deleted user is noticed
at once, however fresh the cache entry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from redis.asyncio.client import Pipeline

from tests.service.token.conftest import ADMIN_PASSWORD, Suite, basic
from tests.support.slapd import PEOPLE
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.keys import DB, REDIS
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
    import wharf_shared.auth.backends

    def refuse(*_args: object) -> bool:
        raise AssertionError("the password KDF ran for a remembered login")

    with monkeypatch.context() as patch:
        patch.setattr(wharf_shared.auth.backends, "verify_password", refuse)
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


class Trips:
    """What the token service sends to its database and to Redis while counting is on."""

    def __init__(self) -> None:
        self.sql: list[str] = []
        self.redis: list[str] = []

    @property
    def user_reads(self) -> int:
        return sum("user_account" in statement for statement in self.sql)


@contextmanager
def counting(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> Iterator[Trips]:
    trips = Trips()
    engine = suite.token.app[DB].read_engine.sync_engine

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "configuration" not in statement:  # the runtime settings, read every few seconds
            trips.sql.append(statement)

    redis = suite.token.app[REDIS]
    real_command, real_pipeline = redis.execute_command, Pipeline.execute

    async def command(*args: Any, **options: Any) -> Any:
        trips.redis.append(str(args[0]))
        return await real_command(*args, **options)

    async def pipeline(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        trips.redis.append("pipeline")
        return await real_pipeline(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(redis, "execute_command", command)
        patch.setattr(Pipeline, "execute", pipeline)
        sa.event.listen(engine, "before_cursor_execute", on_execute)
        try:
            yield trips
        finally:
            sa.event.remove(engine, "before_cursor_execute", on_execute)


async def test_cold_login_reads_the_user_once_warm_login_is_one_round_trip_each(
    suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    await suite.add_project("library", public=False)
    assert await status(suite, "someone", "wrong") == 401  # Redis now holds the login scripts
    with counting(suite, monkeypatch) as cold:
        assert await status(suite, "admin", ADMIN_PASSWORD) == 200
    assert cold.user_reads == 1, cold.sql
    assert len(cold.sql) == 1, cold.sql  # the user and their roles, together
    assert len(cold.redis) == 2, cold.redis  # lockouts + cache; then the success recorded
    with counting(suite, monkeypatch) as warm:
        assert await status(suite, "admin", ADMIN_PASSWORD) == 200
    assert len(warm.sql) == 1, warm.sql
    assert len(warm.redis) == 1, warm.redis
    with counting(suite, monkeypatch) as failed:
        assert await status(suite, "admin", "wrong") == 401
    assert len(failed.sql) == 1, failed.sql
    assert len(failed.redis) == 2, failed.redis  # lockouts + cache; then the miss counted


async def test_a_remembered_login_skips_the_backend_in_every_mode(
    mode_suite: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under http_auth and ldap_auth as under db_auth: a warm login costs one SQL query and one
    Redis call and asks the OA (the directory) nothing; a wrong password is never remembered; a
    user gone (deleted here, and refused by the directory) is noticed at once."""
    suite = mode_suite
    await suite.add_person("erin", "Erin-pass-1")
    assert await status(suite, "erin", "Erin-pass-1") == 200  # verified, then remembered
    asked = list(suite.oa.requests) if suite.oa is not None else []
    with counting(suite, monkeypatch) as warm:
        assert await status(suite, "erin", "Erin-pass-1") == 200
    assert len(warm.sql) == 1, warm.sql
    assert len(warm.redis) == 1, warm.redis
    assert await status(suite, "erin", "wrong") == 401
    assert await status(suite, "erin", "wrong") == 401
    if suite.oa is not None:
        assert [u for u, _ in suite.oa.requests] == [u for u, _ in asked] + ["erin", "erin"]
        del suite.oa.users["erin"]
    if suite.slapd is not None:
        suite.slapd.delete_person("uid=erin," + PEOPLE)
    db = Database(suite.settings.effective_database_url, pool_size=1)
    try:
        async with db.transaction() as conn:
            await conn.execute(sa.delete(t.user_account).where(t.user_account.c.username == "erin"))
    finally:
        await db.close()
    assert await status(suite, "erin", "Erin-pass-1") == 401
