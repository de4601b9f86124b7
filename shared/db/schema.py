"""The start-up schema check, without Alembic.

Services only need to know which revision the database is stamped with and which revisions this
code knows; importing Alembic (and Mako, Pygments) for that would cost every service process
~10 MiB. The revisions are read from the version files' `revision = …`, `down_revision = …` and
`compatible_with = …` lines (tests/unit/test_schema_revisions.py checks the result against
Alembic's own reading); `wharf_shared.db.migrate` does the migrating.

A service starts on the schema its code knows as head. It refuses an older one (run `wharf
migrate`), and a newer one unless that schema still serves this code: migrations are
expand-then-contract, and each declares `compatible_with`, the oldest revision whose code still
works once it has run (migrations/README.md has the rule). Code that is older than the schema
cannot read the newer version files, so `wharf migrate` writes what they say into the table
`schema_compat` (a row per revision: the oldest revision whose code works on a schema at that
revision, through the whole chain); an older service reads its row for the stamped revision and
starts, with a warning, when that oldest revision is one it knows.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text

from wharf_shared.logging import get_logger

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from wharf_shared.config import Settings
    from wharf_shared.db.engine import Database

log = get_logger(__name__)

VERSIONS_DIR = Path(__file__).parent / "migrations" / "versions"
VERSION_TABLE = "alembic_version"
COMPAT_TABLE = "schema_compat"
_ASSIGNMENT = re.compile(
    r"""^(revision|down_revision|compatible_with)\b[^=\n]*=\s*(None|"([^"]*)"|'([^']*)')""", re.M
)


class SchemaError(Exception):
    """The database schema does not match this code; the message says what to run."""


@dataclass(frozen=True)
class Migrations:
    """The revisions of one versions directory: a single chain, and what each declares."""

    chain: tuple[str, ...]  # oldest first, head last
    declared: Mapping[str, str]  # revision -> its `compatible_with`, where it declares one

    @property
    def head(self) -> str:
        return self.chain[-1]

    def oldest_compatible(self, revision: str) -> str:
        """The oldest revision whose code works on a schema at `revision`: what it declares, but
        never older than what its parent gets (a migration cannot bring back what an earlier one
        took from older code), and itself when it declares nothing."""
        order = {rev: i for i, rev in enumerate(self.chain)}
        upto = self.chain[: order[revision] + 1]
        return self.chain[max(order[self.declared.get(rev, rev)] for rev in upto)]

    def compat_rows(self) -> dict[str, str]:
        """What `wharf migrate` writes to `schema_compat`: revision -> oldest compatible revision."""
        return {rev: self.oldest_compatible(rev) for rev in self.chain}


def read_migrations(versions_dir: Path) -> Migrations:
    """Read the version files' assignments (not the modules: no Alembic import)."""
    parent_of: dict[str, str | None] = {}
    declared: dict[str, str] = {}
    for path in versions_dir.glob("[0-9]*.py"):
        fields = {m[1]: m[3] or m[4] for m in _ASSIGNMENT.finditer(path.read_text())}
        if not fields.get("revision"):
            raise RuntimeError(f"{path.name} names no revision")
        revision = fields["revision"]
        parent_of[revision] = fields.get("down_revision") or None
        if fields.get("compatible_with"):
            declared[revision] = fields["compatible_with"]
    heads = set(parent_of) - {p for p in parent_of.values() if p}
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads, not one: {sorted(heads)}")
    chain: list[str] = []
    at: str | None = heads.pop()
    while at is not None:
        chain.append(at)
        at = parent_of.get(at)
    if len(chain) != len(parent_of):
        raise RuntimeError(f"the migrations are not one chain: {sorted(set(parent_of) - set(chain))}")
    chain.reverse()
    for revision, oldest in declared.items():
        if oldest not in chain[: chain.index(revision) + 1]:
            raise RuntimeError(
                f"migration {revision} is compatible_with {oldest}, which is not {revision} or before it"
            )
    return Migrations(tuple(chain), declared)


@functools.cache
def migrations() -> Migrations:
    """The migrations shipped with this code."""
    return read_migrations(VERSIONS_DIR)


def known_revisions() -> tuple[str, frozenset[str]]:
    """(head, every revision) of the migrations shipped with this code."""
    shipped = migrations()
    return shipped.head, frozenset(shipped.chain)


def _stamped(conn: Connection) -> str | None:
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()  # noqa: S608
    if len(rows) > 1:
        raise SchemaError(f"the database is stamped with several revisions ({', '.join(sorted(rows))})")
    return rows[0] if rows else None


def _recorded_oldest(conn: Connection, revision: str) -> str | None:
    """What `schema_compat` says of `revision` (None: no table, or no row)."""
    if not inspect(conn).has_table(COMPAT_TABLE):
        return None
    query = text(f"SELECT oldest_compatible FROM {COMPAT_TABLE} WHERE revision = :revision")  # noqa: S608
    found: str | None = conn.execute(query, {"revision": revision}).scalar()
    return found


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
    if current in known:
        raise SchemaError(
            f"the database schema ({current}) is older than this Wharf ({head}): run `wharf migrate`"
        )
    async with db.read() as conn:
        oldest = await conn.run_sync(lambda c: _recorded_oldest(c, current))
    newer = f"the database schema ({current}) is newer than this Wharf ({head})"
    if oldest is None:
        raise SchemaError(
            f"{newer}, and the database records no older revision that it still serves: upgrade this service"
        )
    if oldest not in known:
        raise SchemaError(
            f"{newer} and not compatible with it (it serves code from revision {oldest} on): "
            "upgrade this service"
        )
    log.warning("schema_newer_but_compatible", schema=current, code=head, oldest_compatible=oldest)


async def preflight(settings: Settings) -> None:
    """Connect once and check the schema: what a service does before it starts serving."""
    from wharf_shared.db.engine import Database

    db = Database(settings.effective_database_url, pool_size=1)
    try:
        await check_schema(db)
    finally:
        await db.close()
