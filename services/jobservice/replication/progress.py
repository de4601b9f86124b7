"""What a copy reports to, and asks, the task that runs it."""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol


class Progress(Protocol):
    async def log(self, line: str) -> None:
        """One line of the task's log."""

    async def check(self) -> None:
        """The caller's stop or lease check, between blobs and every few MiB streamed: raise to
        abort the copy (it can resume later, see `copy_artifact`'s `resume`)."""

    def add_bytes(self, n: int) -> None:
        """`n` more blob bytes were streamed."""


class MountHints:
    """Which repository of one destination registry holds a blob: digest → repository, the
    most recently used `capacity` of them. A copy mounts a blob from there instead of sending
    it again. Keep one per destination registry; not shared between processes."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._entries: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: str) -> str | None:
        repository = self._entries.get(digest)
        if repository is not None:
            self._entries.move_to_end(digest)
        return repository

    def put(self, digest: str, repository: str) -> None:
        self._entries[digest] = repository
        self._entries.move_to_end(digest)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
