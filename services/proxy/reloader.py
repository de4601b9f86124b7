"""Re-reading the upstreams file while the proxy runs (upstreams_file.py), in every worker."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from wharf_proxy.board import Board, BoardFull
from wharf_proxy.pools import Pool, reload, resync
from wharf_proxy.upstreams_file import Lists, Signature, Snapshot, UpstreamsFileError, read, signature
from wharf_shared.logging import get_logger

log = get_logger(__name__)


class Reloader:
    """Before each health check round (every worker, every interval), and at once on SIGHUP:
    re-read the upstreams file when it changed and swap the pools (pools.py `reload`), then
    tell the board which slots are still in use (`resync`).

    A file that will not do (unreadable, not TOML, a bad URL, too many upstreams) keeps the pools
    as they are and is logged once (`upstreams_reload_failed`, with the reason); a good one logs
    `upstreams_reloaded` with what came and went. Each worker re-reads it, and logs, on its own."""

    def __init__(
        self,
        path: Path | None,
        start: Snapshot,
        pools: dict[str, Pool],
        board: Board,
        capacity: int,
        *,
        on_signal: bool = False,
    ) -> None:
        """`path`: the upstreams file (None: the pools come from the settings and never change);
        `start`: what the pools were made from; `on_signal`: SIGHUP is handled here (`hup`)."""
        self.path = path
        self.seen = start.signature
        self.pools = pools
        self.board = board
        self.capacity = capacity
        self.wake = asyncio.Event()
        self.on_signal = on_signal
        self._forced = False

    def hup(self) -> None:
        """SIGHUP: re-read the file now, changed or not."""
        if self.path is None:
            log.info(
                "upstreams_reload_skipped",
                reason="no WHARF_PROXY__UPSTREAMS_FILE: the pools change on restart",
            )
            return
        self._forced = True
        self.wake.set()

    def __call__(self) -> None:
        if self.path is not None:
            seen = signature(self.path)
            if self._forced or seen != self.seen:
                self._forced = False
                self._reload(seen)
        try:
            resync(self.pools, self.board, time.monotonic())
        except BoardFull as exc:
            log.error("upstream_slot_unavailable", reason=str(exc))

    def _reload(self, seen: Signature | None) -> None:
        assert self.path is not None
        try:
            snapshot = read(self.path, self.capacity)
        except UpstreamsFileError as exc:
            self.seen = seen  # judged: nothing more until the next change
            log.error("upstreams_reload_failed", file=str(self.path), reason=str(exc), pid=os.getpid())
            return
        try:
            change = reload(self.pools, snapshot.lists, self.board)
        except BoardFull as exc:  # not the file's fault: tried again next round
            log.error("upstreams_reload_failed", file=str(self.path), reason=str(exc), pid=os.getpid())
            return
        self.seen = snapshot.signature
        log.info(
            "upstreams_reloaded",
            file=str(self.path),
            added=change.added,
            removed=change.removed,
            upstreams=_counts(snapshot.lists),
            pid=os.getpid(),
        )


def _counts(lists: Lists) -> dict[str, int]:
    return {name: len(urls) for name, urls in lists.items()}
