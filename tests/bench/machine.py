"""The machine the bench runs on: CPU accounting from /proc, waiting for quiet, a disk probe."""

from __future__ import annotations

import os
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+system seconds) from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is the state (stat field 3): ppid is field 4, utime 14, stime 15.
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def tree_cpu_seconds(*roots: int) -> float:
    """CPU seconds (user + system) so far of the processes `roots` and all their descendants."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _stat(int(entry))
            if found is not None:
                stats[int(entry)] = found
    total = 0.0
    frontier = list(roots)
    seen = set()
    while frontier:
        pid = frontier.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += stats[pid][1]
        frontier.extend(child for child, (ppid, _) in stats.items() if ppid == pid)
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait), from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # guest time is already counted in user; steal is time the hypervisor took from us.
    return (sum(fields[:8]) - idle) / _TICK


def settle(max_wait: float, busy_limit: float = 0.25, window: float = 0.5) -> float:
    """Wait (up to `max_wait` s) until the machine is nearly idle; returns the load seen last (cores).

    Other work on the machine (a test run beside the bench) takes the cores the servers and the
    client share; starting each timed run on a quiet machine keeps the figures comparable.
    """
    deadline = time.monotonic() + max_wait
    while True:
        before = machine_busy_seconds()
        time.sleep(window)
        load = (machine_busy_seconds() - before) / window
        if load <= busy_limit or time.monotonic() >= deadline:
            return load


def disk_probe(directory: Path) -> dict[str, float]:
    """What durable writes cost on the storage's filesystem (Wharf fsyncs, distribution does not)."""
    directory.mkdir(parents=True, exist_ok=True)
    small = []
    for i in range(20):
        path = directory / f"small-{i}"
        t0 = time.perf_counter()
        with path.open("wb") as handle:
            handle.write(b"x" * 2048)
            handle.flush()
            os.fsync(handle.fileno())
        small.append(time.perf_counter() - t0)
        path.unlink()
    size = 64 * 1024 * 1024
    data = os.urandom(size)
    path = directory / "large"
    t0 = time.perf_counter()
    with path.open("wb") as handle:
        handle.write(data)
        written = time.perf_counter()
        handle.flush()
        os.fsync(handle.fileno())
    done = time.perf_counter()
    path.unlink()
    small.sort()
    return {
        "small_write_fsync_ms_median": round(small[len(small) // 2] * 1000, 2),
        "write_mib_s": round(size / (1 << 20) / (written - t0)),
        "write_fsync_mib_s": round(size / (1 << 20) / (done - t0)),
    }
