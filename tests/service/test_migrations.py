"""Migrations on every backend, each on a fresh empty database: up to head (and in step with
`tables`), down and up again with seeded rows, the start-up schema check (a newer schema that
still serves this code included), and several `wharf migrate` processes started at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from structlog.testing import capture_logs

from tests.support import backends
from tests.support.processes import service_env
from wharf_shared.config import Settings
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.migrate import (
    SchemaError,
    alembic_config,
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    schema_diff,
    upgrade,
)
from wharf_shared.db.schema import VERSIONS_DIR, migrations, preflight

WHARF = Path(sys.executable).parent / "wharf"
NOW = dt.datetime(2024, 5, 1, 12, 30, 45, 123456, tzinfo=dt.UTC)


@pytest.fixture
def empty_url(db_kind: str, tmp_path: Path) -> Iterator[str]:
    with backends.fresh_database(db_kind, str(tmp_path), migrated=False) as url:
        yield url


@pytest.fixture
async def db(empty_url: str) -> AsyncIterator[Database]:
    database = Database(empty_url, pool_size=1)
    try:
        yield database
    finally:
        await database.close()


async def table_names(db: Database) -> set[str]:
    async with db.read() as conn:
        names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
    return set(names) - {"alembic_version"}


async def row_counts(db: Database, names: set[str]) -> dict[str, int]:
    counts = {}
    async with db.read() as conn:
        for name in sorted(names):
            query = sa.select(sa.func.count()).select_from(sa.table(name))
            counts[name] = (await conn.execute(query)).scalar_one()
    return counts


# Rows for every table, parents first. A new table needs rows here (the test says so).
SEED: dict[str, list[dict[str, Any]]] = {
    "repository": [
        {"id": 1, "name": "library/app", "created_at": NOW, "updated_at": NOW, "description": "an app"},
        {"id": 2, "name": "library/other", "created_at": NOW, "updated_at": NOW, "description": None},
    ],
    "blob": [
        {"id": 1, "digest": "sha256:" + "1" * 64, "size": 2**40, "created_at": NOW},
        {"id": 2, "digest": "sha512:" + "2" * 128, "size": 0, "created_at": NOW},
    ],
    "repository_blob": [
        {"repository_id": 1, "blob_id": 1, "created_at": NOW},
        {"repository_id": 1, "blob_id": 2, "created_at": NOW},
        {"repository_id": 2, "blob_id": 1, "created_at": NOW},
    ],
    "manifest": [
        {
            "id": 1,
            "repository_id": 1,
            "digest": "sha256:" + "a" * 64,
            "media_type": "application/vnd.oci.image.manifest.v1+json",
            "size": 500,
            "artifact_type": "application/vnd.oci.image.config.v1+json",
            "subject_digest": None,
            "annotations": None,
            "created_at": NOW,
        },
        {
            "id": 2,
            "repository_id": 1,
            "digest": "sha256:" + "b" * 64,
            "media_type": "application/vnd.oci.image.index.v1+json",
            "size": 300,
            "artifact_type": "application/vnd.example.sig",
            "subject_digest": "sha256:" + "a" * 64,
            "annotations": '{"a": "b"}',
            "created_at": NOW,
        },
    ],
    "manifest_blob": [
        {"manifest_id": 1, "repository_id": 1, "blob_id": 1},
        {"manifest_id": 1, "repository_id": 1, "blob_id": 2},
    ],
    "manifest_child": [
        {
            "parent_id": 2,
            "child_id": 1,
            # The longest values the columns take (0008).
            "os": "o" * 64,
            "architecture": "a" * 64,
            "variant": "v" * 32,
            "os_version": "10.0." + "9" * 123,
        }
    ],
    "tag": [
        # Tags differ by case: the schema compares names byte-wise on every backend.
        {
            "id": 1,
            "repository_id": 1,
            "name": "latest",
            "manifest_id": 2,
            "created_at": NOW,
            "updated_at": NOW,
        },
        {
            "id": 2,
            "repository_id": 1,
            "name": "Latest",
            "manifest_id": 1,
            "created_at": NOW,
            "updated_at": NOW,
        },
    ],
    "user_account": [
        {
            "id": 1,
            "username": "admin",
            "email": "admin@example.com",
            "realname": "Admin",
            "comment": "",
            "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
            "sysadmin": True,
            "created_at": NOW,
            "updated_at": NOW,
        },
        {
            "id": 2,
            "username": "Admin",  # another user: names compare byte-wise
            "email": None,
            "realname": "",
            "comment": "ldap",
            "password_hash": None,
            "sysadmin": False,
            "created_at": NOW,
            "updated_at": NOW,
        },
    ],
    "project": [
        {"id": 1, "name": "library", "public": True, "owner_id": 1, "created_at": NOW, "updated_at": NOW},
        {"id": 2, "name": "team", "public": False, "owner_id": 2, "created_at": NOW, "updated_at": NOW},
    ],
    "project_member": [
        {"project_id": 1, "user_id": 1, "role_id": 1, "created_at": NOW, "updated_at": NOW},
        {"project_id": 2, "user_id": 1, "role_id": 5, "created_at": NOW, "updated_at": NOW},
    ],
    "user_group": [
        {
            "id": 1,
            "group_name": "devs",
            "group_type": 1,
            "group_key": "cn=devs,ou=groups,dc=example,dc=com",
            "ldap_group_dn": "cn=devs,ou=groups,dc=example,dc=com",
            "created_at": NOW,
            "updated_at": NOW,
        },
        {
            "id": 2,
            "group_name": "Devs",  # an OIDC group: names compare byte-wise
            "group_type": 3,
            "group_key": "Devs",
            "ldap_group_dn": None,
            "created_at": NOW,
            "updated_at": NOW,
        },
    ],
    "project_group_member": [
        {"project_id": 2, "group_id": 1, "role_id": 4, "created_at": NOW, "updated_at": NOW},
        {"project_id": 2, "group_id": 2, "role_id": 3, "created_at": NOW, "updated_at": NOW},
    ],
    "user_group_member": [
        {"user_id": 2, "group_id": 1, "synced_at": NOW},
        {"user_id": 2, "group_id": 2, "synced_at": NOW},
    ],
    "cmdb_grant": [
        {"project_id": 2, "member_type": "u", "member_id": 2, "created_at": NOW},
        {"project_id": 2, "member_type": "g", "member_id": 1, "created_at": NOW},
    ],
    "oidc_refresh_token": [{"user_id": 2, "token": "gAAAAA" + "r" * 300, "updated_at": NOW}],
    "configuration": [{"key": "anonymous_access", "value": "false", "updated_at": NOW}],
    "audit_log": [
        {
            "id": 1,
            "event_id": "e" * 32,
            "project_id": 1,
            "resource_type": "artifact",
            "resource": "library/app:latest",
            "operation": "pull",
            "username": "admin",
            "op_time": NOW,
        },
        {
            "id": 2,
            "event_id": "f" * 32,
            "project_id": None,
            "resource_type": "user",
            "resource": "admin",
            "operation": "login",
            "username": "admin",
            "op_time": NOW,
        },
    ],
    "event_outbox": [
        {"id": 1, "event_type": "push", "payload": '{"id":"e1","type":"push","data":{}}', "created_at": NOW},
        {"id": 2, "event_type": "delete", "payload": '{"id":"e2","type":"delete"}', "created_at": NOW},
    ],
    "registry_endpoint": [
        {
            "id": 1,
            "name": "site-b",
            "description": "",
            "type": "harbor",
            "url": "https://b.example.com",
            "insecure": False,
            "credential_type": "basic",
            "access_key": "admin",
            "access_secret": "gAAAAA" + "x" * 200,
            "status": "healthy",
            "created_at": NOW,
            "updated_at": NOW,
        },
        {
            "id": 2,
            "name": "Site-B",  # names compare byte-wise
            "description": "mirror",
            "type": "docker-registry",
            "url": "http://127.0.0.1:5001",
            "insecure": True,
            "credential_type": "basic",
            "access_key": None,
            "access_secret": None,
            "status": "unknown",
            "created_at": NOW,
            "updated_at": NOW,
        },
    ],
    "replication_policy": [
        {
            "id": 1,
            "name": "to-b",
            "description": "",
            "src_registry_id": None,
            "dest_registry_id": 1,
            "every_registry": False,
            "dest_namespace": None,
            "dest_namespace_replace_count": -1,
            "trigger_type": "event_based",
            "cron": None,
            "filters": '[{"type": "name", "value": "library/**"}]',
            "replicate_deletion": True,
            "override": True,
            "enabled": True,
            "speed_kb": -1,
            "copy_by_chunk": False,
            "created_at": NOW,
            "updated_at": NOW,
        },
        {
            "id": 2,
            "name": "from-b",
            "description": "nightly",
            "src_registry_id": 2,
            "dest_registry_id": None,
            "every_registry": False,
            "dest_namespace": "mirror",
            "dest_namespace_replace_count": 1,
            "trigger_type": "scheduled",
            "cron": "0 0 2 * * *",
            "filters": "[]",
            "replicate_deletion": False,
            "override": False,
            "enabled": False,
            "speed_kb": 1024,
            "copy_by_chunk": False,
            "created_at": NOW,
            "updated_at": NOW,
        },
    ],
    "execution": [
        {
            "id": 1,
            "vendor_type": "REPLICATION",
            "vendor_id": 1,
            "status": "Running",
            "status_message": "",
            "trigger": "manual",
            "extra": "{}",
            "planned": True,
            "start_time": NOW,
            "end_time": None,
            "updated_at": NOW,
        },
    ],
    "task": [
        {
            "id": 1,
            "execution_id": 1,
            "status": "Running",
            "status_message": "",
            "attempts": 1,
            "run_after": None,
            "lease_until": NOW,
            "worker": "host-1",
            "job": '{"src": "library/app:latest"}',
            "resource_type": "artifact",
            "operation": "copy",
            "src_resource": "library/app:latest",
            "dst_resource": "library/app:latest",
            "bytes_copied": 2**40,
            "start_time": NOW,
            "end_time": None,
            "created_at": NOW,
            "updated_at": NOW,
        },
    ],
    "task_log": [{"id": 1, "task_id": 1, "time": NOW, "line": "copying " + "x" * 5000}],
    # `wharf migrate` writes the real revisions' rows; these stand for a newer Wharf's.
    "schema_compat": [
        {"revision": "9998", "oldest_compatible": "0003"},
        {"revision": "f" * 32, "oldest_compatible": "e" * 32},
    ],
}


async def seed(db: Database) -> None:
    missing = {table.name for table in t.metadata.sorted_tables} - set(SEED)
    assert not missing, f"add seed rows for {sorted(missing)} to SEED in {__file__}"
    async with db.transaction() as conn:
        for table in t.metadata.sorted_tables:
            await conn.execute(sa.insert(table), SEED[table.name])


def revisions_newest_first() -> list[tuple[str, str]]:
    """(revision, the revision it revises or "base"), from head down."""
    script = ScriptDirectory.from_config(alembic_config())
    return [(rev.revision, rev.down_revision or "base") for rev in script.walk_revisions()]  # type: ignore[misc]


# -- up to head ----------------------------------------------------------------------------


async def test_upgrade_to_head_matches_tables(db: Database) -> None:
    assert await current_revision(db) is None
    assert await table_names(db) == set()
    before, after = await upgrade(db)
    assert (before, after) == (None, head_revision())
    assert await current_revision(db) == head_revision()
    assert await table_names(db) == set(t.metadata.tables)
    # `alembic check`: the migrated schema is exactly what `tables` declares.
    assert await schema_diff(db) == []
    # A second run finds nothing to do.
    assert await upgrade(db) == (head_revision(), head_revision())
    assert await schema_diff(db) == []


async def test_schema_keeps_what_tables_promise(db: Database) -> None:
    await upgrade(db)
    await seed(db)
    async with db.read() as conn:
        names = (await conn.execute(sa.select(t.tag.c.name).order_by(t.tag.c.name))).scalars().all()
        stamp = (
            await conn.execute(sa.select(t.manifest.c.created_at).where(t.manifest.c.id == 1))
        ).scalar_one()
        big = (await conn.execute(sa.select(t.blob.c.size).where(t.blob.c.id == 1))).scalar_one()
        child = (await conn.execute(sa.select(t.manifest_child))).one()
    assert names == ["Latest", "latest"]  # byte order, not a locale's
    assert stamp == NOW  # UTC, microseconds kept
    assert big == 2**40
    assert child._asdict() == SEED["manifest_child"][0]  # platforms at their columns' full length
    async with db.transaction() as conn:
        await conn.execute(sa.delete(t.repository).where(t.repository.c.id == 2))
    # ON DELETE CASCADE came through the migration
    assert (await row_counts(db, {"repository_blob"}))["repository_blob"] == 2


# -- down and up again ---------------------------------------------------------------------


async def test_each_revision_down_and_up_keeps_rows(db: Database) -> None:
    await upgrade(db)
    await seed(db)
    seeded = await row_counts(db, await table_names(db))
    assert all(seeded.values())
    for revision, previous in revisions_newest_first():
        at_revision = await table_names(db)
        await downgrade(db, previous)
        assert await current_revision(db) == (None if previous == "base" else previous)
        kept = await table_names(db)
        # Tables that exist on both sides of a revision keep their rows through it...
        assert await row_counts(db, kept & at_revision) == {n: seeded[n] for n in kept & at_revision}
        await upgrade(db, revision)
        assert await table_names(db) == at_revision
        # ...and keep them on the way back up.
        assert await row_counts(db, kept & at_revision) == {n: seeded[n] for n in kept & at_revision}
        await downgrade(db, previous)
    # At base no Wharf table is left, and the start-up check says what to do.
    assert await current_revision(db) is None
    assert await table_names(db) == set()
    with pytest.raises(SchemaError, match="run `wharf migrate`"):
        await check_schema(db)
    # Up again from nothing: in step with `tables`, and usable.
    assert await upgrade(db) == (None, head_revision())
    assert await schema_diff(db) == []
    await check_schema(db)
    await seed(db)
    assert await row_counts(db, set(t.metadata.tables)) == seeded


# -- the start-up check --------------------------------------------------------------------


async def test_check_schema(db: Database) -> None:
    with pytest.raises(SchemaError, match="run `wharf migrate`") as info:
        await check_schema(db)
    assert "no Wharf schema" in str(info.value)
    await upgrade(db)
    await check_schema(db)
    # A schema from a newer Wharf than this code: upgrade the service, not the database.
    async with db.transaction() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaError, match="newer than this Wharf") as info:
        await check_schema(db)
    assert "upgrade this service" in str(info.value)
    assert "records no older revision that it still serves" in str(info.value)


# -- a newer schema that still serves this code (rolling upgrades) -------------------------


async def compat_rows(db: Database) -> dict[str, str]:
    async with db.read() as conn:
        rows = await conn.execute(sa.select(t.schema_compat.c.revision, t.schema_compat.c.oldest_compatible))
        return dict(rows.all())


async def stamp(db: Database, revision: str, oldest: str | None) -> None:
    """The database as a newer Wharf's `wharf migrate` leaves it: stamped `revision`, with its
    compatibility row when `oldest` is given."""
    async with db.transaction() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
        if oldest is not None:
            await conn.execute(sa.insert(t.schema_compat).values(revision=revision, oldest_compatible=oldest))


async def test_wharf_migrate_records_compatibility_once_per_revision(db: Database) -> None:
    await upgrade(db)
    expected = migrations().compat_rows()
    assert await compat_rows(db) == expected
    assert expected[head_revision()] == "0003"
    # Again, with nothing to upgrade: the same rows, no more; a wrong one is put right, and a
    # newer Wharf's row is left alone.
    async with db.transaction() as conn:
        wrong = sa.update(t.schema_compat).where(t.schema_compat.c.revision == "0005")
        await conn.execute(wrong.values(oldest_compatible="0005"))
        await conn.execute(sa.delete(t.schema_compat).where(t.schema_compat.c.revision == "0002"))
        await conn.execute(sa.insert(t.schema_compat).values(revision="9999", oldest_compatible="0009"))
    assert await upgrade(db) == (head_revision(), head_revision())
    assert await upgrade(db) == (head_revision(), head_revision())
    assert await compat_rows(db) == {**expected, "9999": "0009"}
    assert await row_counts(db, {"schema_compat"}) == {"schema_compat": len(expected) + 1}


async def test_newer_schema_that_serves_this_code_is_accepted(
    db: Database, empty_url: str, tmp_path: Path
) -> None:
    await upgrade(db)
    await stamp(db, "9999", "0008")
    with capture_logs() as logs:
        await check_schema(db)
    assert logs == [
        {
            "event": "schema_newer_but_compatible",
            "log_level": "warning",
            "schema": "9999",
            "code": head_revision(),
            "oldest_compatible": "0008",
        }
    ]
    # What a service does before it serves.
    await preflight(Settings(database_url=empty_url, data_dir=tmp_path / "var"))


@pytest.mark.parametrize(
    ("oldest", "says"),
    [
        (None, "records no older revision that it still serves"),
        ("9998", "not compatible with it (it serves code from revision 9998 on)"),
    ],
)
async def test_newer_schema_that_does_not_serve_this_code_is_refused(
    db: Database, empty_url: str, tmp_path: Path, oldest: str | None, says: str
) -> None:
    await upgrade(db)
    await stamp(db, "9999", oldest)
    for check in (check_schema(db), preflight(Settings(database_url=empty_url, data_dir=tmp_path / "var"))):
        with pytest.raises(SchemaError, match="newer than this Wharf") as info:
            await check
        assert says in str(info.value)
        assert "upgrade this service" in str(info.value)


async def test_older_schema_is_still_refused(db: Database) -> None:
    await upgrade(db)
    await downgrade(db, "0008")  # before schema_compat
    with pytest.raises(SchemaError, match="older than this Wharf"):
        await check_schema(db)


NEXT_MIGRATION = """\"""a later release's expand migration: a nullable column

Revision ID: {revision}
Revises: {parent}
\"""

import sqlalchemy as sa
from alembic import op

revision: str = "{revision}"
down_revision: str | None = "{parent}"
compatible_with: str | None = "{parent}"


def upgrade() -> None:
    op.add_column("repository", sa.Column("rolling_note", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("repository", "rolling_note")
"""


