"""glibc malloc settings a service makes for itself at start (no-ops on other C libraries)."""

from __future__ import annotations

import ctypes

_M_MMAP_THRESHOLD = -3  # malloc.h


def unmap_large_blocks(threshold: int) -> bool:
    """Serve every allocation of `threshold` bytes or more from a mapping of its own, unmapped
    (so no longer resident) when freed.

    glibc does so by default only until the first such block is freed; then it raises the
    threshold to that block's size (up to 32 MiB) and serves later ones from the heap, where
    their pages stay resident after use. A fixed threshold keeps it from doing that. True when set.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
