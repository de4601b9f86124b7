"""Memory of a process tree, as the kernel counts it: per process and summed.

RSS (`VmRSS` in /proc/<pid>/status) counts every resident page a process maps, so pages that
forked workers share with their parent are counted once per process: the RSS sum overstates
what the tree costs the machine. PSS (`Pss` in /proc/<pid>/smaps_rollup) divides each shared
page among the processes that map it, so the PSS sum is what the tree really holds. Both are
reported; the bench's idle-memory line and tests/e2e/test_idle_memory.py use this module.

    python -m tests.support.memory PID   # prints the table for PID and its descendants
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

KIB = 1024
MIB = 1024 * 1024
_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    ppid: int
    name: str  # a short label from the command line (`wharf_proxy`, `redis-server`, …)
    rss: int  # bytes
    pss: int  # bytes
    shared: int  # bytes of RSS shared with other processes (Shared_Clean + Shared_Dirty)


@dataclass(frozen=True)
class TreeMemory:
    processes: tuple[ProcessMemory, ...]

    @property
    def rss(self) -> int:
        return sum(p.rss for p in self.processes)

    @property
    def pss(self) -> int:
        return sum(p.pss for p in self.processes)

    def by_name(self) -> dict[str, tuple[int, int, int]]:
        """Per label: (processes, RSS sum, PSS sum)."""
        out: dict[str, tuple[int, int, int]] = {}
        for p in self.processes:
            count, rss, pss = out.get(p.name, (0, 0, 0))
            out[p.name] = (count + 1, rss + p.rss, pss + p.pss)
        return out

    def table(self) -> str:
        lines = [f"{'pid':>7} {'ppid':>7} {'RSS MiB':>8} {'PSS MiB':>8} {'shared':>7}  process"]
        for p in self.processes:
            figures = f"{p.rss / MIB:>8.1f} {p.pss / MIB:>8.1f} {p.shared / MIB:>7.1f}"
            lines.append(f"{p.pid:>7} {p.ppid:>7} {figures}  {p.name}")
        lines.append(f"{'':>7} {'total':>7} {self.rss / MIB:>8.1f} {self.pss / MIB:>8.1f}")
        return "\n".join(lines)


def _status(pid: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in (_PROC / str(pid) / "status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _kib(value: str) -> int:
    return int(value.split()[0]) * KIB if value else 0


def _label(pid: int, fallback: str) -> str:
    """What the process runs: the module after `-m`, the script's name, or the executable's."""
    try:
        argv = (_PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return fallback
    args = [a.decode(errors="replace") for a in argv if a]
    if fallback.startswith("wharf_") and "wharf_shared.forks" in args:
        # A fork named after its module (cut to 15 characters): the module it runs (one of the
        # specs, not the list of modules their parent preloads).
        if "--preload" in args[:-1]:
            del args[args.index("--preload") : args.index("--preload") + 2]
        return next((a.split(":")[0] for a in args if a.startswith(fallback)), fallback)
    if "-m" in args[:-1]:
        return args[args.index("-m") + 1]
    for arg in args[:2]:
        base = os.path.basename(arg.split()[0]) if arg.strip() else ""
        if base and not base.startswith(("python", "-")):
            return base  # a script (`wharf`), or a program that rewrote its title (`redis-server …`)
    return fallback


def process_memory(pid: int) -> ProcessMemory:
    status = _status(pid)
    rollup: dict[str, int] = {}
    for line in (_PROC / str(pid) / "smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        rollup[key] = _kib(value.strip())
    return ProcessMemory(
        pid=pid,
        ppid=int(status["PPid"]),
        name=_label(pid, status.get("Name", "?")),
        rss=_kib(status.get("VmRSS", "")),
        pss=rollup.get("Pss", 0),
        shared=rollup.get("Shared_Clean", 0) + rollup.get("Shared_Dirty", 0),
    )


def mapped_files(pid: int) -> set[str]:
    """The files `pid` maps (shared libraries, C extensions): which native modules it loaded."""
    found = set()
    for line in (_PROC / str(pid) / "maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/"):
            found.add(parts[5])
    return found


def descendants(root: int) -> list[int]:
    """`root` and every process below it, parents before children."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_status(int(entry.name))["PPid"])
        except (OSError, KeyError, ValueError):
            continue  # gone meanwhile, or a kernel thread without the field
        children.setdefault(ppid, []).append(int(entry.name))
    order, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        order.append(pid)
        queue.extend(sorted(children.get(pid, [])))
    return order


def tree_memory(root: int) -> TreeMemory:
    """Memory of `root` and its descendants; a process that exits meanwhile is left out."""
    found = []
    for pid in descendants(root):
        try:
            found.append(process_memory(pid))
        except (OSError, KeyError, ValueError):
            continue
    return TreeMemory(tuple(found))


if __name__ == "__main__":
    print(tree_memory(int(sys.argv[1])).table())  # noqa: T201
