"""`python -m wharf_shared.forks MODULE[:ARG,…] …`: several services, each a fork of one process
that first loaded what they all use (pydantic settings, SQLAlchemy, Redis, aiohttp, structlog).

What `wharf run` starts the token service, the registry and the job service's events consumer
with: the pages a fork only reads stay shared with its parent and siblings, so each service
costs what is its own (on one host, 60-70 MiB each otherwise). Each fork runs its module's
`__main__.main()` exactly as `python -m MODULE ARG …` would, and names itself after its module
(`/proc/self/comm`, what `top` and `ps -o comm` show; 15 characters at most).

The parent forwards SIGTERM and SIGINT to the forks and waits for them. When one exits on its
own, the parent stops the others and exits with its status: the supervisor above sees one
failure, as it would for a process of its own. `prometheus_client` is not loaded here: a service
with several workers must choose multiprocess metrics before it is imported.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import signal
import sys
import traceback

# Modules every forked service imports; nothing here may import prometheus_client.
PRELOAD = (
    "uvloop",
    "aiohttp.web",
    "wharf_shared.config",
    "wharf_shared.logging",
    "wharf_shared.redis",
    "wharf_shared.db.engine",
    "wharf_shared.db.schema",
    "wharf_shared.db.projects",
    "wharf_shared.health",
    "wharf_shared.serving",
    "wharf_shared.request_ids",
    "wharf_shared.tokens",
    "sqlalchemy.dialects.sqlite.aiosqlite",
)
COMM_MAX = 15
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def parse(spec: str) -> tuple[str, list[str]]:
    """`wharf_jobservice:events` → (`wharf_jobservice`, [`events`])."""
    module, _, args = spec.partition(":")
    return module, [a for a in args.split(",") if a]


def _name_self(module: str) -> None:
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(module[:COMM_MAX])
    except OSError:
        pass  # a label for tools; never a reason not to serve


def _run_child(module: str, args: list[str]) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # one that came meanwhile lands now
    _name_self(module)
    code = 0
    try:
        sys.argv = [module, *args]
        importlib.import_module(f"{module}.__main__").main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    specs = [parse(spec) for spec in sys.argv[1:]]
    if not specs:
        print("usage: python -m wharf_shared.forks MODULE[:ARG,...] ...", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    for name in PRELOAD:
        importlib.import_module(name)
    if "prometheus_client" in sys.modules:
        raise RuntimeError("a preloaded module imported prometheus_client; services choose its mode first")
    # Out of the collector's sight: collections in the forks do not write to shared pages.
    gc.collect()
    gc.freeze()
    children: dict[int, str] = {}
    stopping = False

    def stop_all(signum: int) -> None:
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        stop_all(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    sys.stdout.flush()
    sys.stderr.flush()
    # Held back while forking: a fork stopped before it dropped the parent's handler would run
    # that handler (which stops nothing there) and go on serving.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    for module, args in specs:
        pid = os.fork()
        if pid == 0:
            _run_child(module, args)
        children[pid] = module
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    result = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        module = children.pop(pid, "")
        code = os.waitstatus_to_exitcode(status)
        if not stopping:
            print(f"wharf: {module} exited with status {code}; stopping the others", file=sys.stderr)  # noqa: T201
            stopping = True
            result = code or 1
            stop_all(signal.SIGTERM)
    sys.exit(result)


if __name__ == "__main__":
    main()
