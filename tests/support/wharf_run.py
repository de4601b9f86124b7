"""`wharf run` (what `make run` starts) as a test drives it: the process with its output in a
log file, waiting for lines of that output, Ctrl-C."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.processes import ROOT

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
