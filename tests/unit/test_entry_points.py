"""The service entry points as installed (`wharf-registry`, `wharf-token`, `wharf-proxy`, `wharf`),
run as processes: `--help` and `--version` answer and exit 0 without reading settings or serving
anything (a process that served would outlive the timeout), anything else is refused with a usage
line and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from pydantic import BaseModel

from tests.support.processes import service_env
from wharf_shared.config import Settings

BIN = Path(sys.executable).parent
SERVICES = {"registry": ("registry", "storage"), "token": ("token",), "proxy": ("proxy",)}
# A variable no service knows stops start-up: these commands must answer without reading any.
ENV = service_env({"WHARF_NO_SUCH_SETTING": "1"})
DEFAULT_SHOWN = {
    "registry": "WHARF_REGISTRY__UPLOAD_LEASE_SECONDS=15.0",
    "token": "WHARF_TOKEN__PORT=8082",
    "proxy": "WHARF_PROXY__RETRY_BODY_BYTES=1048576",
}


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=60, check=False)


def variables(model: type[BaseModel], prefix: str) -> list[str]:
    """Every leaf variable under `prefix` (walked here, not by the code under test)."""
    names = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += variables(annotation, f"{prefix}{name.upper()}__")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_help_lists_the_services_settings(service: str) -> None:
    result = run(str(BIN / f"wharf-{service}"), "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: wharf-{service} [-h] [--version]\n"), result.stdout
    listed = {
        line.strip().split("=", 1)[0] for line in result.stdout.splitlines() if line.startswith("  WHARF_")
    }
    own = set()
    for group in SERVICES[service]:
        model = Settings.model_fields[group].annotation
        assert isinstance(model, type)
        assert issubclass(model, BaseModel)
        own |= set(variables(model, f"WHARF_{group.upper()}__"))
    assert own <= listed, sorted(own - listed)
    assert {"WHARF_DATABASE_URL", "WHARF_REDIS_URL", "WHARF_EXTERNAL_URL", "WHARF_SERVING__*"} <= listed
    others = {group for name, groups in SERVICES.items() if name != service for group in groups} - set(
        SERVICES[service]
    )
    assert not any(name.startswith(tuple(f"WHARF_{g.upper()}__" for g in others)) for name in listed), listed
    assert f"\n  {DEFAULT_SHOWN[service]}\n" in result.stdout


@pytest.mark.parametrize("command", ["wharf-registry", "wharf-token", "wharf-proxy", "wharf"])
def test_version(command: str) -> None:
    result = run(str(BIN / command), "--version")
    assert (result.returncode, result.stdout) == (0, f"{command} {metadata.version('wharf')}\n"), (
        result.stderr
    )


@pytest.mark.parametrize("service", sorted(SERVICES))
@pytest.mark.parametrize(
    "argv", [["--bogus"], ["serve"], ["--help", "extra"]], ids=["option", "word", "extra"]
)
def test_other_arguments_are_refused(service: str, argv: list[str]) -> None:
    result = run(str(BIN / f"wharf-{service}"), *argv)
    if argv[0] == "--help":  # argparse answers --help as soon as it sees it
        assert result.returncode == 0
        return
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"usage: wharf-{service} [-h] [--version]\n"), result.stderr
    assert "unrecognized arguments" in result.stderr


def test_the_module_form_answers_the_same() -> None:
    result = run(sys.executable, "-m", "wharf_registry", "--version")
    assert (result.returncode, result.stdout) == (0, f"wharf-registry {metadata.version('wharf')}\n")


def test_wharf_refuses_what_it_does_not_know() -> None:
    result = run(str(BIN / "wharf"), "--bogus")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: wharf [-h] [--version]")
