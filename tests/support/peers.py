"""The single sign-on peers' venv: a CAS server and an OIDC provider from PyPI, kept apart from
Wharf's own packages (Django, Flask, Authlib are no business of Wharf's venv).

Made at first use from tests/peers/requirements-sso.txt (the one place their versions are
pinned) under var/peers/sso-<digest of that file>/, so a changed pin makes a new venv; a file
lock lets parallel test workers share the making. `make test` makes it ahead of the tests
(`python -m tests.support.peers`, from scripts/bootstrap.sh).
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.support import backends
from tests.support.processes import ROOT

REQUIREMENTS = ROOT / "tests" / "peers" / "requirements-sso.txt"
PEERS = ROOT / "var" / "peers"
APPS = ROOT / "tests" / "peers"


def _venv() -> Path:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    return PEERS / f"sso-{digest}"


def make_venv() -> Path:
    """The venv's python, the venv made first when missing."""
    venv = _venv()
    python = venv / "bin" / "python"
    done = venv / ".installed"
    if done.exists():
        return python
    PEERS.mkdir(parents=True, exist_ok=True)
    with (PEERS / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            log = PEERS / f"{venv.name}.log"
            with log.open("w") as out:
                # The base interpreter, not this venv's: the peers' venv must not see Wharf's packages.
                base = getattr(sys, "_base_executable", sys.executable)
                for argv in (
                    [base, "-m", "venv", "--clear", str(venv)],
                    [str(python), "-m", "pip", "install", "-q", "--no-deps", "-r", str(REQUIREMENTS)],
                ):
                    if subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False).returncode:
                        raise RuntimeError(f"{' '.join(argv)} failed; its log: {log}")
            done.touch()
    return python


def peer_python() -> Path:
    """The peers' python; the test fails (make test) or is skipped when it cannot be made."""
    try:
        return make_venv()
    except (OSError, RuntimeError) as exc:
        backends.unavailable("the SSO peers' venv", exc)
        raise  # unreachable: unavailable() skips or fails


@contextmanager
def running_peer(
    name: str,
    argv: list[str],
    ready_url: str,
    log: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """A peer process, polled at `ready_url` until it answers 200, killed at the end."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                backends.unavailable(name, RuntimeError(f"exited {process.returncode}: {_tail(log)}"))
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as response:  # noqa: S310 - loopback
                    if response.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                backends.unavailable(name, TimeoutError(f"not ready after {timeout}s: {_tail(log)}"))
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return ""


if __name__ == "__main__":
    print(make_venv())  # noqa: T201 - the command's answer
