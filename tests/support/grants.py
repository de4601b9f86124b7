"""The database rows behind tokens a test mints itself, as the token service would find them: the
registry re-checks that a token's subject may push when a push completes."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterable

from wharf_shared.db import accounts, projects
from wharf_shared.db.engine import Database


def allow_push(database_url: str, subject: str, repositories: Iterable[str]) -> None:
    """Make `subject` a sysadmin and create the repositories' projects (idempotent). Runs on an
    event loop of its own, in a thread, so that callers inside a running loop may call it too."""
    names = {repository.split("/", 1)[0] for repository in repositories if "/" in repository}

    async def seed() -> None:
        db = Database(database_url, pool_size=1)
        try:
            async with db.transaction() as conn:
                user = await accounts.create_user(conn, subject, None, sysadmin=True)
                for name in sorted(names):
                    await projects.create_project(conn, name, user.id)
        finally:
            await db.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, seed()).result()
