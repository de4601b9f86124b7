"""audit log and pull counts: the event consumer's audit rows, repository pull_count, manifest pull_time

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import wharf_shared.db.types

revision: str = "0005"
down_revision: str | None = "0004"
# Expand (../README.md): a new table, a column with a server default and a nullable one.
compatible_with: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("resource", sa.String(length=512), nullable=False),
        sa.Column("operation", sa.String(length=32), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=False),
        sa.Column("op_time", wharf_shared.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_log_event_id")),
    )
    op.create_index(op.f("ix_audit_log_op_time"), "audit_log", ["op_time"], unique=False)
    op.create_index(
        op.f("ix_audit_log_project_id_op_time"), "audit_log", ["project_id", "op_time"], unique=False
    )
    # Added columns only (expand): older registries keep writing rows without them.
    op.add_column("repository", sa.Column("pull_count", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column("manifest", sa.Column("pull_time", wharf_shared.db.types.UTCDateTime(), nullable=True))


def downgrade() -> None:
    # SQLite ≥ 3.35 drops a column in place (no table copy, so no cascading delete of children).
    op.drop_column("manifest", "pull_time")
    op.drop_column("repository", "pull_count")
    op.drop_index(op.f("ix_audit_log_project_id_op_time"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_op_time"), table_name="audit_log")
    op.drop_table("audit_log")
