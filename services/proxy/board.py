"""What the proxy's worker processes know of each upstream, in one place they all share.

The proxy runs several workers (pre-fork, `wharf_shared.serving.run`), each with its own pools.
Were each to keep its own verdicts, a dead instance would be ejected (and logged) once per worker,
and each worker would check every instance. So the verdicts live here instead: a small file
mapped `MAP_SHARED`, made before the fork (`__main__`) and inherited by every worker. Its size is
fixed then (`WHARF_PROXY__UPSTREAM_SLOTS` slots), since a mapping made after the fork would not
be shared; the pools may change afterwards (an upstreams file re-read live, pools.py `reload`),
so upstreams take and give back slots as they come and go:

    header     the health checker's lease: its pid, and until when (CLOCK_MONOTONIC, which
               every process on the host reads alike) it holds it
    per slot   one upstream of one pool: consecutive failed requests, consecutive failed
               health checks, whether it is out of rotation (ejected, or new and not yet
               checked) and since when; and the key table's part: whether the slot is taken,
               its generation, and when a worker last said it still uses it
    key table  per slot, a 16-byte digest of (pool, URL): the slot's key

Every worker maps a (pool, URL) to the same slot: `claim` looks the key up in the table and
takes a free slot for it only when no worker has yet. A slot changes hands with a new
generation: claiming resets its cells and bumps it, and so does giving it back (`release`, when
the upstream left the pools). A worker holds a `Ref` (slot, generation), and every change it
makes checks the generation under the lock, so a worker that still has an upstream another one
already dropped (it has not re-read the file yet) never writes into the slot's next owner; its
lock-free reads see the new generation and take the upstream for out of rotation. Each worker
touches the slots it uses every health interval; when no slot is free, one that nobody touched
for `stale_seconds` (its key was left behind by a worker that died mid-reload) is taken.

A change of verdict or of the key table is made under a POSIX record lock on that file
(`fcntl.lockf`), held for a few loads and stores, never across an await. Record locks belong to
a process, not to a file descriptor, so the workers exclude one another through the one
descriptor they inherited, and the kernel drops the lock of a worker that dies holding it.
Reads take no lock: each cell is an aligned 8-byte double, never seen half-written.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from wharf_shared.config import Settings

POOL_NAMES = ("registry", "token", "ui")
DEFAULT_CAPACITY = 256

_HEADER = 2  # leader pid, lease end
_LEADER, _LEASE = 0, 1
_FIELDS = 7  # per slot
REQUEST_FAILURES, CHECK_FAILURES, OUT, OUT_SINCE, _GEN, _TAKEN, _SEEN = range(_FIELDS)
# What OUT holds: in rotation, ejected (after failures), or new (added by a reload; in rotation
# after its first passing health check).
IN_ROTATION, EJECTED, NEW = 0.0, 1.0, 2.0
_KEY_BYTES = 16


class BoardFull(Exception):
    """Every slot is taken by an upstream some worker still uses."""


@dataclass(frozen=True, slots=True)
class Ref:
    """A slot as one claim of it: valid while the slot's generation is still `gen`."""

    slot: int
    gen: int


def _key(pool: str, url: str) -> bytes:
    return hashlib.blake2b(f"{pool}\n{url}".encode(), digest_size=_KEY_BYTES).digest()


