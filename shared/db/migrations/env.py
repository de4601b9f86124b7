"""Alembic environment: always handed a live connection by `wharf_shared.db.migrate`."""

from __future__ import annotations

from alembic import context

from wharf_shared.db.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `wharf migrate`, which takes the migration lock first")

context.configure(
    connection=connection,
    target_metadata=metadata,
    compare_type=True,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
