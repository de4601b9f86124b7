"""`tests.support.memory`: RSS and PSS of a real process tree read from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from tests.support.memory import descendants, tree_memory

CHILD = (
    "import sys, time; data = bytearray(32 * 1024 * 1024); sys.stdout.write('ready\\n');"
    " sys.stdout.flush(); time.sleep(60)"
)
PARENT = "import subprocess, sys; child = subprocess.Popen([sys.executable, '-c', sys.argv[1]]); child.wait()"


def test_a_tree_holds_its_children_and_their_memory() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline() == "ready\n"  # the child has touched its 32 MiB
        deadline = time.monotonic() + 10
        while len(descendants(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        _, child = descendants(parent.pid)
        tree = tree_memory(parent.pid)
        memory = {m.pid: m for m in tree.processes}
        assert set(memory) == {parent.pid, child}
        assert memory[child].ppid == parent.pid
        assert tree.pss == memory[parent.pid].pss + memory[child].pss
        assert memory[child].rss >= 32 * 1024 * 1024
        assert 32 * 1024 * 1024 <= memory[child].pss <= memory[child].rss
    finally:
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    assert tree_memory(parent.pid).processes == ()  # gone: nothing to measure
