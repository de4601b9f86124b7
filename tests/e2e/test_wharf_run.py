"""`wharf run` (what `make run` starts): every service behind one address on the embedded
defaults, a generated admin password printed once, Ctrl-C stopping everything, and a second run
finding the same data."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Registry, make_skopeo
from tests.images import make_image, sha256, write_layout
from tests.support.processes import ROOT, ServiceProcess, free_port, service_env

pytestmark = pytest.mark.e2e

WHARF = Path(sys.executable).parent / "wharf"


class Run:
    def __init__(self, tmp: Path, env: dict[str, str], name: str) -> None:
        self.log = tmp / f"{name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(WHARF), "run"],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 90) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text())
            if found:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} in the output of `wharf run`:\n{self.text()[-4000:]}")

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=60)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_run_stop_and_run_again(tmp_path: Path) -> None:
    http_port, registry_port, token_port = free_port(), free_port(), free_port()
    env = service_env(
        {
            "WHARF_DATA_DIR": str(tmp_path / "var"),
            "WHARF_HTTP_PORT": str(http_port),
            "WHARF_REGISTRY__PORT": str(registry_port),
            "WHARF_TOKEN__PORT": str(token_port),
        }
    )
    env.pop("WHARF_REDIS_URL", None)  # the private Redis
    address = f"127.0.0.1:{http_port}"
    layout = tmp_path / "layout"
    write_layout(layout, [make_image("wharf-run")])

    first = Run(tmp_path, env, "first")
    try:
        first.wait_for(re.escape(f"Wharf is running at http://{address}"))
        password = first.wait_for(r"admin:\s+admin / (\S+)\s+\(generated now").group(1)
        assert f"docker://{address}/library/hello:latest" in first.text()  # the ready-to-paste example
        # Only the proxy's address is used from here on.
        process = ServiceProcess("wharf-run", [], {}, "127.0.0.1", http_port, first.log)
        skopeo = make_skopeo(Registry(process, "token", "sqlite", tmp_path, None), tmp_path / "skopeo")
        skopeo.ok("login", "--tls-verify=false", "-u", "admin", "-p", password, address)
        skopeo.ok(
            "copy", "--dest-tls-verify=false", f"oci:{layout}:latest", f"docker://{address}/library/hello:1"
        )
        skopeo.ok("logout", address)
        pushed = skopeo.ok(
            "inspect", "--raw", "--tls-verify=false", f"docker://{address}/library/hello:1"
        ).stdout
    finally:
        code = first.interrupt()
    assert code == 0, first.text()[-3000:]
    assert "wharf: stopped" in first.text()
    for port in (http_port, registry_port, token_port):
        assert not listening(port), f"port {port} still answers after Ctrl-C"

    second = Run(tmp_path, env, "second")
    try:
        second.wait_for(re.escape(f"Wharf is running at http://{address}"))
        assert "generated now" not in second.text()  # the admin exists: no new password
        again = skopeo.ok(
            "inspect", "--raw", "--tls-verify=false", f"docker://{address}/library/hello:1"
        ).stdout
        assert sha256(again) == sha256(pushed)
        skopeo.ok("login", "--tls-verify=false", "-u", "admin", "-p", password, address)
    finally:
        assert second.interrupt() == 0, second.text()[-3000:]
