"""`python -m wharf_shared.forks MODULE[:ARG,…] …`: several services in one process tree that
first loaded what they all use (pydantic settings, SQLAlchemy, Redis, aiohttp, structlog).

What `wharf run` starts the token service, the registry, the ui and the job service's worker
with: the pages a fork only reads stay shared with its parent and siblings, so each
service costs what is its own (on one host, 60-70 MiB each otherwise). Every module but the
last runs in a fork; the last runs in the parent itself, which would otherwise hold, idle, its
own copy of every page all the forks have written to (CPython's reference counts write to the
objects a service uses). Each runs its module's `__main__.main()` exactly as
`python -m MODULE ARG …` would, and names its process after its module (`/proc/self/comm`, what
`top` and `ps -o comm` show; 15 characters at most).

`--preload MODULE,…` loads more first, `prometheus_client` among them: the caller says so when
every service here keeps one process (`wharf run` passes each service's `app` module then).

The parent forwards SIGTERM and SIGINT to the forks (the service it runs stops on them too) and
waits for them. When one exits on its own, the parent stops the others and exits with its
status: the supervisor above sees one failure, as it would for a process of its own.
Otherwise `prometheus_client` is not loaded before forking: a service with several workers must
choose multiprocess metrics before it is imported.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import select
import signal
import sys
import threading
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


def _run_service(module: str, args: list[str], *, unblock: bool = False) -> int:
    """Run `module`'s `main()` as `python -m module args…` would; its exit status."""
    try:
        # Inside the try: a stop that came meanwhile lands at the unblock, and its handler's
        # SystemExit must end this service, not skip the parent's wait for its forks.
        if unblock:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        sys.argv = [module, *args]
        importlib.import_module(f"{module}.__main__").main()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _run_child(module: str, args: list[str]) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _name_self(module)
    code = 1
    try:
        code = _run_service(module, args, unblock=True)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    argv = sys.argv[1:]
    more: list[str] = []
    if argv[:1] == ["--preload"] and len(argv) > 1:
        # The caller knows every service here keeps one process, so metrics stay single-process:
        # their own modules (and prometheus_client) may be loaded once, here, for all of them.
        more, argv = [m for m in argv[1].split(",") if m], argv[2:]
    specs = [parse(spec) for spec in argv]
    if not specs:
        usage = "usage: python -m wharf_shared.forks [--preload MODULE,...] MODULE[:ARG,...] ..."
        print(usage, file=sys.stderr)  # noqa: T201
        sys.exit(2)
    for name in PRELOAD:
        importlib.import_module(name)
    if "prometheus_client" in sys.modules:
        raise RuntimeError("a preloaded module imported prometheus_client; services choose its mode first")
    for name in more:
        importlib.import_module(name)
    # Out of the collector's sight: collections in the forks do not write to shared pages.
    gc.collect()
    gc.freeze()
    children: dict[int, str] = {}
    stopping = threading.Event()
    failure: list[int] = []  # the status of the first fork that exited on its own

    def stop_all(signum: int) -> None:
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def forward(signum: int, _frame: object) -> None:
        stopping.set()
        stop_all(signal.SIGTERM)

    def stop_before_serving(signum: int, frame: object) -> None:
        # Until the service in this process has its own handlers: stop the forks, and it too.
        forward(signum, frame)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop_before_serving)
    signal.signal(signal.SIGINT, stop_before_serving)
    sys.stdout.flush()
    sys.stderr.flush()
    # Held back while forking: a fork stopped before it dropped the parent's handler would run
    # that handler (which stops nothing there) and go on serving.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    *forked, (module, args) = specs
    for child_module, child_args in forked:
        pid = os.fork()
        if pid == 0:
            _run_child(child_module, child_args)
        children[pid] = child_module

    def reap() -> None:
        # Each fork through a pidfd: the service in this process may have children of its own,
        # which are not ours to reap.
        pidfds = {os.pidfd_open(pid): pid for pid in children}
        while pidfds:
            ready, _, _ = select.select(list(pidfds), [], [])
            for fd in ready:
                pid = pidfds.pop(fd)
                os.close(fd)
                try:
                    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                except ChildProcessError:  # reaped by a service in this process that waits for any child
                    code = 1
                name = children.pop(pid, "")
                if not stopping.is_set():
                    print(f"wharf: {name} exited with status {code}; stopping the others", file=sys.stderr)  # noqa: T201
                    stopping.set()
                    failure.append(code or 1)
                    stop_all(signal.SIGTERM)
                    os.kill(os.getpid(), signal.SIGTERM)  # and the service in this process

    # Started after the last fork: a fork must not copy a process with a thread in it.
    reaper = threading.Thread(target=reap, name="forks-reaper", daemon=True)
    reaper.start()
    # The last service runs in this process: its pages are the ones the forks share, with no
    # copy of them for it (a fork of its own would cost 25-30 MiB more on a quiet host).
    _name_self(module)
    code = _run_service(module, args, unblock=True)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    if not stopping.is_set():
        if code != 0:
            print(f"wharf: {module} exited with status {code}; stopping the others", file=sys.stderr)  # noqa: T201
        stopping.set()
        stop_all(signal.SIGTERM)
    reaper.join()
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(failure[0] if failure else code)


if __name__ == "__main__":
    main()
