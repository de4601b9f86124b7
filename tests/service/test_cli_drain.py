"""`wharf drain on|off|status` as an operator (or Ansible) runs it: the real CLI in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.processes import ROOT, service_env

WHARF = Path(sys.executable).parent / "wharf"


def wharf_drain(env: dict[str, str], state: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WHARF), "drain", state],
        env=service_env(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_drain_on_status_off(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    env = {
        "WHARF_DATA_DIR": str(data_dir),
        "WHARF_PROXY__EJECT_AFTER_FAILURES": "4",
        "WHARF_PROXY__HEALTH_INTERVAL_SECONDS": "2.5",
    }
    drain_file = data_dir / "drain"

    status = wharf_drain(env, "status")
    assert (status.returncode, status.stdout) == (0, f"not draining (no {drain_file})\n"), status.stderr

    on = wharf_drain(env, "on")
    assert on.returncode == 0, on.stderr
    assert drain_file.is_file()
    assert on.stdout.splitlines()[0] == f"draining ({drain_file})"
    # The hint: eject_after times health_interval, from the settings.
    assert "out of rotation within about 10 s (4 failed readiness checks, 2.5 s apart)" in on.stdout
    assert [p.name for p in data_dir.iterdir()] == ["drain"]  # no temporary file left behind

    again = wharf_drain(env, "on")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == f"already draining ({drain_file})"

    status = wharf_drain(env, "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("draining since ")
    assert status.stdout.rstrip().endswith(f"({drain_file})")

    off = wharf_drain(env, "off")
    assert off.returncode == 0, off.stderr
    assert off.stdout.splitlines()[0] == f"not draining ({drain_file} removed)"
    assert not drain_file.exists()
    off = wharf_drain(env, "off")
    assert (off.returncode, off.stdout) == (0, f"not draining ({drain_file} was not there)\n")


def test_drain_file_setting_and_a_missing_directory(tmp_path: Path) -> None:
    drain_file = tmp_path / "elsewhere" / "drained"
    env = {"WHARF_DATA_DIR": str(tmp_path / "var"), "WHARF_DRAIN_FILE": str(drain_file)}
    on = wharf_drain(env, "on")
    assert on.returncode == 1
    assert f"cannot drain: {drain_file.parent} does not exist" in on.stderr
    drain_file.parent.mkdir()
    on = wharf_drain(env, "on")
    assert on.returncode == 0, on.stderr
    assert drain_file.is_file()
    assert not (tmp_path / "var" / "drain").exists()
