"""replication and jobs: registries (endpoints), replication policies, executions, tasks, task logs

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

New tables only: older services never read them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sqlalchemy.dialects import mysql

import wharf_shared.db.types

revision: str = "0007"
down_revision: str | None = "0006"
# Expand (../README.md): new tables only, which older services never read.
compatible_with: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "execution",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("vendor_type", sa.String(length=32), nullable=False),
        sa.Column("vendor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("extra", sa.Text(), nullable=False),
        sa.Column("planned", sa.Boolean(), nullable=False),
        sa.Column("start_time", wharf_shared.db.types.UTCDateTime(), nullable=False),
        sa.Column("end_time", wharf_shared.db.types.UTCDateTime(), nullable=True),
        sa.Column("updated_at", wharf_shared.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_execution")),
    )
    with op.batch_alter_table("execution", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_execution_status_updated_at"), ["status", "updated_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_execution_vendor_type_vendor_id_id"),
            ["vendor_type", "vendor_id", "id"],
            unique=False,
        )

    op.create_table(
        "registry_endpoint",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column(
            "name",
            sa.String(length=255)
            .with_variant(mysql.VARCHAR(charset="utf8mb4", collation="utf8mb4_bin", length=255), "mariadb")
            .with_variant(mysql.VARCHAR(charset="utf8mb4", collation="utf8mb4_bin", length=255), "mysql")
            .with_variant(sa.VARCHAR(length=255, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("description", sa.String(length=1024), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("url", sa.String(length=1024), nullable=False),
        sa.Column("insecure", sa.Boolean(), nullable=False),
        sa.Column("credential_type", sa.String(length=16), nullable=False),
        sa.Column("access_key", sa.String(length=255), nullable=True),
        sa.Column("access_secret", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", wharf_shared.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", wharf_shared.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_endpoint")),
        sa.UniqueConstraint("name", name=op.f("uq_registry_endpoint_name")),
    )
    op.create_table(
        "replication_policy",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column(
            "name",
            sa.String(length=255)
            .with_variant(mysql.VARCHAR(charset="utf8mb4", collation="utf8mb4_bin", length=255), "mariadb")
            .with_variant(mysql.VARCHAR(charset="utf8mb4", collation="utf8mb4_bin", length=255), "mysql")
            .with_variant(sa.VARCHAR(length=255, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("description", sa.String(length=1024), nullable=False),
        sa.Column("src_registry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("dest_registry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("every_registry", sa.Boolean(), nullable=False),
        sa.Column("dest_namespace", sa.String(length=255), nullable=True),
        sa.Column("dest_namespace_replace_count", sa.Integer(), nullable=False),
        sa.Column("trigger_type", sa.String(length=16), nullable=False),
        sa.Column("cron", sa.String(length=128), nullable=True),
        sa.Column("filters", sa.Text(), nullable=False),
        sa.Column("replicate_deletion", sa.Boolean(), nullable=False),
        sa.Column("override", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("speed_kb", sa.Integer(), nullable=False),
        sa.Column("copy_by_chunk", sa.Boolean(), nullable=False),
        sa.Column("created_at", wharf_shared.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", wharf_shared.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dest_registry_id"],
            ["registry_endpoint.id"],
            name=op.f("fk_replication_policy_dest_registry_id_registry_endpoint"),
        ),
        sa.ForeignKeyConstraint(
            ["src_registry_id"],
            ["registry_endpoint.id"],
            name=op.f("fk_replication_policy_src_registry_id_registry_endpoint"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replication_policy")),
        sa.UniqueConstraint("name", name=op.f("uq_replication_policy_name")),
    )
    with op.batch_alter_table("replication_policy", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_replication_policy_dest_registry_id"), ["dest_registry_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_replication_policy_src_registry_id"), ["src_registry_id"], unique=False
        )

    op.create_table(
        "task",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("execution_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", wharf_shared.db.types.UTCDateTime(), nullable=True),
        sa.Column("lease_until", wharf_shared.db.types.UTCDateTime(), nullable=True),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("job", sa.Text(), nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("src_resource", sa.String(length=1024), nullable=False),
        sa.Column("dst_resource", sa.String(length=1024), nullable=False),
        sa.Column("bytes_copied", sa.BigInteger(), nullable=False),
        sa.Column("start_time", wharf_shared.db.types.UTCDateTime(), nullable=True),
        sa.Column("end_time", wharf_shared.db.types.UTCDateTime(), nullable=True),
        sa.Column("created_at", wharf_shared.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", wharf_shared.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["execution.id"],
            name=op.f("fk_task_execution_id_execution"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task")),
    )
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_execution_id_id"), ["execution_id", "id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_task_status_lease_until"), ["status", "lease_until"], unique=False
        )

    op.create_table(
        "task_log",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("task_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("time", wharf_shared.db.types.UTCDateTime(), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["task.id"], name=op.f("fk_task_log_task_id_task"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_log")),
    )
    with op.batch_alter_table("task_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_log_task_id_id"), ["task_id", "id"], unique=False)


def downgrade() -> None:
    # Dropping a table drops its indexes (MySQL refuses to drop one a foreign key needs first).
    op.drop_table("task_log")
    op.drop_table("task")
    op.drop_table("replication_policy")
    op.drop_table("registry_endpoint")
    op.drop_table("execution")
