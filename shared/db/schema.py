"""The start-up schema check, without Alembic.

Services only need to know which revision the database is stamped with and which revisions this
code knows; importing Alembic (and Mako, Pygments) for that would cost every service process
~10 MiB. The revisions are read from the version files' `revision = …` and `down_revision = …`
lines (tests/unit/test_schema_revisions.py checks the result against Alembic's own reading);
`wharf_shared.db.migrate` does the migrating.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from wharf_shared.config import Settings
    from wharf_shared.db.engine import Database

VERSIONS_DIR = Path(__file__).parent / "migrations" / "versions"
VERSION_TABLE = "alembic_version"
_ASSIGNMENT = re.compile(r"""^(revision|down_revision)\b[^=\n]*=\s*(None|"([^"]*)"|'([^']*)')""", re.M)


class SchemaError(Exception):
    """The database schema does not match this code; the message says what to run."""


@functools.cache
def known_revisions() -> tuple[str, frozenset[str]]:
    """(head, every revision) of the migrations shipped with this code."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in VERSIONS_DIR.glob("[0-9]*.py"):
        fields = {m[1]: m[3] or m[4] for m in _ASSIGNMENT.finditer(path.read_text())}
        if not fields.get("revision"):
            raise RuntimeError(f"{path.name} names no revision")
        revisions.add(fields["revision"])
        if fields.get("down_revision"):
            parents.add(fields["down_revision"])
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads, not one: {sorted(heads)}")
    return heads.pop(), frozenset(revisions)


def _stamped(conn: Connection) -> str | None:
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()  # noqa: S608
    if len(rows) > 1:
        raise SchemaError(f"the database is stamped with several revisions ({', '.join(sorted(rows))})")
    return rows[0] if rows else None


async def stamped_revision(db: Database) -> str | None:
    """The revision the database is at (None before the first migration)."""
    async with db.read() as conn:
        return await conn.run_sync(_stamped)


async def check_schema(db: Database) -> None:
    current = await stamped_revision(db)
    head, known = known_revisions()
    if current == head:
        return
    if current is None:
        raise SchemaError("the database has no Wharf schema yet: run `wharf migrate`")
    if current not in known:
        raise SchemaError(
            f"the database schema ({current}) is newer than this Wharf ({head}): upgrade this service"
        )
    raise SchemaError(
        f"the database schema ({current}) is older than this Wharf ({head}): run `wharf migrate`"
    )


async def preflight(settings: Settings) -> None:
    """Connect once and check the schema: what a service does before it starts serving."""
    from wharf_shared.db.engine import Database

    db = Database(settings.effective_database_url, pool_size=1)
    try:
        await check_schema(db)
    finally:
        await db.close()
