"""The command line of a service's entry point (`wharf-registry`, `wharf-token`, `wharf-proxy`).

A service takes no arguments: its settings come from `WHARF_*` variables (config.py). The command
line only answers `--help` (which lists the service's settings, from the settings model: names,
defaults and descriptions are never kept by hand) and `--version`, and refuses anything else with
a usage line and exit status 2, before any setting is read or any port is bound.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from wharf_shared.cli import VersionAction
from wharf_shared.config import CONFIG_FILE_VAR, ENV_PREFIX, NESTED_DELIMITER, Settings

_WIDTH = 100


# The settings groups each service calls its own: listed in full in its help.
OWN_GROUPS = {"registry": ("registry", "storage"), "token": ("token",), "proxy": ("proxy",)}


def parse_service_args(service: str, description: str, argv: Sequence[str] | None = None) -> None:
    """Answer `--help` / `--version` (exit 0) or refuse other arguments (exit 2); return otherwise."""
    about = (
        f"{description} Takes no arguments: settings come from WHARF_* environment variables, or "
        f"the TOML file {CONFIG_FILE_VAR} names (same keys); `wharf config` prints the effective ones."
    )
    parser = argparse.ArgumentParser(
        prog=f"wharf-{service}",
        description=textwrap.fill(about, _WIDTH),
        epilog=settings_help(OWN_GROUPS[service]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=VersionAction)
    parser.parse_args(argv)


def settings_help(groups: Sequence[str]) -> str:
    """`groups` in full, then the settings every service shares: the top-level ones in full, and
    each group no service calls its own by its description."""
    owned = {group for own in OWN_GROUPS.values() for group in own}
    sections = [
        f"{group} settings:\n" + "\n".join(_lines(_group_model(group), f"{ENV_PREFIX}{group.upper()}__"))
        for group in groups
    ]
    shared: list[str] = []
    for name, info in Settings.model_fields.items():
        key = f"{ENV_PREFIX}{name.upper()}"
        model = _group_of(info.annotation)
        if model is None:
            shared += _entry(key, info.get_default(call_default_factory=True), info)
        elif name not in owned:
            shared += _wrapped(f"{key}{NESTED_DELIMITER}*", (model.__doc__ or "").strip().split("\n")[0])
    sections.append("settings every service shares (not each reads all):\n" + "\n".join(shared))
    return "\n\n".join(sections)


def _group_model(group: str) -> type[BaseModel]:
    model = _group_of(Settings.model_fields[group].annotation)
    assert model is not None, f"{group} is not a settings group"
    return model


def _group_of(annotation: object) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _lines(model: type[BaseModel], prefix: str) -> list[str]:
    lines = []
    for name, info in model.model_fields.items():
        key = prefix + name.upper()
        nested = _group_of(info.annotation)
        if nested is not None:
            lines += _lines(nested, key + NESTED_DELIMITER)
        else:
            lines += _entry(key, info.get_default(call_default_factory=True), info)
    return lines


def _entry(key: str, default: object, info: FieldInfo) -> list[str]:
    # Lists as their variable is written (comma-separated), as the README table shows them.
    shown = (
        ",".join(map(str, default)) if isinstance(default, list) else "" if default is None else str(default)
    )
    return _wrapped(f"{key}={shown}" if shown else key, info.description or "")


def _wrapped(head: str, text: str) -> list[str]:
    lines = [f"  {head}"]
    if text:
        lines += textwrap.wrap(text, _WIDTH, initial_indent="      ", subsequent_indent="      ")
    return lines
