"""`python -m wharf_shared.forks`: services forked from one parent; one that exits stops the rest,
SIGTERM stops them all."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.processes import ROOT
from wharf_shared.forks import parse

MODULE = "tests.support.forkling"


def started(marker: Path, process: subprocess.Popen[bytes], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not marker.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the fork did not start"
        time.sleep(0.05)


def forks(*specs: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "wharf_shared.forks", *specs],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_parse() -> None:
    assert parse("wharf_jobservice:events") == ("wharf_jobservice", ["events"])
    assert parse("wharf_registry") == ("wharf_registry", [])
    assert parse("m:a,b") == ("m", ["a", "b"])


def test_a_fork_that_exits_stops_the_others(tmp_path: Path) -> None:
    marker = tmp_path / "waiting"
    process = forks(f"{MODULE}:wait,{marker}", f"{MODULE}:exit,3")
    try:
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 3
    assert f"{MODULE} exited with status 3" in err.decode()


def test_sigterm_stops_every_fork(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    process = forks(f"{MODULE}:wait,{one}", f"{MODULE}:wait,{two}")
    try:
        started(one, process)
        started(two, process)
        assert one.read_text().strip() == MODULE[:15]  # named after its module, as top shows it
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0


def run_loaded(tmp_path: Path, *preload: str) -> tuple[list[str], list[str], int]:
    """Two forklings that report whether `tabnanny` was loaded before them: (first, last, parent pid)."""
    first, last = tmp_path / "first", tmp_path / "last"
    for marker in (first, last):
        marker.unlink(missing_ok=True)
    process = forks(*preload, f"{MODULE}:loaded,{first},tabnanny", f"{MODULE}:loaded,{last},tabnanny")
    try:
        started(first, process)
        started(last, process)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0
    return first.read_text().split(), last.read_text().split(), process.pid


def test_the_last_service_runs_in_the_parent_and_preloads_are_shared(tmp_path: Path) -> None:
    """`--preload`: modules loaded before forking (what `wharf run` passes when every forked service
    keeps one process); the last spec runs in the parent itself."""
    first, last, parent = run_loaded(tmp_path, "--preload", "tabnanny")
    assert first[0] == last[0] == "yes"
    assert last[1] == str(parent)
    assert first[1] != str(parent)
    first, last, parent = run_loaded(tmp_path)
    assert first[0] == last[0] == "no"


def test_an_unknown_preload_stops_the_start() -> None:
    process = forks("--preload", "tests.support.no_such_module", f"{MODULE}:exit,0")
    try:
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode != 0
    assert "tests.support.no_such_module" in err.decode()


def test_a_fork_that_exits_stops_the_service_in_the_parent(tmp_path: Path) -> None:
    marker = tmp_path / "parent"
    process = forks(f"{MODULE}:exit,4", f"{MODULE}:wait,{marker}")
    try:
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 4
    assert f"{MODULE} exited with status 4" in err.decode()
