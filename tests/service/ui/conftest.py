"""The ui service in-process (the production app on an aiohttp test server) over each database,
with an admin, a normal user and helpers to call as each role."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from wharf_shared import runtime
from wharf_shared.config import Settings
from wharf_shared.db import accounts, projects
from wharf_shared.db.engine import Database
from wharf_shared.events import decode
from wharf_shared.passwords import hash_password
from wharf_shared.setup import ensure_accounts, ensure_files
from wharf_ui.app import create_app
from wharf_ui.keys import RUNTIME

ADMIN_PASSWORD = "Admin-secret-1"
ALICE_PASSWORD = "Alice-secret-1"


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


ADMIN = basic("admin", ADMIN_PASSWORD)
ALICE = basic("alice", ALICE_PASSWORD)
ANONYMOUS: dict[str, str] = {}


@dataclass
class Ui:
    settings: Settings
    client: TestClient  # type: ignore[type-arg]
    alice_id: int
    admin_id: int

    async def db_call(self, fn: Any) -> Any:
        db = Database(self.settings.effective_database_url, pool_size=1)
        try:
            async with db.transaction() as conn:
                return await fn(conn)
        finally:
            await db.close()

    async def add_user(self, username: str, password: str, **fields: Any) -> int:
        async def go(conn: Any) -> int:
            return (await accounts.create_user(conn, username, hash_password(password), **fields)).id

        result: int = await self.db_call(go)
        return result

    async def add_project(self, name: str, owner_id: int, *, public: bool = False) -> int:
        async def go(conn: Any) -> int:
            return (await projects.create_project(conn, name, owner_id, public=public)).id

        result: int = await self.db_call(go)
        return result

    async def events(
        self, event_type: str, *, count: int = 1, wait_seconds: float = 10.0
    ) -> list[dict[str, Any]]:
        """The stream's events of `event_type`, once at least `count` of them arrived (the
        relay moves them from the outbox right after the commit)."""
        redis = Redis.from_url(self.settings.redis_url)
        try:
            deadline = asyncio.get_running_loop().time() + wait_seconds
            while True:
                entries = await redis.xrange(self.settings.events_stream)
                found = [e for _, fields in entries for e in decode(fields) if e["type"] == event_type]
                if len(found) >= count:
                    return found
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"{count} {event_type} events expected, {len(found)} arrived")
                await asyncio.sleep(0.02)
        finally:
            await redis.aclose()

    async def set_runtime(self, **values: Any) -> None:
        async def go(conn: Any) -> None:
            await runtime.store(conn, **values)

        await self.db_call(go)
        self.client.app[RUNTIME].invalidate()  # type: ignore[index]


def ui_settings(tmp_path: Path, database_url: str, redis_url: str, **extra: Any) -> Settings:
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        redis_url=redis_url,
        admin_password=ADMIN_PASSWORD,  # type: ignore[arg-type]
        **{"external_url": "https://wharf.example.test", **extra},
    )
    ensure_files(settings)
    return settings


@pytest.fixture
async def ui(aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str) -> Ui:
    settings = ui_settings(tmp_path, database_url, redis_url)
    await ensure_accounts(settings)
    client = await aiohttp_client(create_app(settings))
    fixture = Ui(settings, client, 0, 0)
    fixture.alice_id = await fixture.add_user("alice", ALICE_PASSWORD, email="alice@example.test")

    async def admin_id(conn: Any) -> int:
        admin = await accounts.find_user(conn, "admin")
        assert admin is not None
        return admin.id

    fixture.admin_id = await fixture.db_call(admin_id)
    return fixture
