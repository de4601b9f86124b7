"""The start-up check reads the migrations' revisions without Alembic: it must read what Alembic reads."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from wharf_shared.db.migrate import alembic_config
from wharf_shared.db.schema import known_revisions


def test_known_revisions_match_alembic() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    head, known = known_revisions()
    assert [head] == list(script.get_heads())
    assert known == {rev.revision for rev in script.walk_revisions()}
