"""A private OpenSSH server on loopback, for playbooks run against "hosts" 127.0.0.2, 127.0.0.3, …

It listens on one free port on each given address, lets root in with a key made for the test
only (no password, no PAM), and keeps its host key, pid file and log in its own folder: the
machine's own sshd (if any) and ~/.ssh are left alone.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import backends

SSHD = "/usr/sbin/sshd"


@dataclass
class Sshd:
    port: int
    key: Path  # private key that logs in as root
    process: subprocess.Popen[bytes]
    log: Path


def _free_port_on(addresses: Sequence[str]) -> int:
    """A port free on every address (bound on the wildcard address, so free on all of them)."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))  # noqa: S104 - only to find a port free everywhere; closed at once
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_sshd(folder: Path, addresses: Sequence[str]) -> Iterator[Sshd]:
    if not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
        backends.unavailable("sshd", FileNotFoundError(f"{SSHD} or ssh-keygen missing (openssh-server)"))
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    host_key, client_key = folder / "host_ed25519", folder / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wharf-deploy-test", "-f", str(key)],
            check=True,
        )
    authorized = folder / "authorized_keys"
    authorized.write_text((folder / "client_ed25519.pub").read_text())
    authorized.chmod(0o600)
    port = _free_port_on(addresses)
    listen = "".join(f"ListenAddress {address}:{port}\n" for address in addresses)
    config = folder / "sshd_config"
    config.write_text(
        f"{listen}"
        f"HostKey {host_key}\n"
        f"PidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {authorized}\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "StrictModes no\n"
        # Ansible opens many sessions at once (forks, ControlMaster channels).
        "MaxStartups 200:30:400\n"
        "MaxSessions 200\n"
        "Subsystem sftp internal-sftp\n"
        "LogLevel ERROR\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    log = folder / "sshd.log"
    with log.open("wb") as stderr:  # sshd keeps its own descriptor of it
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"sshd exited {process.returncode}: {log.read_text()[-2000:]}")
            try:
                with socket.create_connection((addresses[0], port), timeout=1) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd did not answer on {addresses[0]}:{port}") from None
                time.sleep(0.05)
        yield Sshd(port, client_key, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
