"""Serving an app: one process until SIGTERM, or several worker processes on one port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable

import uvloop
from aiohttp import web

from wharf_shared.logging import get_logger
from wharf_shared.procmetrics import multiprocess_enabled

log = get_logger(__name__)


async def serve_forever(
    app_factory: Callable[[], Awaitable[web.Application]] | Callable[[], web.Application],
    host: str,
    port: int,
    *,
    sock: socket.socket | None = None,
    shutdown_timeout: float = 30.0,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Run one app until SIGTERM/SIGINT, then stop accepting and let requests in flight finish."""
    made = app_factory()
    app = await made if asyncio.iscoroutine(made) else made
    assert isinstance(app, web.Application)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site: web.BaseSite
    if sock is not None:
        site = web.SockSite(runner, sock, shutdown_timeout=shutdown_timeout, ssl_context=ssl_context)
    else:
        site = web.TCPSite(
            runner, host, port, reuse_port=True, shutdown_timeout=shutdown_timeout, ssl_context=ssl_context
        )
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("listening", host=host, port=port, pid=os.getpid())
    await stop.wait()
    log.info("stopping", pid=os.getpid())
    await runner.cleanup()


def run(
    app_factory: Callable[[], Awaitable[web.Application]] | Callable[[], web.Application],
    host: str,
    port: int,
    workers: int = 1,
    *,
    ssl_context: ssl.SSLContext | None = None,
    shutdown_timeout: float = 30.0,
) -> None:
    """Serve with `workers` processes on one port.

    The socket is bound once, before forking, and inherited: the kernel spreads connections
    across the workers, and port 0 works (the chosen port is printed). The parent restarts a
    worker that dies and forwards SIGTERM/SIGINT to all.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.set_inheritable(True)
    actual_port = sock.getsockname()[1]

    def serve() -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(
                serve_forever(
                    app_factory,
                    host,
                    actual_port,
                    sock=sock,
                    shutdown_timeout=shutdown_timeout,
                    ssl_context=ssl_context,
                )
            )

    if workers <= 1:
        serve()
        return
    children: dict[int, int] = {}
    started: dict[int, float] = {}

    def spawn(slot: int) -> None:
        started[slot] = time.monotonic()
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0
            try:
                serve()
            except BaseException:
                log.exception("worker_failed", slot=slot)
                code = 1
            finally:
                os._exit(code)
        children[pid] = slot

    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for slot in range(workers):
        spawn(slot)
    log.info("workers_started", workers=workers, port=actual_port, pid=os.getpid())
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        slot = children.pop(pid, -1)
        if multiprocess_enabled():
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
        if slot >= 0 and not stopping:
            log.error("worker_exited", pid=pid, status=status, slot=slot)
            if time.monotonic() - started.get(slot, 0) < 5:
                time.sleep(1)  # a worker that dies at start would otherwise spin
            spawn(slot)
    sock.close()
    sys.exit(0)
