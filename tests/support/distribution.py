"""Debian's `docker-registry` (CNCF distribution) as a test peer: no auth, filesystem storage in
a directory of its own, deletes enabled, on a free port. Missing binary: the test is skipped,
or fails under `make test` (`apt-get install docker-registry`)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.backends import unavailable
from tests.support.processes import ServiceProcess, free_port, service_env

HOST = "127.0.0.1"

CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {host}:{port}
  secret: wharf-tests-not-a-secret
health:
  storagedriver:
    enabled: false
"""


def distribution_binary() -> str | None:
    return shutil.which("docker-registry") or shutil.which("registry")


@contextmanager
def distribution(directory: Path) -> Iterator[ServiceProcess]:
    """A running distribution (its URL: `.url`), stopped on exit."""
    binary = distribution_binary()
    if binary is None:
        unavailable("docker-registry (distribution)", FileNotFoundError("apt-get install docker-registry"))
        raise AssertionError("unreachable")
    root = directory / "storage"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port(HOST)
    config = directory / "config.yml"
    config.write_text(CONFIG.format(root=root, host=HOST, port=port))
    process = ServiceProcess(
        "distribution",
        [binary, "serve", str(config)],
        service_env({}),
        HOST,
        port,
        directory / "distribution.log",
        ready_path="/v2/",  # no health route on the API port
    )
    process.start(timeout=30)
    try:
        yield process
    finally:
        process.stop()