class Board:
    def __init__(
        self,
        keys: Sequence[tuple[str, str]] = (),
        *,
        capacity: int = DEFAULT_CAPACITY,
        stale_seconds: float = 60.0,
    ) -> None:
        """`keys`: the (pool, upstream URL) pairs the proxy starts with, claimed in rotation;
        `capacity`: slots in all (at least one per key)."""
        capacity = max(1, capacity, len(set(keys)))
        self.capacity = capacity
        self.stale_seconds = stale_seconds
        cells = _HEADER + _FIELDS * capacity
        self._keys_at = 8 * cells
        size = self._keys_at + _KEY_BYTES * capacity
        # A bare descriptor of an unlinked file: nothing on disk to clean up, nothing to warn
        # about if a test never closes it.
        fd, path = tempfile.mkstemp(prefix="wharf-proxy-board-")
        os.unlink(path)
        # Allocated now, not on first touch: a page of a sparse file that the file system cannot
        # supply later (a full tmpfs /tmp) would kill the worker with SIGBUS mid-request.
        os.posix_fallocate(fd, 0, size)
        self._fd = fd
        self._map = mmap.mmap(fd, size)
        self._cells = memoryview(self._map)[: self._keys_at].cast("d")
        for pool, url in keys:
            self.claim(pool, url)

    @classmethod
    def for_settings(cls, settings: Settings, lists: dict[str, list[str]] | None = None) -> Board:
        """The board for the pools in `lists` (default: the `WHARF_PROXY__UPSTREAMS__*` lists)."""
        proxy = settings.proxy
        if lists is None:
            lists = {name: list(getattr(proxy.upstreams, name)) for name in POOL_NAMES}
        # Every worker touches its slots once a round: a check round takes at most the connect
        # timeout, then a sleep of the interval. Ten rounds missed is a worker gone, not a slow one.
        rounds = 10 * (proxy.health_interval_seconds + proxy.connect_timeout_seconds)
        return cls(
            [(name, url) for name in POOL_NAMES for url in lists.get(name, [])],
            capacity=proxy.upstream_slots,
            stale_seconds=max(60.0, rounds),
        )

    # -- the key table ------------------------------------------------------------------------

    def claim(self, pool: str, url: str, *, new: bool = False, now: float | None = None) -> Ref:
        """The slot of (pool, url): the one a worker already claimed for it, else a free one
        (or a stale one) reset for it, in rotation or, with `new`, awaiting its first passing
        check. BoardFull when there is none."""
        key = _key(pool, url)
        now = time.monotonic() if now is None else now
        with self.locked():
            free: int | None = None
            stale: int | None = None
            stalest = math.inf
            for slot in range(self.capacity):
                if not self.get(slot, _TAKEN):
                    if free is None:
                        free = slot
                    continue
                if self._key_of(slot) == key:
                    self.set(slot, _SEEN, now)
                    return Ref(slot, int(self.get(slot, _GEN)))
                seen = self.get(slot, _SEEN)
                if seen < now - self.stale_seconds and seen < stalest:
                    stale, stalest = slot, seen
            if free is None and stale is None:
                raise BoardFull(f"all {self.capacity} slots are taken (WHARF_PROXY__UPSTREAM_SLOTS)")
            chosen = free if free is not None else stale
            assert chosen is not None
            gen = int(self.get(chosen, _GEN)) + 1
            self.set(chosen, _GEN, gen)  # first: a holder of the old claim stops writing here
            self.set(chosen, REQUEST_FAILURES, 0)
            self.set(chosen, CHECK_FAILURES, 0)
            self.set(chosen, OUT, NEW if new else IN_ROTATION)
            self.set(chosen, OUT_SINCE, now)
            self.set(chosen, _SEEN, now)
            start = self._keys_at + _KEY_BYTES * chosen
            self._map[start : start + _KEY_BYTES] = key
            self.set(chosen, _TAKEN, 1)
            return Ref(chosen, gen)

    def release(self, ref: Ref) -> bool:
        """Give the slot back (its upstream left the pools); False when it had already changed hands."""
        with self.locked():
            if not self.owns(ref):
                return False
            self.set(ref.slot, _GEN, ref.gen + 1)
            self.set(ref.slot, _TAKEN, 0)
            return True

    def owns(self, ref: Ref) -> bool:
        """Whether `ref` is still the slot's claim (read without the lock)."""
        return self.get(ref.slot, _GEN) == ref.gen

    def touch(self, refs: Iterable[Ref], now: float) -> None:
        """Say that these slots are still in use (no lock: any worker's `now` will do)."""
        for ref in refs:
            if self.owns(ref):
                self.set(ref.slot, _SEEN, now)

    def taken(self) -> int:
        return sum(1 for slot in range(self.capacity) if self.get(slot, _TAKEN))

    def _key_of(self, slot: int) -> bytes:
        start = self._keys_at + _KEY_BYTES * slot
        return self._map[start : start + _KEY_BYTES]

    # -- cells --------------------------------------------------------------------------------

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