async def test_rolling_upgrade_end_to_end(db: Database, tmp_path: Path) -> None:
    """The next release's `wharf migrate` (the shipped migrations plus an expand one that says
    it serves its parent) runs first; this release's code still starts on what it leaves."""
    await upgrade(db)
    head = head_revision()
    newer = f"{int(head) + 1:04d}"
    versions = tmp_path / "next-release-versions"
    shutil.copytree(VERSIONS_DIR, versions, ignore=shutil.ignore_patterns("__pycache__"))
    (versions / f"{newer}_rolling_note.py").write_text(NEXT_MIGRATION.format(revision=newer, parent=head))
    assert await upgrade(db, versions_dir=versions) == (head, newer)
    assert await current_revision(db) == newer
    rows = await compat_rows(db)
    assert rows[newer] == head  # what it declares, no further: its parent's revision
    # An older instance starts (saying so), and writes as before, without the new column.
    with capture_logs() as logs:
        await check_schema(db)
    assert [(e["event"], e["schema"], e["code"]) for e in logs] == [
        ("schema_newer_but_compatible", newer, head)
    ]
    async with db.transaction() as conn:
        await conn.execute(sa.insert(t.repository).values(**SEED["repository"][1]))
    # `wharf migrate` of this (older) release does not know the stamped revision: it says so.
    with pytest.raises(SchemaError, match=f"schema \\({newer}\\) is newer than this Wharf \\({head}\\)"):
        await upgrade(db)
    assert await current_revision(db) == newer


