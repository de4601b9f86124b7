"""The drain switch: a file whose existence makes every service on the host unready.

`wharf drain on` makes it before a host is stopped (a rolling upgrade, maintenance): readiness
(`/health/ready`, wharf_shared.health) answers 503 with `"drain": "draining"`, the proxies take
the host's instances out of rotation after `WHARF_PROXY__EJECT_AFTER_FAILURES` checks, and the
requests already on their way are still served. `wharf drain off` removes it.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path


def draining(drain_file: Path) -> bool:
    """Whether the drain file exists: one stat."""
    return drain_file.exists()


def since(drain_file: Path) -> dt.datetime | None:
    """When draining began (the file's modification time), or None when not draining."""
    try:
        return dt.datetime.fromtimestamp(drain_file.stat().st_mtime, dt.UTC)
    except FileNotFoundError:
        return None


def start(drain_file: Path) -> bool:
    """Make the drain file, atomically (a reader sees it whole or not at all); False when it
    already existed (it is kept, with its time)."""
    with tempfile.NamedTemporaryFile(
        "w", dir=drain_file.parent, prefix=f".{drain_file.name}.", delete=False
    ) as handle:
        handle.write(f"draining since {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}\n")
        temporary = Path(handle.name)
    try:
        os.link(temporary, drain_file)  # fails rather than replace one already there
    except FileExistsError:
        return False
    finally:
        temporary.unlink()
    return True


def stop(drain_file: Path) -> bool:
    """Remove the drain file; False when there was none."""
    try:
        drain_file.unlink()
    except FileNotFoundError:
        return False
    return True
