"""cmdb grants: the project memberships the CMDB sync made (the only ones it may remove)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import wharf_shared.db.types

revision: str = "0012"
down_revision: str | None = "0011"
# Expand (../README.md): a new table, which older code never reads.
compatible_with: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cmdb_grant",
        sa.Column("project_id", _ID, nullable=False),
        sa.Column("member_type", sa.String(length=1), nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("created_at", wharf_shared.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["project.id"], name=op.f("fk_cmdb_grant_project_id_project"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", "member_type", "member_id", name=op.f("pk_cmdb_grant")),
    )


def downgrade() -> None:
    op.drop_table("cmdb_grant")
