"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import wharf_shared.db.types
${imports if imports else ""}

revision: str = ${repr(up_revision)}
down_revision: str | None = ${repr(down_revision)}
# The oldest revision whose code still works on the schema this migration leaves (README.md beside
# versions/). Expand (new table, nullable column, index): at least the parent's revision, better
# what the parent declares. Contract (drops what older code reads): the first revision that
# stopped reading it. None: only code that knows this revision (older services refuse to start).
compatible_with: str | None = None
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
