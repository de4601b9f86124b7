"""platform of an index's children

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

`manifest_child` keeps the platform the index gives each manifest it lists (`os`, `architecture`,
`variant`, `os.version`), so that the ui reads it from SQL rather than from the index's bytes in
the registry's storage. Nullable columns: rows recorded before (and by an older registry during an
upgrade) have none, and the pages say "unknown platform"; pushing such an index again fills them.
Adding a nullable column is a change of metadata only on PostgreSQL and MariaDB: no table rewrite.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
# Expand (../README.md): nullable columns; an older registry leaves them NULL.
compatible_with: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("manifest_child", sa.Column("os", sa.String(length=64), nullable=True))
    op.add_column("manifest_child", sa.Column("architecture", sa.String(length=64), nullable=True))
    op.add_column("manifest_child", sa.Column("variant", sa.String(length=32), nullable=True))
    op.add_column("manifest_child", sa.Column("os_version", sa.String(length=128), nullable=True))


def downgrade() -> None:
    op.drop_column("manifest_child", "os_version")
    op.drop_column("manifest_child", "variant")
    op.drop_column("manifest_child", "architecture")
    op.drop_column("manifest_child", "os")
