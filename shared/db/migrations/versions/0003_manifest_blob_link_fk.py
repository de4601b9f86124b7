"""manifest blob references point at the repository's link to the blob

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

`manifest_blob` gains `repository_id` (the manifest's repository) and a foreign key on
(repository_id, blob_id) to `repository_blob`: the database refuses a blob delete while a
manifest in the repository references the blob, and a manifest reference to a blob the
repository no longer holds. Earlier releases let a referenced blob be unlinked; the upgrade
restores those links (the bytes are still stored: nothing collects them yet) before it adds
the key.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from wharf_shared.db.types import UTCDateTime, utcnow

revision: str = "0003"
down_revision: str | None = "0002"
# Not compatible (../README.md): code at 0002 inserts `manifest_blob` rows without the new
# NOT NULL `repository_id`, and unlinks blobs that the new foreign key now keeps.
compatible_with: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("manifest_blob", schema=None) as batch_op:
        batch_op.add_column(sa.Column("repository_id", _ID, nullable=True))
    manifest = sa.table("manifest", sa.column("id"), sa.column("repository_id"))
    manifest_blob = sa.table(
        "manifest_blob", sa.column("manifest_id"), sa.column("repository_id"), sa.column("blob_id")
    )
    repository_blob = sa.table(
        "repository_blob",
        sa.column("repository_id"),
        sa.column("blob_id"),
        sa.column("created_at", UTCDateTime()),
    )
    op.execute(
        manifest_blob.update().values(
            repository_id=sa.select(manifest.c.repository_id)
            .where(manifest.c.id == manifest_blob.c.manifest_id)
            .scalar_subquery()
        )
    )
    linked = sa.exists().where(
        repository_blob.c.repository_id == manifest_blob.c.repository_id,
        repository_blob.c.blob_id == manifest_blob.c.blob_id,
    )
    missing = (
        sa.select(manifest_blob.c.repository_id, manifest_blob.c.blob_id).where(~linked).distinct().subquery()
    )
    op.execute(
        repository_blob.insert().from_select(
            ["repository_id", "blob_id", "created_at"],
            sa.select(missing.c.repository_id, missing.c.blob_id, sa.literal(utcnow(), UTCDateTime())),
        )
    )
    with op.batch_alter_table("manifest_blob", schema=None) as batch_op:
        batch_op.alter_column("repository_id", existing_type=_ID, nullable=False)
        batch_op.create_index(
            batch_op.f("ix_manifest_blob_repository_id_blob_id"), ["repository_id", "blob_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_manifest_blob_repository_id_repository_blob"),
            "repository_blob",
            ["repository_id", "blob_id"],
            ["repository_id", "blob_id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("manifest_blob", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_manifest_blob_repository_id_repository_blob"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_manifest_blob_repository_id_blob_id"))
        batch_op.drop_column("repository_id")
