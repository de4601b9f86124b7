"""What a failure of a job means: whether another attempt may cure it, and how to say it in one line."""

from __future__ import annotations

import aiohttp


def is_transient(exc: BaseException) -> bool:
    """Whether another attempt may succeed: the error says so (`RemoteError.transient`), or the
    network, the other side's availability or the time limit is to blame."""
    flag = getattr(exc, "transient", None)
    if isinstance(flag, bool):
        return flag
    return isinstance(exc, TimeoutError | aiohttp.ClientError | ConnectionError | OSError)


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
