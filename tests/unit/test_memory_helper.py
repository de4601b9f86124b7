"""tests/support/memory.py: a process tree's RSS and PSS, as the idle-memory test and the bench read them."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.support.memory import MIB, mapped_files, tree_memory

HELD = 48 * MIB


def test_tree_memory_sees_a_child_and_what_it_holds() -> None:
    code = f"import time; held = b'x' * {HELD}; print('ready', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 10
        while True:
            tree = tree_memory(os.getpid())
            found = [p for p in tree.processes if p.pid == child.pid]
            if (found and found[0].rss >= HELD) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert tree.processes[0].pid == os.getpid()
        assert found, tree.table()
        mine = found[0]
        assert mine.ppid == os.getpid()
        # Its 48 MiB are its own: resident, and not shared with anyone, so in its PSS too.
        assert mine.rss >= HELD, tree.table()
        assert mine.pss >= HELD, tree.table()
        assert mine.pss <= mine.rss
        assert tree.rss == sum(p.rss for p in tree.processes) >= tree.pss
        count, rss, pss = tree.by_name()[mine.name]
        assert count >= 1
        assert rss >= mine.rss
        assert pss >= mine.pss
        assert any("libc" in path or "python" in path for path in mapped_files(child.pid))
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
