"""Schema migrations (Alembic) under a database-wide lock.

`wharf migrate` upgrades; services call `schema.check_schema` and refuse to start on an older
schema than their code expects, or on a newer one that does not serve their code. The lock makes
concurrent `wharf migrate` runs on many hosts safe: one migrates, the others wait and then find
nothing to do. Every run, under the lock, also writes what the version files say of
compatibility into `schema_compat` (read by older code during a rolling upgrade). The start-up
check lives in `schema` (services import it without Alembic) and is re-exported here.
"""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db.engine import Database
from wharf_shared.db.schema import VERSIONS_DIR, read_migrations
from wharf_shared.db.schema import SchemaError as SchemaError
from wharf_shared.db.schema import check_schema as check_schema
from wharf_shared.db.schema import preflight as preflight
from wharf_shared.db.tables import metadata, schema_compat

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_PG_LOCK_KEY = 0x5748_4152_46  # "WHARF"
_LOCK_WAIT_SECONDS = 600


def alembic_config(versions_dir: Path | None = None) -> Config:
    """`versions_dir`: another directory of version files (tests); by default the shipped ones."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if versions_dir is not None:
        cfg.set_main_option("path_separator", "os")
        cfg.set_main_option("version_locations", str(versions_dir))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def current_revision(db: Database) -> str | None:
    async with db.read() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


@asynccontextmanager
async def _migration_lock(db: Database, conn: AsyncConnection) -> AsyncIterator[None]:
    if db.dialect == "postgresql":
        await conn.execute(text("SET lock_timeout = 0"))
        await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
        await conn.commit()
        try:
            # Once we hold the lock, DDL must not wait forever behind live traffic.
            await conn.execute(text("SET lock_timeout = '10s'"))
            yield
        finally:
            await conn.rollback()
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
            await conn.commit()
    elif db.dialect == "mysql":
        got = (
            await conn.execute(text("SELECT GET_LOCK('wharf_migrate', :t)"), {"t": _LOCK_WAIT_SECONDS})
        ).scalar()
        if got != 1:
            raise SchemaError("timed out waiting for another `wharf migrate` to finish")
        await conn.commit()
        try:
            yield
        finally:
            await conn.rollback()
            await conn.execute(text("SELECT RELEASE_LOCK('wharf_migrate')"))
            await conn.commit()
    else:
        database = make_url(db.url).database
        lock_path = Path(database + ".migrate.lock") if database and database != ":memory:" else None
        if lock_path is None:
            yield
            return
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _run_alembic(
    action: Callable[[Config], object], versions_dir: Path | None = None
) -> Callable[[Connection], None]:
    def run(sync_conn: Connection) -> None:
        cfg = alembic_config(versions_dir)
        cfg.attributes["connection"] = sync_conn
        action(cfg)

    return run


def record_compatibility(conn: Connection, versions_dir: Path = VERSIONS_DIR) -> None:
    """One `schema_compat` row per revision in `versions_dir`, inserted or corrected (rows of
    revisions this code does not know, written by newer code, stay). Nothing before 0009."""
    if not inspect(conn).has_table(schema_compat.name):
        return
    wanted = read_migrations(versions_dir).compat_rows()
    query = select(schema_compat.c.revision, schema_compat.c.oldest_compatible)
    stored: dict[str, str] = dict(conn.execute(query).all())
    for revision, oldest in wanted.items():
        if revision not in stored:
            conn.execute(schema_compat.insert().values(revision=revision, oldest_compatible=oldest))
        elif stored[revision] != oldest:
            conn.execute(
                schema_compat.update()
                .where(schema_compat.c.revision == revision)
                .values(oldest_compatible=oldest)
            )


async def upgrade(
    db: Database, revision: str = "head", *, versions_dir: Path | None = None
) -> tuple[str | None, str | None]:
    """Upgrade to `revision`, then record what the migrations say of compatibility (also when
    there was nothing to upgrade); returns (before, after). `versions_dir`: tests only."""
    if db.dialect == "sqlite":
        database = make_url(db.url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    async with db.engine.connect() as conn, _migration_lock(db, conn):
        before = await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
        shipped = read_migrations(versions_dir or VERSIONS_DIR)
        if before is not None and before not in shipped.chain:
            # Mid-roll, an older host's `wharf migrate`: say so rather than Alembic's traceback.
            raise SchemaError(
                f"the database schema ({before}) is newer than this Wharf ({shipped.head}): "
                "nothing to migrate here (the newer release's `wharf migrate` made it)"
            )
        await conn.run_sync(_run_alembic(lambda cfg: command.upgrade(cfg, revision), versions_dir))
        await conn.commit()
        after = await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
        await conn.run_sync(lambda c: record_compatibility(c, versions_dir or VERSIONS_DIR))
        await conn.commit()
    return before, after


async def downgrade(db: Database, revision: str) -> None:
    async with db.engine.connect() as conn, _migration_lock(db, conn):
        await conn.run_sync(_run_alembic(lambda cfg: command.downgrade(cfg, revision)))
        await conn.commit()


async def schema_diff(db: Database) -> list[Any]:
    """Differences between the migrated schema and `tables.metadata` (empty when in step)."""
    async with db.engine.connect() as conn:
        return await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), metadata)
        )


async def autogenerate(db: Database, message: str) -> None:
    """Developer tool: write the next numbered revision from the difference between head and `tables`.

    Run it on an empty SQLite file: `python -m wharf_shared.db.migrate "add projects"`.
    """
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    next_id = f"{int(head) + 1:04d}" if head else "0001"
    if head:
        await upgrade(db)
    async with db.engine.connect() as conn:
        await conn.run_sync(
            _run_alembic(
                lambda cfg: command.revision(cfg, message=message, autogenerate=True, rev_id=next_id)
            )
        )


if __name__ == "__main__":
    import sys
    import tempfile

    async def _main(message: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            db = Database(f"sqlite:///{tmp}/autogen.db")
            try:
                await autogenerate(db, message)
            finally:
                await db.close()

    asyncio.run(_main(" ".join(sys.argv[1:]) or "change"))
