"""The SQL layer: one async engine per process (SQLAlchemy Core), tables, queries, migrations."""
