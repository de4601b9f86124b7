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
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
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
    name: str, argv: list[str], folder: Path, ready_path: str, *, https: bool = False, timeout: float = 60.0
) -> Iterator[int]:
    """A peer process that binds a free loopback port itself and writes its number to
    `<folder>/port` (no race between choosing a port and binding it), polled at `ready_path`
    (over HTTPS when `https`) until it answers 200, stopped at the end. Yields the port; its output goes to
    `<folder>/peer.log`."""
    folder.mkdir(parents=True, exist_ok=True)
    port_file, log = folder / "port", folder / "peer.log"
    port_file.unlink(missing_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not _ready(port_file, ready_path, https):
            if process.poll() is not None:
                backends.unavailable(name, RuntimeError(f"exited {process.returncode}: {_tail(log)}"))
            if time.monotonic() > deadline:
                backends.unavailable(name, TimeoutError(f"not ready after {timeout}s: {_tail(log)}"))
            time.sleep(0.1)
        yield int(port_file.read_text())
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _ready(port_file: Path, path: str, https: bool) -> bool:
    # Is it up at all? Whether its certificate is trusted is the tests' business.
    context = ssl._create_unverified_context() if https else None  # noqa: S323
    try:
        port = int(port_file.read_text())
        url = f"{'https' if https else 'http'}://127.0.0.1:{port}{path}"
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return ""


if __name__ == "__main__":
    print(make_venv())  # noqa: T201 - the command's answer
