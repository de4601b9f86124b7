"""Pieces every aiohttp service uses: request ids, health and metrics routes, the process runner."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog
import uvloop
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError

from wharf_shared.db.engine import Database, is_unavailable
from wharf_shared.errors.oci import OCIError, Unavailable, Unknown
from wharf_shared.logging import get_logger
from wharf_shared.metrics import Metrics
from wharf_shared.procmetrics import multiprocess_enabled

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REQUEST_ID = web.RequestKey("request_id", str)

log = get_logger(__name__)


def render_oci(error: OCIError, headers: dict[str, str] | None = None) -> web.Response:
    """An OCI error body (`{"errors":[{"code","message","detail"}]}`) with the error's status."""
    body = json.dumps({"errors": [error.to_dict()]}).encode()
    return web.Response(
        status=error.status,
        body=body,
        content_type="application/json",
        headers={**(headers or {}), **error.headers},
    )


def client_address(
    request: web.Request, trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> str:
    """The client's address: the peer, or, when the peer is a trusted proxy, the nearest address
    in `X-Forwarded-For` that is not a trusted proxy itself."""
    peer = request.remote or "unknown"
    chain = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
    address = peer
    for hop in [*reversed(chain), None]:
        if not _trusted(address, trusted) or hop is None:
            break
        address = hop
    return address


def _trusted(address: str, trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def parse_networks(values: Sequence[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(v, strict=False) for v in values]


def unexpected_failure(request: web.Request, exc: Exception) -> OCIError:
    """The protocol error for an exception no handler turned into one:
    503 with Retry-After when Redis or the database is down or full (the client should retry),
    otherwise UNKNOWN (500) with the request id, and the traceback in the log."""
    request_id = request.get(REQUEST_ID, "")
    if isinstance(exc, RedisConnectionError | RedisTimeoutError) or (
        isinstance(exc, DBAPIError) and is_unavailable(exc)
    ):
        log.error("dependency_unavailable", error=str(exc)[:500], kind=type(exc).__name__)
        return Unavailable(detail={"request_id": request_id}, headers={"Retry-After": "5"})
    log.error("unhandled_error", method=request.method, path=request.path, exc_info=exc)
    return Unknown(detail={"request_id": request_id})


async def dependency_checks(db: Database, redis: Redis) -> dict[str, str]:
    """Readiness of the database and Redis: "ok", or the error's kind."""
    checks: dict[str, str] = {}
    try:
        async with db.read() as conn:
            await conn.exec_driver_sql("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        await redis.ping()
        checks["redis"] = "ok"
    except (RedisError, OSError) as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    return checks


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Take the proxy's `X-Request-Id` (or make one), bind it to every log line, echo it back."""
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = incoming if incoming and _REQUEST_ID.match(incoming) else os.urandom(16).hex()
    request[REQUEST_ID] = request_id
    structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers[REQUEST_ID_HEADER] = request_id
        raise
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


def add_health_and_metrics(
    app: web.Application, metrics: Metrics, ready: Callable[[], Awaitable[dict[str, str]]]
) -> None:
    """`/health` (alive), `/health/ready` (own dependencies answer), `/metrics` (Prometheus)."""

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readiness(_request: web.Request) -> web.Response:
        checks = await ready()
        ok = all(v == "ok" for v in checks.values())
        return web.json_response(
            {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
        )

    async def metrics_route(_request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )

    app.router.add_get("/health", health, name="health")
    app.router.add_get("/health/ready", readiness, name="health_ready")
    app.router.add_get("/metrics", metrics_route, name="metrics")


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
