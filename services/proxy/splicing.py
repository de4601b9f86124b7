"""Relaying a request body from the client's socket to the upstream's with splice(2), in a thread.

The kernel moves the bytes through a pipe, so a body costs the proxy a few system calls per MiB
and no Python per byte. The thread works on duplicates of the two sockets' descriptors: when the
event loop closes a connection (an aborted upstream), the thread never writes to a descriptor
the number of which was reused meanwhile; `stop` wakes it and it lets go.

The rules of `wharf_proxy.bodies` are kept here: the stall clock runs only while bytes wait for
the upstream to take them (TimeoutError after `stall_seconds`); waiting for the client stops it,
and a client silent for `silence_seconds`, or one that breaks off, is ClientBroke.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import select
import threading
import time

PIPE_BYTES = 1024 * 1024  # bytes in flight between the two sockets (the pipe's capacity)
_F_SETPIPE_SZ = 1031
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK)
_POLL_IN = select.POLLIN | select.POLLHUP | select.POLLERR
_POLL_OUT = select.POLLOUT | select.POLLHUP | select.POLLERR


class ClientBroke(Exception):
    """The client's side of the body failed: it closed, reset, or fell silent."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def available() -> bool:
    return hasattr(os, "splice") and hasattr(select, "poll")


def socket_fd(transport: asyncio.BaseTransport) -> int | None:
    """The descriptor of a plain TCP transport, or None (TLS, or no socket) where splice cannot go."""
    if not available() or transport.is_closing():
        return None
    if transport.get_extra_info("sslcontext") is not None or transport.get_extra_info("ssl_object"):
        return None
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    fd = sock.fileno()
    return fd if isinstance(fd, int) and fd >= 0 else None


class Relay:
    def __init__(
        self, source: int, dest: int, length: int, *, stall_seconds: float, silence_seconds: float
    ) -> None:
        self._source = os.dup(source)
        try:
            self._dest = os.dup(dest)
        except OSError:
            os.close(self._source)
            raise
        self._length = length
        self._stall = stall_seconds
        self._silence = silence_seconds
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stopped = threading.Event()
        self.sent = 0  # bytes the upstream took

    def stop(self) -> None:
        if not self._stopped.is_set():
            self._stopped.set()
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    async def run(self) -> None:
        """Relay `length` bytes; the thread has let go of both sockets when this returns or raises."""
        future = asyncio.get_running_loop().run_in_executor(None, self._run)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            self.stop()
            await asyncio.wait({future})  # never leave the thread holding the sockets
            raise

    def _run(self) -> None:
        pipe_r, pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            with contextlib.suppress(OSError):  # a smaller pipe only means more calls
                fcntl.fcntl(pipe_w, _F_SETPIPE_SZ, PIPE_BYTES)
            self._pump(pipe_r, pipe_w)
        finally:
            for fd in (pipe_r, pipe_w, self._source, self._dest, self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _pump(self, pipe_r: int, pipe_w: int) -> None:
        remaining = self._length  # bytes still to take from the client
        in_pipe = 0
        now = time.monotonic()
        heard = now  # the client's last byte
        taken = now  # the upstream's last taking of a byte (the stall clock, while bytes wait)
        while remaining or in_pipe:
            if self._stopped.is_set():
                raise ConnectionAbortedError("the relay was stopped")
            moved = False
            if remaining and in_pipe < PIPE_BYTES:
                try:
                    got = os.splice(self._source, pipe_w, min(remaining, PIPE_BYTES - in_pipe), flags=_FLAGS)
                except BlockingIOError:
                    got = -1
                except OSError as exc:
                    raise ClientBroke(exc) from exc
                if got == 0:
                    raise ClientBroke(ConnectionResetError("the client closed before its whole body"))
                if got > 0:
                    if not in_pipe:
                        taken = time.monotonic()  # the clock starts when bytes begin to wait
                    remaining -= got
                    in_pipe += got
                    heard = time.monotonic()
                    moved = True
            if in_pipe:
                try:
                    put = os.splice(pipe_r, self._dest, in_pipe, flags=_FLAGS)
                except BlockingIOError:
                    put = 0
                if put > 0:
                    in_pipe -= put
                    self.sent += put
                    taken = time.monotonic()
                    moved = True
            if moved:
                continue
            # Nothing moved: wait for the client (clock stopped) or the upstream (clock running).
            now = time.monotonic()
            if in_pipe and now - taken >= self._stall:
                raise TimeoutError("the upstream took no request byte in time")
            # With bytes in the pipe, a refused splice from the client may mean a full pipe (it
            # counts buffers, not bytes) whatever the client sent: wait for the upstream then.
            waiting_client = remaining and not in_pipe
            if waiting_client and now - heard >= self._silence:
                raise ClientBroke(TimeoutError(f"no body byte from the client for {self._silence:g} s"))
            deadline = taken + self._stall if in_pipe else heard + self._silence
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            if waiting_client:
                poller.register(self._source, _POLL_IN)
            if in_pipe:
                poller.register(self._dest, _POLL_OUT)
            poller.poll(max(0.0, deadline - now) * 1000 + 1)