# -- many `wharf migrate` at once ----------------------------------------------------------


@pytest.mark.slow
async def test_concurrent_wharf_migrate(db: Database, empty_url: str, tmp_path: Path) -> None:
    env = service_env({"WHARF_DATABASE_URL": empty_url, "WHARF_DATA_DIR": str(tmp_path / "var")})

    async def run() -> tuple[int | None, str, str]:
        process = await asyncio.create_subprocess_exec(
            str(WHARF), "migrate", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
        return process.returncode, out.decode(), err.decode()

    results = await asyncio.gather(*(run() for _ in range(4)))
    for code, out, err in results:
        assert code == 0, f"stdout: {out}\nstderr: {err}"
    outputs = [out.strip() for _, out, _ in results]
    head = head_revision()
    # One process migrated; the others waited for the lock and found nothing to do.
    assert sorted(outputs) == sorted(
        [f"schema upgraded: empty -> {head}"] + [f"schema is up to date ({head})"] * 3
    ), outputs
    assert await current_revision(db) == head
    assert await schema_diff(db) == []
    await check_schema(db)


# -- 0003: manifest references point at the repository's blob link -------------------------


async def test_0003_restores_links_under_references(db: Database) -> None:
    # Before 0003 a blob a manifest referenced could be unlinked; the upgrade links it again
    # (the bytes are still stored) so that the new foreign key holds, and fills repository_id.
    await upgrade(db, "0002")
    old_manifest_blob = sa.table("manifest_blob", sa.column("manifest_id"), sa.column("blob_id"))
    async with db.transaction() as conn:
        for name in ("repository", "blob", "repository_blob", "manifest"):
            # Columns of later revisions left out (repository.description comes with 0006).
            rows = [{k: v for k, v in row.items() if k != "description"} for row in SEED[name]]
            await conn.execute(sa.insert(t.metadata.tables[name]), rows)
        await conn.execute(
            sa.insert(old_manifest_blob), [{"manifest_id": 1, "blob_id": 1}, {"manifest_id": 1, "blob_id": 2}]
        )
        # The layer (blob 2) was unlinked from repository 1 while manifest 1 referenced it.
        await conn.execute(
            sa.delete(t.repository_blob).where(
                t.repository_blob.c.repository_id == 1, t.repository_blob.c.blob_id == 2
            )
        )
    await upgrade(db)
    async with db.read() as conn:
        links = {
            (row.repository_id, row.blob_id)
            for row in await conn.execute(
                sa.select(t.repository_blob.c.repository_id, t.repository_blob.c.blob_id)
            )
        }
        references = {
            (row.repository_id, row.blob_id)
            for row in await conn.execute(
                sa.select(t.manifest_blob.c.repository_id, t.manifest_blob.c.blob_id)
            )
        }
    assert links == {(1, 1), (1, 2), (2, 1)}
    assert references == {(1, 1), (1, 2)}
    assert await schema_diff(db) == []


# -- 0008: the platform of an index's children ---------------------------------------------


async def test_0008_leaves_children_recorded_before_without_a_platform(db: Database) -> None:
    # An index recorded before 0008 keeps its children; their platform is unknown (NULL), which
    # the pages show as such, until the index is pushed again.
    await upgrade(db, "0007")
    old_child = sa.table("manifest_child", sa.column("parent_id"), sa.column("child_id"))
    async with db.transaction() as conn:
        for name in ("repository", "blob", "repository_blob", "manifest"):
            await conn.execute(sa.insert(t.metadata.tables[name]), SEED[name])
        await conn.execute(sa.insert(old_child), [{"parent_id": 2, "child_id": 1}])
    await upgrade(db)
    async with db.read() as conn:
        rows = [row._asdict() for row in await conn.execute(sa.select(t.manifest_child))]
    assert rows == [
        {"parent_id": 2, "child_id": 1, "os": None, "architecture": None, "variant": None, "os_version": None}
    ]
    # Down again: the columns go, the rows stay.
    await downgrade(db, "0007")
    async with db.read() as conn:
        kept = [
            tuple(row) for row in await conn.execute(sa.select(old_child.c.parent_id, old_child.c.child_id))
        ]
    assert kept == [(2, 1)]
