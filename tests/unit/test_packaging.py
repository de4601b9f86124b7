"""The wheel holds every module and data file of the tree: setuptools installs only the packages
and data files pyproject.toml names, so a new subpackage or template left out of the list works
in the editable checkout and breaks every installed release (the Ansible rollout's hosts)."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_of_the_tree_is_listed() -> None:
    listed = set(SETUPTOOLS["packages"])
    found = set()
    for name, folder in SETUPTOOLS["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join((name, *relative.parts)))
    assert found - listed == set(), "packages missing from pyproject.toml's [tool.setuptools] packages"
    assert listed - found == set(), "packages listed in pyproject.toml that the tree does not have"


def test_every_data_file_of_the_tree_is_packaged() -> None:
    """Files that are not Python source, beside the packages, match a package-data pattern."""
    data = SETUPTOOLS["package-data"]
    missing = []
    for name, folder in SETUPTOOLS["package-dir"].items():
        base = ROOT / folder
        for path in base.rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc", ".md") or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(base)
            if not any(fnmatch(str(relative), pattern) for pattern in data.get(name, [])):
                missing.append(f"{name}: {relative}")
    assert missing == [], missing
