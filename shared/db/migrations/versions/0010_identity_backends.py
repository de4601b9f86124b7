"""identity backends: which auth backend made a user; an audit entry's description

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

`user_account.auth_backend`: the auth mode whose directory provisioned the user (ldap_auth,
http_auth, ...), NULL for a local user (made by the API, the CLI or `wharf init`).
`audit_log.operation_description`: Harbor's name (its newer audit entries carry one); a login's
names the backend that checked the credentials.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
# Expand (../README.md): two nullable columns, which older code neither reads nor needs to fill.
compatible_with: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("user_account", sa.Column("auth_backend", sa.String(length=16), nullable=True))
    op.add_column("audit_log", sa.Column("operation_description", sa.String(length=255), nullable=True))


def _drop(table: str, column: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite drops a plain column in place (3.35+); a batch copy of user_account would drop the
        # table that other tables' foreign keys name.
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    else:
        op.drop_column(table, column)


def downgrade() -> None:
    _drop("audit_log", "operation_description")
    _drop("user_account", "auth_backend")
