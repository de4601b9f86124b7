"""event outbox: events written with the change, relayed to the stream after commit

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import wharf_shared.db.types

revision: str = "0004"
down_revision: str | None = "0003"
# Expand (../README.md): a new table only, which older code never reads.
compatible_with: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_outbox",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", wharf_shared.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_outbox")),
    )


def downgrade() -> None:
    # Rows not yet relayed would be lost with the table: a downgrade runs with the services stopped
    # and after the relay drained it (an empty outbox is the precondition).
    op.drop_table("event_outbox")
