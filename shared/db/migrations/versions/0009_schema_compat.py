"""schema compatibility: the oldest revision whose code still works on each revision's schema

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

`wharf migrate` writes a row per revision it knows (what the version files' `compatible_with`
say, through the chain), so that code older than the schema, which cannot read the newer version
files, can tell whether it may start on it: see wharf_shared.db.schema and ../README.md.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
# Expand (../README.md): a new table only, which older code never reads.
compatible_with: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schema_compat",
        sa.Column("revision", sa.String(length=32), nullable=False),
        sa.Column("oldest_compatible", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("revision", name=op.f("pk_schema_compat")),
    )


def downgrade() -> None:
    op.drop_table("schema_compat")
