"""oidc refresh tokens: each OIDC user's refresh token from their last sign-in, for the group sync

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

`oidc_refresh_token`: one row per OIDC user who signed in with a provider that issued a refresh
token, `wharf_shared.secrets.SecretBox` ciphertext, replaced at each sign-in and by the job
service's OIDC group sync when the provider rotates it; gone with the user.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import wharf_shared.db.types

revision: str = "0014"
down_revision: str | None = "0013"
# Expand (../README.md): a new table, which older code never reads.
compatible_with: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "oidc_refresh_token",
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("updated_at", wharf_shared.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_oidc_refresh_token_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_oidc_refresh_token")),
    )


def downgrade() -> None:
    op.drop_table("oidc_refresh_token")
