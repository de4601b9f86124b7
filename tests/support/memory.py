"""Resident memory of a process tree from /proc: RSS (`VmRSS` in status) and PSS (`Pss` in
smaps_rollup), per process and summed.

RSS counts every page a process maps, so pages that pre-forked workers share with their parent
are counted once per process; PSS divides each shared page among the processes that map it, so
the PSS of a whole tree adds up to what the tree really holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KIB = 1024


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    name: str  # the command line, shortened: `python -m wharf_registry`, `redis-server …`
    rss: int  # bytes
    pss: int  # bytes


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:  # the process exited, or is not ours
        return None


def _kib_field(text: str, name: str) -> int | None:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * KIB
    return None


def _parents() -> dict[int, int]:
    """pid → parent pid of every process now."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            if stat is not None:
                parents[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return parents


def children(pid: int) -> list[int]:
    """The direct children of `pid`, in pid order."""
    return sorted(child for child, parent in _parents().items() if parent == pid)


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (root first), or [] when `root` is gone."""
    parents = _parents()
    if root not in parents:
        return []
    tree, frontier = [root], [root]
    while frontier:
        pid = frontier.pop()
        kids = sorted(child for child, parent in parents.items() if parent == pid)
        tree += kids
        frontier += kids
    return tree


def command_name(pid: int) -> str:
    raw = _read(f"/proc/{pid}/cmdline") or ""
    argv = [a for a in raw.split("\0") if a]
    if not argv:
        return "?"
    program = Path(argv[0]).name
    if "-m" in argv[:-1]:  # `python -m wharf_registry`
        return f"{program} -m {argv[argv.index('-m') + 1]}"
    return " ".join([program, *(Path(a).name for a in argv[1:3])])


def process_memory(pid: int) -> ProcessMemory | None:
    """RSS and PSS of one process (None when it is gone)."""
    status, rollup = _read(f"/proc/{pid}/status"), _read(f"/proc/{pid}/smaps_rollup")
    if status is None or rollup is None:
        return None
    rss, pss = _kib_field(status, "VmRSS"), _kib_field(rollup, "Pss")
    if rss is None or pss is None:  # a zombie has neither
        return None
    return ProcessMemory(pid, command_name(pid), rss, pss)


def tree_memory(root: int) -> list[ProcessMemory]:
    """RSS and PSS of `root` and each of its descendants (root first)."""
    found = (process_memory(pid) for pid in process_tree(root))
    return [m for m in found if m is not None]
