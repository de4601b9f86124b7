"""CLI secrets: what a single sign-on user gives docker and skopeo instead of a password

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

`user_account.cli_secret`: the CLI secret of a user who signs in through CAS or OIDC, as
`wharf_shared.secrets.SecretBox` ciphertext (the portal shows it again, as Harbor does); NULL for
everyone else.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
# Expand (../README.md): one nullable column, which older code neither reads nor needs to fill.
compatible_with: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("user_account", sa.Column("cli_secret", sa.String(length=1024), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # In place (SQLite 3.35+): a batch copy of user_account would drop the table that other
        # tables' foreign keys name.
        op.execute("ALTER TABLE user_account DROP COLUMN cli_secret")
    else:
        op.drop_column("user_account", "cli_secret")
