"""Serving an app: one process until SIGTERM, or several worker processes on one port.

Every service is served here, so what a client connection may do is decided here, once, from
`WHARF_SERVING__*` (`ServingSettings`):

- A request head must be complete within `header_timeout_seconds` of its first byte; bytes of
  the next head that arrive while a response is still going out count from that response's end.
  A late head is answered 408 and the connection closes. A connection that sends nothing at all
  is an idle one: it closes after `keepalive_seconds`, as does an idle keep-alive connection.
- A request body may fall silent for at most `body_timeout_seconds` while the server waits for
  it (not while the server is the one holding back); then the connection closes. Only silence
  counts, so a slow but steady upload may take as long as it takes.
- At most `max_connections_per_client` connections per client address, counted in each worker
  process (a worker cannot see its siblings' connections); addresses in `WHARF_TRUSTED_PROXIES`
  (the proxies in front, whose connections carry many clients) are exempt. More get 429.
- HTTP that aiohttp's parser refuses (bad or duplicate `Content-Length`, `Content-Length` with
  `Transfer-Encoding`, bad chunk sizes, oversize or too many headers, …) is answered 400, 414 or
  431 with a JSON body and logged at info. The connection then lingers: what the client still
  sends is read and discarded for up to `linger_seconds` (or until it closes), so that it reads
  the answer instead of a reset (closing with unread bytes makes the kernel send RST).
- Every response says `Server: Wharf`, aiohttp's own answers included.

aiohttp is pinned (pyproject.toml): `Connection` extends its `RequestHandler` through the
documented `handle_error` and the asyncio protocol callbacks, and `_Server` builds it from what
the app's `web.Server` was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import uvloop
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import RequestHandler, RequestPayloadError, _ErrInfo
from aiohttp.web_request import BaseRequest

from wharf_shared import keys as shared_keys
from wharf_shared.addresses import Network, is_trusted, parse_networks
from wharf_shared.config import ServingSettings
from wharf_shared.errors.http import (
    SERVER,
    BadRequest,
    GatewayTimeout,
    HeadersTooLarge,
    HTTPError,
    RequestTimeout,
    TooManyRequests,
    Unknown,
    URITooLong,
)
from wharf_shared.logging import get_logger
from wharf_shared.procmetrics import multiprocess_enabled

log = get_logger(__name__)

LINGER_MAX_BYTES = 64 * 1024 * 1024  # a client still sending past this gets closed on
HEAD_END = (b"\r\n\r\n", b"\n\n")


class ClientConnections:
    """Open connections per client address in this process, up to a cap."""

    def __init__(self, cap: int, exempt: Sequence[Network]) -> None:
        self.cap = cap
        self.exempt = list(exempt)
        self.open: dict[str, int] = {}

    def admit(self, address: str) -> bool:
        if self.cap <= 0 or is_trusted(address, self.exempt):
            return True
        count = self.open.get(address, 0)
        if count >= self.cap:
            return False
        self.open[address] = count + 1
        return True

    def release(self, address: str) -> None:
        count = self.open.get(address, 0) - 1
        if count > 0:
            self.open[address] = count
        else:
            self.open.pop(address, None)


class Connection(RequestHandler):
    """One client connection: aiohttp's handler plus the limits above."""

    def __init__(
        self, manager: web.Server, *, limits: ServingSettings, clients: ClientConnections, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._clients = clients
        self._counted: str | None = None  # the address this connection counts against
        self._peer = "unknown"
        self._body: StreamReader | None = None  # the payload of the newest request head
        self._head_pending = False  # bytes of an incomplete request head are buffered
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._last_byte = 0.0
        self._refusing = False  # the parser failed: nothing more from this client is read
        self._linger: asyncio.Future[None] | None = None
        self._discarded = 0

    # -- connection lifecycle ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self._peer = str(peer[0])
        if self._clients.admit(self._peer):
            self._counted = self._peer
        else:
            log.info("connection_refused", remote=self._peer, cap=self._clients.cap)
            self._answer_raw(TooManyRequests(headers={"Retry-After": "5"}))

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted is not None:
            self._clients.release(self._counted)
            self._counted = None
        self._cancel_timers()
        self._end_linger()
        body = self._body
        if body is not None and not body.is_eof() and not self._request_in_progress:
            # aiohttp may be reading the rest of an unread body after the response (its own
            # lingering); nothing more comes, so end that now rather than after its timeout.
            body.feed_eof()
        super().connection_lost(exc)

    def eof_received(self) -> None:
        self._end_linger()  # the client read the answer and closed: done lingering

    # -- reading -------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._refusing or self._linger is not None:
            self._discarded += len(data)
            if self._linger is not None and self._discarded > LINGER_MAX_BYTES:
                self._end_linger()
            return
        if data:  # (aiohttp calls this with b"" to parse what it held back)
            self._last_byte = self._loop.time()
        before = self._request_count
        super().data_received(data)
        if self._request_count != before and self._messages:
            message, payload = self._messages[-1]
            self._cancel_head_timer()
            if isinstance(message, _ErrInfo):
                self._parser_failed(message)
                return
            self._body = payload
            # A head without a body that does not end this segment leaves the next head begun.
            self._head_pending = payload is EMPTY_PAYLOAD and bool(data) and not data.endswith(HEAD_END)
            if not payload.is_eof():
                self._arm_body_timer(self._limits.body_timeout_seconds)
        elif data and (self._body is None or self._body.is_eof()):
            self._head_pending = True
        if self._head_pending and not self._request_in_progress and not self._messages:
            self._arm_head_timer()

    def _parser_failed(self, error: _ErrInfo) -> None:
        """aiohttp's parser refused what came in: read no more of it."""
        self._refusing = True
        self._head_pending = False
        body = self._body
        if body is not None and not body.is_eof():
            # The error is in the body of a request whose handler is running: that handler
            # gets the error (rather than a body that never ends), and answers; nothing follows.
            self._messages.pop()
            body.set_exception(RequestPayloadError(f"malformed body: {_reason(error.message)}"))
            body.feed_eof()
            self.close()

    # -- the request head timeout --------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self._loop.call_later(self._limits.header_timeout_seconds, self._head_late)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._request_in_progress or self._messages or self.transport is None:
            return  # a request is being answered: the clock restarts after its response
        log.info("request_head_timeout", remote=self._peer, seconds=self._limits.header_timeout_seconds)
        self._answer_raw(RequestTimeout())

    def log_access(self, request: BaseRequest, response: web.StreamResponse, time: float | None) -> None:
        super().log_access(request, response, time)
        if self._head_pending:  # the next head began while this response went out
            self._cancel_head_timer()
            self._arm_head_timer()

    # -- the request body timeout --------------------------------------------------------------

    def _arm_body_timer(self, delay: float) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self._loop.call_later(delay, self._body_check)

    def _body_check(self) -> None:
        self._body_timer = None
        body = self._body
        if body is None or body.is_eof() or body.exception() is not None or self.transport is None:
            return
        timeout = self._limits.body_timeout_seconds
        if self._reading_paused or self._buffer_paused:
            self._arm_body_timer(timeout)  # the server is holding the client back, not the reverse
            return
        silent = self._loop.time() - self._last_byte
        if silent < timeout:
            self._arm_body_timer(timeout - silent)
            return
        log.info("request_body_timeout", remote=self._peer, seconds=timeout)
        self.force_close()  # the handler reading the body sees the connection lost

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    # -- refusing ------------------------------------------------------------------------------

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            # A handler failed (every service's middleware turns its own failures into answers,
            # so this is rare) or timed out.
            error: HTTPError = GatewayTimeout() if status == 504 else Unknown()
            if isinstance(exc, ConnectionError):
                log.info("client_disconnected", method=request.method, path=request.path)
            elif status != 504:
                log.error("unhandled_error", method=request.method, path=request.path, exc_info=exc)
            if request.writer.output_size > 0:
                raise ConnectionError("a response was already begun")
            response = error.response()
            response.force_close()
            return response
        error = self._refusal(exc)
        if self._request_count == 1 and isinstance(exc, BadHttpMethod):
            log.debug("malformed_request", remote=self._peer, status=error.status, reason=error.text)
        else:
            log.info("malformed_request", remote=self._peer, status=error.status, reason=error.text)
        return _LingeringResponse(error, self)

    def _refusal(self, exc: HttpProcessingError) -> HTTPError:
        reason = _reason(exc.message)
        if isinstance(exc, LineTooLong):
            # aiohttp says which limit was passed, not where: the request line's, unless the two
            # limits are equal; then a request target starts with `/`, `*` or a scheme.
            limit = exc.args[1] if len(exc.args) > 1 else None
            line = exc.args[0] if exc.args else b""
            first = (line.encode("latin-1", "replace") if isinstance(line, str) else bytes(line))[:1]
            if limit == self.max_line_size and (limit != self.max_field_size or first in (b"/", b"*", b"h")):
                return URITooLong(message=f"request line longer than {limit} bytes")
            return HeadersTooLarge(message=f"header field longer than {limit} bytes")
        if "Too many headers" in reason:
            return HeadersTooLarge(message=f"more than {self.max_headers} header fields")
        return BadRequest(message=f"malformed request: {reason}")

    def _answer_raw(self, error: HTTPError) -> None:
        """Answer on a connection with no request to answer through, then linger and close."""
        transport = self.transport
        if transport is None:
            return
        self._refusing = True
        self._cancel_timers()
        transport.write(error.raw())
        self._start_linger().add_done_callback(lambda _f: self.force_close())

    def _start_linger(self) -> asyncio.Future[None]:
        """Stop writing (FIN), then read and discard until the client closes or time is up."""
        linger: asyncio.Future[None] = self._loop.create_future()
        self._linger = linger
        transport = self.transport
        if transport is None or self._limits.linger_seconds <= 0:
            linger.set_result(None)
            return linger
        if transport.can_write_eof():  # TLS cannot half-close
            transport.write_eof()
        handle = self._loop.call_later(self._limits.linger_seconds, self._end_linger)
        linger.add_done_callback(lambda _f: handle.cancel())
        return linger

    async def linger(self) -> None:
        await self._start_linger()

    def _end_linger(self) -> None:
        if self._linger is not None and not self._linger.done():
            self._linger.set_result(None)


class _LingeringResponse(web.Response):
    """The answer to a request aiohttp's parser refused: sent, then the connection lingers."""

    def __init__(self, error: HTTPError, connection: Connection) -> None:
        super().__init__(
            status=error.status,
            body=error.body(),
            content_type="application/json",
            headers={**error.headers, "Server": SERVER, "Connection": "close"},
        )
        self.force_close()
        self._connection = connection

    async def write_eof(self, data: bytes = b"") -> None:
        await super().write_eof(data)
        await self._connection.linger()


def _reason(message: object) -> str:
    """The parser's complaint, without the echo of the request it carries."""
    text = str(message).strip()
    return text.splitlines()[0].rstrip(": ")[:200] if text else "bad request"


class _Server(web.Server):
    """aiohttp's server for the app, making `Connection`s."""

    def __init__(self, base: web.Server, limits: ServingSettings, clients: ClientConnections) -> None:
        super().__init__(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            loop=base._loop,
            **base._kwargs,
        )
        self._limits = limits
        self._clients = clients

    def __call__(self) -> RequestHandler:
        return Connection(self, loop=self._loop, limits=self._limits, clients=self._clients, **self._kwargs)


async def _say_wharf(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER  # relayed responses too: no upstream's name leaks out


class Runner(web.AppRunner):
    """`web.AppRunner` whose connections keep the limits above; any site (TCP, socket) serves it."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        settings = app.get(shared_keys.SETTINGS)
        limits = settings.serving if settings is not None else ServingSettings()
        trusted = settings.trusted_proxies if settings is not None else []
        self._limits = limits
        self._clients = ClientConnections(limits.max_connections_per_client, parse_networks(trusted))
        kwargs.setdefault("keepalive_timeout", limits.keepalive_seconds)
        kwargs.setdefault("max_line_size", limits.max_request_line_bytes)
        kwargs.setdefault("max_field_size", limits.max_header_bytes)
        kwargs.setdefault("max_headers", limits.max_headers)
        super().__init__(app, **kwargs)
        app.on_response_prepare.append(_say_wharf)

    async def _make_server(self) -> web.Server:
        return _Server(await super()._make_server(), self._limits, self._clients)


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
    runner = Runner(app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site: web.BaseSite
    if sock is not None:
        site = web.SockSite(runner, sock, ssl_context=ssl_context)
    else:
        site = web.TCPSite(runner, host, port, reuse_port=True, ssl_context=ssl_context)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("listening", host=host, port=port, pid=os.getpid())
    await stop.wait()
    log.info("stopping", pid=os.getpid())
    await runner.cleanup()


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _stop_with(supervisor: int) -> None:
    """Have the kernel send this worker SIGTERM when its supervisor dies, however it dies."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("parent_death_signal_unset", errno=ctypes.get_errno())
    if os.getppid() != supervisor:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run(
    app_factory: Callable[[], Awaitable[web.Application]] | Callable[[], web.Application],
    host: str,
    port: int,
    workers: int = 1,
    *,
    ssl_context: ssl.SSLContext | None = None,
    shutdown_timeout: float = 30.0,
    forward_hup: bool = False,
) -> None:
    """Serve with `workers` processes on one port.

    The socket is bound once, before forking, and inherited: the kernel spreads connections
    across the workers, and port 0 works (the chosen port is printed). The parent restarts a
    worker that dies and forwards SIGTERM/SIGINT to all; if the parent dies (SIGKILL too), the
    workers get SIGTERM and drain, rather than serve on unsupervised and hold the port.

    With `forward_hup`, the parent also forwards SIGHUP (a reload) to the workers, whose app must
    handle it (a worker ignores it until its app does); with one worker, the app handles it itself.
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
        if forward_hup:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the app's own handler
        serve()
        return
    children: dict[int, int] = {}
    started: dict[int, float] = {}

    supervisor = os.getpid()

    def spawn(slot: int) -> None:
        started[slot] = time.monotonic()
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            if forward_hup:
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the app's own handler
            _stop_with(supervisor)
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

    def forward_reload(signum: int, _frame: object) -> None:
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    if forward_hup:
        signal.signal(signal.SIGHUP, forward_reload)
    # The app's modules are loaded (the caller imported them before calling run): move what is
    # alive now out of the collector's sight, so that collections in the workers do not write
    # to (and so copy) the pages they share with this process.
    gc.collect()
    gc.freeze()
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
