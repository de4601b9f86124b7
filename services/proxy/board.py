"""What the proxy's worker processes know of each upstream, in one place they all share.

The proxy runs several workers (pre-fork, `wharf_shared.serving.run`), each with its own pools.
Were each to keep its own verdicts, a dead instance would be ejected (and logged) once per worker,
and each worker would check every instance. So the verdicts live here instead: a small file
mapped `MAP_SHARED`, made before the fork (`__main__`) and inherited by every worker:

    header     the health checker's lease: its pid, and until when (CLOCK_MONOTONIC, which
               every process on the host reads alike) it holds it
    per slot   one upstream of one pool: consecutive failed requests, consecutive failed
               health checks, whether it is out of rotation, and since when

A change of verdict is made under a POSIX record lock on that file (`fcntl.lockf`), held for a
few loads and stores, never across an await. Record locks belong to a process, not to a file
descriptor, so the workers exclude one another through the one descriptor they inherited, and
the kernel drops the lock of a worker that dies holding it. Reads take no lock: each cell is an
aligned 8-byte double, never seen half-written.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from wharf_shared.config import Settings

POOL_NAMES = ("registry", "token", "ui")

_HEADER = 2  # leader pid, lease end
_LEADER, _LEASE = 0, 1
_FIELDS = 4  # per slot
REQUEST_FAILURES, CHECK_FAILURES, OUT, OUT_SINCE = range(_FIELDS)


class Board:
    def __init__(self, keys: Sequence[tuple[str, str]]) -> None:
        """`keys`: every (pool, upstream URL) the proxy has, one slot each."""
        self._slots: dict[tuple[str, str], int] = {}
        for key in keys:
            self._slots.setdefault(key, len(self._slots))
        size = 8 * (_HEADER + _FIELDS * max(1, len(self._slots)))
        # A bare descriptor of an unlinked file: nothing on disk to clean up, nothing to warn
        # about if a test never closes it.
        fd, path = tempfile.mkstemp(prefix="wharf-proxy-board-")
        os.unlink(path)
        # Allocated now, not on first touch: a page of a sparse file that the file system cannot
        # supply later (a full tmpfs /tmp) would kill the worker with SIGBUS mid-request.
        os.posix_fallocate(fd, 0, size)
        self._fd = fd
        self._map = mmap.mmap(fd, size)
        self._cells = memoryview(self._map).cast("d")

    @classmethod
    def for_settings(cls, settings: Settings) -> Board:
        upstreams = settings.proxy.upstreams
        return cls([(name, url) for name in POOL_NAMES for url in getattr(upstreams, name)])

    def slot(self, pool: str, url: str) -> int:
        return self._slots[pool, url]

    def get(self, slot: int, field: int) -> float:
        return self._cells[_HEADER + _FIELDS * slot + field]

    def set(self, slot: int, field: int, value: float) -> None:
        self._cells[_HEADER + _FIELDS * slot + field] = value

    @contextmanager
    def locked(self) -> Iterator[None]:
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._cells.release()
        self._map.close()
        os.close(self._fd)

    def lead(self, pid: int, now: float, lease: float) -> bool:
        """Whether process `pid` runs the health checks now: it holds the lease (renewed for
        `lease` seconds), or takes it because its holder let it run out (died or stalled)."""
        with self.locked():
            cells = self._cells
            if cells[_LEADER] != pid and cells[_LEASE] > now:
                return False
            cells[_LEADER] = pid
            cells[_LEASE] = now + lease
            return True
