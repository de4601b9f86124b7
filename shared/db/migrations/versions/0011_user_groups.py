"""user groups: directory groups, their project memberships, and who belongs to them

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import wharf_shared.db.types
from sqlalchemy.dialects import mysql

revision: str = "0011"
down_revision: str | None = "0010"
# Expand (../README.md): new tables only, which older code never reads (it sees direct members only).
compatible_with: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _binary(length: int) -> sa.types.TypeEngine[str]:
    return (
        sa.String(length=length)
        .with_variant(mysql.VARCHAR(charset="utf8mb4", collation="utf8mb4_bin", length=length), "mariadb")
        .with_variant(mysql.VARCHAR(charset="utf8mb4", collation="utf8mb4_bin", length=length), "mysql")
        .with_variant(sa.VARCHAR(length=length, collation="C"), "postgresql")
    )


def upgrade() -> None:
    op.create_table(
        "user_group",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("group_name", _binary(255), nullable=False),
        sa.Column("group_type", sa.Integer(), nullable=False),
        sa.Column("group_key", _binary(512), nullable=False),
        sa.Column("ldap_group_dn", _binary(512), nullable=True),
        sa.Column("created_at", wharf_shared.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", wharf_shared.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_group")),
        sa.UniqueConstraint("group_type", "group_key", name=op.f("uq_user_group_group_type_group_key")),
        sa.UniqueConstraint("ldap_group_dn", name=op.f("uq_user_group_ldap_group_dn")),
    )
    with op.batch_alter_table("user_group", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_group_group_name"), ["group_name"], unique=False)

    op.create_table(
        "project_group_member",
        sa.Column("project_id", _ID, nullable=False),
        sa.Column("group_id", _ID, nullable=False),
        sa.Column("role_id", sa.Integer(), nullable=False),
        sa.Column("created_at", wharf_shared.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", wharf_shared.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["user_group.id"],
            name=op.f("fk_project_group_member_group_id_user_group"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_project_group_member_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "group_id", name=op.f("pk_project_group_member")),
    )
    with op.batch_alter_table("project_group_member", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_project_group_member_group_id"), ["group_id"], unique=False)

    op.create_table(
        "user_group_member",
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("group_id", _ID, nullable=False),
        sa.Column("synced_at", wharf_shared.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["user_group.id"],
            name=op.f("fk_user_group_member_group_id_user_group"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_user_group_member_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "group_id", name=op.f("pk_user_group_member")),
    )
    with op.batch_alter_table("user_group_member", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_group_member_group_id"), ["group_id"], unique=False)


def downgrade() -> None:
    # Dropping a table drops its indexes (MySQL refuses to drop one a foreign key needs first).
    op.drop_table("user_group_member")
    op.drop_table("project_group_member")
    op.drop_table("user_group")
