"""The proxy's spool (wharf_proxy.spool) on a real directory: what it keeps it gives back
byte for byte, in batches written off the event loop; it never outgrows its bounds; and its
file is unnamed from the start and gone with `close`, whatever happened before."""

from __future__ import annotations

import asyncio
import os
import random
import threading
from pathlib import Path

import pytest

from wharf_proxy import spool as spool_module
from wharf_proxy.metrics import ProxyMetrics
from wharf_proxy.spool import BATCH, Spool, SpoolBudget
from wharf_shared.metrics import Metrics

MiB = 1024 * 1024


def budget(tmp_path: Path, per_request: int = 64 * MiB, total: int = 256 * MiB) -> SpoolBudget:
    return SpoolBudget(tmp_path, per_request, total, ProxyMetrics(Metrics("proxy")))


def open_files(directory: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


async def read_all(spool: Spool, start: int, end: int) -> bytes:
    return b"".join([piece async for piece in spool.read(start, end)])


async def test_what_is_added_is_read_back(tmp_path: Path) -> None:
    spools = budget(tmp_path)
    spool = spools.spool()
    rng = random.Random(1)
    chunks = [rng.randbytes(rng.randint(1, 300_000)) for _ in range(60)]
    data = b"".join(chunks)
    for chunk in chunks:
        await spool.add(chunk)
    assert await spool.settle()
    assert spool.size == len(data)
    assert await read_all(spool, 0, len(data)) == data
    assert await read_all(spool, 12345, len(data) - 7) == data[12345:-7]
    assert os.listdir(tmp_path) == []  # unnamed from the start
    assert len(open_files(tmp_path)) == 1
    assert spools.used == len(data)
    await spool.close()
    assert open_files(tmp_path) == []
    assert spools.used == 0


async def test_many_tiny_chunks_are_written_in_batches(tmp_path: Path) -> None:
    """More pieces in a batch than one pwritev call takes (IOV_MAX)."""
    spool = budget(tmp_path).spool()
    data = random.Random(2).randbytes(BATCH + 1000)
    for start in range(0, len(data), 100):
        await spool.add(data[start : start + 100])
    assert await spool.settle()
    assert await read_all(spool, 0, len(data)) == data
    await spool.close()


async def test_the_writing_leaves_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches are written by a worker thread, one call per batch, not by the event loop."""
    threads: list[int] = []
    real = spool_module._write_at

    def spy(*args: object) -> int:
        threads.append(threading.get_ident())
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(spool_module, "_write_at", spy)
    spool = budget(tmp_path).spool()
    piece = BATCH // 2
    for _ in range(5):
        await spool.add(b"x" * piece)
    assert await spool.settle()
    loop_thread = threading.get_ident()
    assert len(threads) == 3  # two full batches, and the last half one
    assert loop_thread not in threads
    await spool.close()


async def test_a_body_past_the_per_request_bound_gives_up(tmp_path: Path) -> None:
    spools = budget(tmp_path, per_request=6 * MiB)
    spool = spools.spool()
    for _ in range(5):
        await spool.add(b"y" * MiB)
    assert spool.usable
    await spool.add(b"y" * (MiB + 1))
    assert spool.overflowed
    assert not await spool.settle()
    assert spools.used == 0  # what it held is freed at once
    assert open_files(tmp_path) == []
    await spool.add(b"more")  # ignored
    assert spools.used == 0
    await spool.close()


async def test_spools_share_the_total(tmp_path: Path) -> None:
    spools = budget(tmp_path, per_request=16 * MiB, total=10 * MiB)
    first, second = spools.spool(), spools.spool()
    for _ in range(8):
        await first.add(b"a" * MiB)
    assert await first.settle()
    assert spools.used == 8 * MiB
    for _ in range(4):
        await second.add(b"b" * MiB)
    assert not await second.settle()  # 12 MiB would not fit in 10
    assert second.overflowed
    assert spools.used == 8 * MiB
    await first.close()
    assert spools.used == 0
    third = spools.spool()
    for _ in range(4):
        await third.add(b"c" * MiB)
    assert await third.settle()  # room again
    await third.close()
    await second.close()
    assert spools.used == 0
    assert open_files(tmp_path) == []


async def test_a_disk_that_fails_gives_up_the_spool(tmp_path: Path) -> None:
    spools = budget(tmp_path / "missing")  # mkstemp fails: no such directory
    spool = spools.spool()
    await spool.add(b"z" * BATCH)
    assert not await spool.settle()
    assert spool.overflowed
    assert spools.used == 0
    await spool.close()


async def test_close_waits_for_a_read_in_flight(tmp_path: Path) -> None:
    """A reader cancelled mid-read leaves its thread call running: close waits for it before it
    closes the descriptor."""
    spools = budget(tmp_path)
    spool = spools.spool()
    data = random.Random(3).randbytes(8 * MiB)
    await spool.add(data)
    assert await spool.settle()

    async def read() -> bytes:
        return await read_all(spool, 0, len(data))

    reader = asyncio.ensure_future(read())
    await asyncio.sleep(0)
    reader.cancel()
    await spool.close()
    assert open_files(tmp_path) == []
    assert spools.used == 0
    with pytest.raises(asyncio.CancelledError):
        await reader


async def test_a_closed_spool_reads_nothing(tmp_path: Path) -> None:
    spool = budget(tmp_path).spool()
    await spool.add(b"q" * 100)
    assert await spool.settle()
    await spool.close()
    with pytest.raises(OSError, match="gone"):
        await read_all(spool, 0, 100)


def test_bounds_decide_what_may_be_spooled(tmp_path: Path) -> None:
    spools = budget(tmp_path, per_request=10)
    assert spools.fits(10)
    assert spools.fits(None)
    assert not spools.fits(11)
    assert not budget(tmp_path, per_request=0).fits(1)
    assert not budget(tmp_path, total=0).enabled


async def test_blocks_are_allocated_ahead_within_the_bound(tmp_path: Path) -> None:
    """The file grows by ALLOCATE at a time (fallocate: cheaper page-cache writes on ext4),
    never past the per-request bound."""
    for per_request, expected in ((64 * MiB, spool_module.ALLOCATE), (6 * MiB, 6 * MiB)):
        spool = budget(tmp_path, per_request=per_request).spool()
        await spool.add(b"a" * BATCH)
        await spool.add(b"b" * MiB)
        assert await spool.settle()
        assert spool._fd is not None
        assert os.fstat(spool._fd).st_size == expected
        assert await read_all(spool, BATCH - 1, BATCH + 1) == b"ab"
        await spool.close()
