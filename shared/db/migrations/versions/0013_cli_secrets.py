"""single sign-on users: CLI secrets (what docker and skopeo take instead of a password), OIDC subjects

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

`user_account.cli_secret`: the CLI secret of a user who signs in through CAS or OIDC, as
`wharf_shared.secrets.SecretBox` ciphertext (the portal shows it again, as Harbor does); NULL for
everyone else. `user_account.sso_subject`: an OIDC user's identity at the provider (sha256 hex
of issuer NUL subject), unique: the account follows it rather than the username claim.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
# Expand (../README.md): nullable columns (one with a unique index), which older code neither
# reads nor needs to fill.
compatible_with: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("user_account", sa.Column("cli_secret", sa.String(length=1024), nullable=True))
    op.add_column("user_account", sa.Column("sso_subject", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_user_account_sso_subject"), "user_account", ["sso_subject"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_user_account_sso_subject"), table_name="user_account")
    for column in ("sso_subject", "cli_secret"):
        if op.get_bind().dialect.name == "sqlite":
            # In place (SQLite 3.35+): a batch copy of user_account would drop the table that
            # other tables' foreign keys name.
            op.execute(f"ALTER TABLE user_account DROP COLUMN {column}")
        else:
            op.drop_column("user_account", column)
