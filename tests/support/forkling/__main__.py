"""`forkling wait MARKER`: run until SIGTERM, then exit 0; `forkling exit N`: exit with status N at
once; `forkling loaded MARKER MODULE`: as `wait`, having written to MARKER whether MODULE was
loaded before main(), and the pid."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def main() -> None:
    command, *rest = sys.argv[1:]
    if command == "exit":
        sys.exit(int(rest[0]))
    if command == "loaded":
        Path(rest[0]).write_text(f"{'yes' if rest[1] in sys.modules else 'no'} {os.getpid()}")
    else:
        Path(rest[0]).write_text(Path("/proc/self/comm").read_text())  # started: says what it is called
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(0.1)


if __name__ == "__main__":
    main()
