"""Metrics across worker processes: prometheus-client's multiprocess mode.

It must be chosen before `prometheus_client` is first imported (the library reads its
environment variable at import), so a service's `__main__` calls this before importing the app.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_multiprocess_metrics(service: str) -> None:
    if "prometheus_client" in sys.modules:
        raise RuntimeError("multiprocess metrics must be set up before prometheus_client is imported")
    directory = tempfile.mkdtemp(prefix=f"wharf-{service}-metrics-")
    os.environ[ENV] = directory
    owner = os.getpid()

    def cleanup() -> None:
        if os.getpid() == owner:  # forked workers inherit atexit hooks; only the parent cleans up
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(cleanup)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(ENV))
