"""The CMDB sync on its schedule in two real `wharf-jobservice worker` processes against a CMDB
stand-in: the one leader runs it (each second's fire time once: the CMDB is asked about once a
second, not twice), the project and its members appear, and with an events relay running as the
ui's does, the workers' own audit consumer records the changes under the sync's operator."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from redis.asyncio import Redis

from tests.service.jobservice.test_worker_process import wait_for, worker_env
from tests.support.cmdb import TOKEN, Cmdb
from tests.support.processes import jobservice_worker_process
from wharf_shared import runtime
from wharf_shared.config import Settings
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.types import utcnow
from wharf_shared.events import EventRelay
from wharf_shared.metrics import Metrics
from wharf_shared.secrets import SecretBox

pytestmark = pytest.mark.slow

OPERATOR = "wharf$cmdb-sync"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=2)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def cmdb() -> AsyncIterator[Cmdb]:
    server = Cmdb(document={"items": [{"name": "payments", "owner": "alice", "team": "pay-devs"}]})
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def audit_rows(db: Database) -> set[tuple[str, str, str, str]]:
    a = t.audit_log.c
    async with db.read() as conn:
        rows = await conn.execute(sa.select(a.username, a.resource_type, a.operation, a.resource))
        return {(r[0], r[1], r[2], r[3]) for r in rows}


@pytest.mark.parametrize("db_kind", ["postgresql"], indirect=True)
async def test_workers_sync_on_schedule_once_per_fire_time(
    db: Database, database_url: str, redis_url: str, tmp_path: Path, cmdb: Cmdb
) -> None:
    env = worker_env(database_url, redis_url, tmp_path / "data")
    (tmp_path / "data").mkdir()
    box = SecretBox(Settings(secret_key=env["WHARF_SECRET_KEY"]).secret_key_bytes())  # type: ignore[arg-type]
    now = utcnow()
    async with db.transaction() as conn:
        await conn.execute(sa.insert(t.user_account).values(username="alice", created_at=now, updated_at=now))
        await runtime.store(
            conn,
            cmdb_url=cmdb.url,
            cmdb_auth_header=box.encrypt(TOKEN),
            cmdb_projects_field="items",
            cmdb_team_field="team",
            cmdb_schedule="* * * * * *",
        )
    redis = Redis.from_url(redis_url)
    relay = EventRelay(
        db, redis, "wharf:events", 10000, Metrics("test"), interval=0.2, backoff_max=1.0
    )  # what the ui and registry instances run
    workers = [jobservice_worker_process(env, tmp_path / "logs", name=f"cmdb-{i}") for i in range(2)]
    try:
        await relay.start()
        for worker in workers:
            worker.start(timeout=60)

        async def members() -> set[tuple[str, int]]:
            p, m, u, g, pg = (
                t.project.c,
                t.project_member.c,
                t.user_account.c,
                t.user_group.c,
                t.project_group_member.c,
            )
            async with db.read() as conn:
                users = await conn.execute(
                    sa.select(u.username, m.role_id)
                    .join(t.user_account, u.id == m.user_id)
                    .join(t.project, p.id == m.project_id)
                    .where(p.name == "payments")
                )
                groups = await conn.execute(
                    sa.select(g.group_name, pg.role_id)
                    .join(t.user_group, g.id == pg.group_id)
                    .join(t.project, p.id == pg.project_id)
                    .where(p.name == "payments")
                )
                return {(r[0], r[1]) for r in users} | {(r[0], r[1]) for r in groups}

        async def synced() -> bool:
            return await members() == {("alice", 1), ("pay-devs", 2)}

        await wait_for(synced, 30)
        asked, started = cmdb.requests, time.monotonic()
        await asyncio.sleep(4)
        # Every second once, by the leader alone (two workers firing would ask about twice as often).
        assert cmdb.requests - asked <= (time.monotonic() - started) + 2

        expected = {
            (OPERATOR, "project", "create", "payments"),
            (OPERATOR, "member", "create", "payments/pay-devs"),
        }

        async def audited() -> bool:
            return expected <= await audit_rows(db)

        await wait_for(audited, 30)
        assert {row for row in await audit_rows(db) if row[0] == OPERATOR} == expected  # once each
        logs = "\n".join(w.tail(400) for w in workers)
        assert "cmdb_sync_done" in logs
    finally:
        for worker in workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        codes = [w.process.wait(timeout=30) if w.process is not None else None for w in workers]
        await relay.close()
        await redis.aclose()
    assert codes == [0, 0]
