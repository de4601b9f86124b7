"""The README's settings table is the one `wharf config --markdown` generates (`make readme`)."""

from __future__ import annotations

from pathlib import Path

from wharf_shared.config import known_variables
from wharf_shared.docs import BEGIN, END, replace_table, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_table_is_current() -> None:
    text = README.read_text()
    assert text.count(BEGIN) == 1, f"README.md needs exactly one {BEGIN!r}"
    assert text.count(END) == 1, f"README.md needs exactly one {END!r}"
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] == settings_table(), "README.md's settings table is stale: run `make readme`"
    assert replace_table(text) == text


def test_table_lists_every_variable() -> None:
    table = settings_table()
    listed = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    known = known_variables()
    groups = {name for name in known if any(other.startswith(name + "__") for other in known)}
    assert groups == {
        "WHARF_STORAGE",
        "WHARF_STORAGE__FILESYSTEM",
        "WHARF_STORAGE__S3",
        "WHARF_REGISTRY",
        "WHARF_TOKEN",
        "WHARF_UI",
        "WHARF_PROXY",
        "WHARF_PROXY__UPSTREAMS",
        "WHARF_JOBSERVICE",
        "WHARF_SERVING",
        "WHARF_METRICS",
    }
    assert listed == known - groups
    assert table.startswith(BEGIN)
    assert table.endswith(END)


def test_replace_table_keeps_the_rest() -> None:
    stale = f"# Title\n\nbefore\n{BEGIN}\n| old | table |\n{END}\nafter\n"
    fresh = replace_table(stale)
    assert fresh == f"# Title\n\nbefore\n{settings_table()}\nafter\n"
    assert replace_table(fresh) == fresh


def test_defaults_from_factories_are_shown() -> None:
    table = settings_table()
    assert "PydanticUndefined" not in table
    rows = {line.split("`")[1]: line for line in table.splitlines() if line.startswith("| `")}
    assert "| `127.0.0.0/8,::1/128` |" in rows["WHARF_TRUSTED_PROXIES"]
    assert "| `http://127.0.0.1:5000` |" in rows["WHARF_PROXY__UPSTREAMS__REGISTRY"]
    assert rows["WHARF_PROXY__UPSTREAMS__UI"].startswith("| `WHARF_PROXY__UPSTREAMS__UI` |  |")
