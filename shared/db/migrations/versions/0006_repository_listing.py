"""repository description and the indexes the management API's lists page through

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

`repository.description` (Harbor's, set through `PUT /projects/{p}/repositories/{r}`), nullable
so that older registries keep inserting repositories without it. The API lists an artifact's tags
and a repository's artifacts newest first (Harbor's default order), which these indexes give by
a backward scan with no sort: `tag (manifest_id, updated_at, id)` (it also serves the foreign
key, so the index on `manifest_id` alone goes) and `manifest (repository_id, created_at, id)`.
A project's repositories need no new index: they are a range of the unique name.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
# Expand (../README.md): a nullable column and indexes (older code names no index).
compatible_with: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("repository", sa.Column("description", sa.Text(), nullable=True))
    # The new index first: MySQL keeps an index under the foreign key at every moment.
    op.create_index(
        op.f("ix_tag_manifest_id_updated_at_id"), "tag", ["manifest_id", "updated_at", "id"], unique=False
    )
    op.drop_index(op.f("ix_tag_manifest_id"), table_name="tag")
    op.create_index(
        op.f("ix_manifest_repository_id_created_at_id"),
        "manifest",
        ["repository_id", "created_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_manifest_repository_id_created_at_id"), table_name="manifest")
    op.create_index(op.f("ix_tag_manifest_id"), "tag", ["manifest_id"], unique=False)
    op.drop_index(op.f("ix_tag_manifest_id_updated_at_id"), table_name="tag")
    op.drop_column("repository", "description")
