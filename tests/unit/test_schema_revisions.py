"""The start-up check reads the migrations' revisions without Alembic: it must read what Alembic reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from wharf_shared.db.migrate import alembic_config
from wharf_shared.db.schema import known_revisions, migrations, read_migrations


def test_known_revisions_match_alembic() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    head, known = known_revisions()
    assert [head] == list(script.get_heads())
    assert known == {rev.revision for rev in script.walk_revisions()}
    # Oldest first, as Alembic walks it backwards.
    assert list(migrations().chain) == [rev.revision for rev in script.walk_revisions()][::-1]


def test_compatible_with_matches_alembic() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    declared = {
        rev.revision: rev.module.compatible_with
        for rev in script.walk_revisions()
        if getattr(rev.module, "compatible_with", None) is not None
    }
    assert declared == dict(migrations().declared)
    # Every shipped migration has the line (the template gives it), even when it says None.
    assert all(hasattr(rev.module, "compatible_with") for rev in script.walk_revisions())


def test_shipped_compatibility() -> None:
    """0003 broke older code; everything since is expand (migrations/README.md)."""
    rows = migrations().compat_rows()
    assert rows["0001"] == "0001"
    assert rows["0002"] == "0001"
    assert rows["0003"] == "0003"
    assert {rows[rev] for rev in migrations().chain[3:]} == {"0003"}


def write_chain(directory: Path, *revisions: tuple[str, str | None]) -> Path:
    """Version files with only the lines the reader looks at: (revision, compatible_with)."""
    directory.mkdir()
    parent = None
    for revision, compatible in revisions:
        lines = [f'revision: str = "{revision}"', f"down_revision: str | None = {parent!r}"]
        if compatible is not None:
            lines.append(f"compatible_with: str | None = '{compatible}'")
        (directory / f"{revision}_x.py").write_text("\n".join(lines) + "\n")
        parent = revision
    return directory


def test_oldest_compatible_through_the_chain(tmp_path: Path) -> None:
    chain = read_migrations(
        write_chain(
            tmp_path / "versions",
            ("0001", None),
            ("0002", "0001"),  # expand
            ("0003", None),  # breaks older code
            ("0004", "0003"),  # expand
            ("0005", "0004"),  # expand, declaring only its parent
            ("0006", "0001"),  # claims more than 0003 left: capped
            ("0007", "0006"),  # contract: code from 0006 on stopped reading what it drops
        )
    )
    assert chain.chain == ("0001", "0002", "0003", "0004", "0005", "0006", "0007")
    assert chain.compat_rows() == {
        "0001": "0001",
        "0002": "0001",
        "0003": "0003",
        "0004": "0003",
        "0005": "0004",
        "0006": "0004",
        "0007": "0006",
    }


def test_a_declaration_must_name_the_migration_or_an_earlier_one(tmp_path: Path) -> None:
    versions = write_chain(tmp_path / "versions", ("0001", None), ("0002", "0003"), ("0003", None))
    with pytest.raises(RuntimeError, match="0002 is compatible_with 0003"):
        read_migrations(versions)


def test_one_chain_only(tmp_path: Path) -> None:
    versions = write_chain(tmp_path / "versions", ("0001", None), ("0002", None))
    (versions / "0003_x.py").write_text('revision = "0003"\ndown_revision = "0001"\n')
    with pytest.raises(RuntimeError, match="2 heads"):
        read_migrations(versions)


def test_the_start_up_check_imports_no_alembic() -> None:
    """Reading the revisions (what every service does as it starts) stays cheap."""
    probe = (
        "import sys; from wharf_shared.db import schema; schema.migrations().compat_rows(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
