"""A 1 GiB blob through a registry process (and through the proxy) must not grow the process by
anything like the blob, on the filesystem and on S3 (moto; the driver buffers at most one 16 MiB
part per upload).

Pushed in 64 MiB PATCHes, pushed again monolithically, pulled back twice; the registry's RSS is
sampled every 50 ms during each transfer and compared with its RSS after a warm-up that went
through the same code paths with a small blob. The test streams from a file and hashes as it
reads: it never holds the blob in memory either.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import statistics
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType

import aiohttp
import psutil
import pytest

from tests.e2e.conftest import Registry
from tests.images import write_big_file
from tests.support import backends
from tests.support.suite import start_suite

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

log = logging.getLogger(__name__)

MIB = 1024 * 1024
BIG = 1024 * MIB
PATCH_SIZE = 64 * MIB
GROWTH_LIMIT = 64 * MIB
SAMPLE_SECONDS = 0.05
READ_BLOCK = MIB


class RSSSampler:
    """Samples a process's resident set size from a thread, every SAMPLE_SECONDS, while in use."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)
        self.samples: list[int] = []

    def _run(self) -> None:
        while True:
            self.samples.append(self._process.memory_info().rss)
            if self._stop.wait(SAMPLE_SECONDS):
                self.samples.append(self._process.memory_info().rss)
                return

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max(self.samples)


async def file_body(path: Path, start: int, length: int) -> AsyncIterator[bytes]:
    """`length` bytes of `path` from `start`, a block at a time."""
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        handle.seek(start)
        remaining = length
        while remaining:
            block = await asyncio.to_thread(handle.read, min(READ_BLOCK, remaining))
            assert block, f"{path} ended {remaining} bytes early"
            remaining -= len(block)
            yield block
    finally:
        handle.close()


async def push_chunked(
    session: aiohttp.ClientSession,
    registry: Registry,
    repo: str,
    path: Path,
    size: int,
    digest: str,
    chunk: int,
) -> None:
    async with session.post(f"/v2/{repo}/blobs/uploads/") as resp:
        assert resp.status == 202, registry.explain(f"upload start: {resp.status} {await resp.text()}")
        location = resp.headers["Location"]
    for start in range(0, size, chunk):
        length = min(chunk, size - start)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(length),
            "Content-Range": f"{start}-{start + length - 1}",
        }
        async with session.patch(location, data=file_body(path, start, length), headers=headers) as resp:
            assert resp.status == 202, registry.explain(
                f"PATCH at {start}: {resp.status} {await resp.text()}"
            )
            assert resp.headers["Range"] == f"0-{start + length - 1}"
            location = resp.headers["Location"]
    async with session.put(location, params={"digest": digest}) as resp:
        assert resp.status == 201, registry.explain(f"upload finish: {resp.status} {await resp.text()}")
        assert resp.headers["Docker-Content-Digest"] == digest


async def push_monolithic(
    session: aiohttp.ClientSession, registry: Registry, repo: str, path: Path, size: int, digest: str
) -> None:
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
    async with session.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": digest},
        data=file_body(path, 0, size),
        headers=headers,
    ) as resp:
        assert resp.status == 201, registry.explain(f"monolithic push: {resp.status} {await resp.text()}")
        assert resp.headers["Docker-Content-Digest"] == digest


async def pull(session: aiohttp.ClientSession, registry: Registry, repo: str, size: int, digest: str) -> None:
    hasher = hashlib.sha256()
    received = 0
    async with session.get(f"/v2/{repo}/blobs/{digest}") as resp:
        assert resp.status == 200, registry.explain(f"pull: {resp.status} {await resp.text()}")
        assert resp.headers["Docker-Content-Digest"] == digest
        assert resp.content_length == size
        async for block in resp.content.iter_chunked(READ_BLOCK):
            hasher.update(block)
            received += len(block)
    assert received == size, registry.explain(f"pulled {received} of {size} bytes")
    assert "sha256:" + hasher.hexdigest() == digest, registry.explain("pulled bytes do not match the digest")


@pytest.fixture
def big_file(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "big.bin"
    return path, write_big_file(path, BIG)


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "registry",
    [
        pytest.param(("postgresql", "none"), id="postgresql-filesystem"),
        pytest.param(("postgresql", "none", "s3"), id="postgresql-s3"),
    ],
    indirect=True,
)
async def test_big_blob_does_not_grow_the_registry(
    registry: Registry,
    big_file: tuple[Path, str],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    baseline, results = await measure_transfers(
        registry.url, registry, registry.process.pid, big_file, tmp_path
    )

    record_property("rss_baseline_mib", round(baseline / MIB, 1))
    record_property("rss_growth", results)
    for name, figures in results.items():
        assert figures["growth_mib"] * MIB < GROWTH_LIMIT, registry.explain(
            f"{name}: registry RSS grew by {figures['growth_mib']} MiB over its "
            f"{baseline / MIB:.1f} MiB after warm-up (limit {GROWTH_LIMIT // MIB} MiB); all: {results}"
        )


@pytest.mark.timeout(600)
def test_big_blob_does_not_grow_the_proxy(
    big_file: tuple[Path, str], tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """The same transfers through the proxy (one worker process, so its RSS is the proxy's)."""
    with (
        backends.fresh_database("postgresql", str(tmp_path)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        suite = start_suite(
            tmp_path,
            database_url,
            redis_url,
            admin_password="memory-test-admin",
            extra_env={"WHARF_REGISTRY__AUTH": "none", "WHARF_PROXY__WORKERS": "1"},
        )
        try:
            registry = Registry(suite.registries[0], "none", "postgresql", suite.data_dir, None)
            baseline, results = asyncio.run(
                measure_transfers(suite.url, registry, suite.proxy.pid, big_file, tmp_path)
            )
        finally:
            suite.stop()
    record_property("proxy_rss_baseline_mib", round(baseline / MIB, 1))
    record_property("proxy_rss_growth", results)
    for name, figures in results.items():
        assert figures["growth_mib"] * MIB < GROWTH_LIMIT, (
            f"{name}: proxy RSS grew by {figures['growth_mib']} MiB over {baseline / MIB:.1f} MiB; "
            f"all: {results}\n{suite.logs()}"
        )


async def measure_transfers(
    base_url: str, registry: Registry, pid: int, big_file: tuple[Path, str], tmp_path: Path
) -> tuple[float, dict[str, dict[str, float]]]:
    """Warm up with a small blob, then push the big one chunked and monolithically and pull both
    back, sampling `pid`'s RSS during each; returns the idle baseline and each phase's figures."""
    path, digest = big_file
    small = tmp_path / "small.bin"
    small_digest = await asyncio.to_thread(write_big_file, small, 16 * MIB)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
    async with aiohttp.ClientSession(base_url=base_url, timeout=timeout) as session:
        # Warm-up: every code path once, with a small blob.
        await push_chunked(session, registry, "warm/chunked", small, 16 * MIB, small_digest, 4 * MIB)
        await push_monolithic(session, registry, "warm/mono", small, 16 * MIB, small_digest)
        await pull(session, registry, "warm/chunked", 16 * MIB, small_digest)
        await pull(session, registry, "warm/mono", 16 * MIB, small_digest)
        with RSSSampler(pid) as idle:
            await asyncio.sleep(1.0)
        baseline = statistics.median(idle.samples)

        phases: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            (
                "push in 64 MiB PATCHes",
                lambda: push_chunked(session, registry, "big/chunked", path, BIG, digest, PATCH_SIZE),
            ),
            ("push monolithic", lambda: push_monolithic(session, registry, "big/mono", path, BIG, digest)),
            ("pull (chunked push)", lambda: pull(session, registry, "big/chunked", BIG, digest)),
            ("pull (monolithic push)", lambda: pull(session, registry, "big/mono", BIG, digest)),
        ]
        results: dict[str, dict[str, float]] = {}
        for name, transfer in phases:
            started = time.monotonic()
            with RSSSampler(pid) as sampler:
                await transfer()
            seconds = time.monotonic() - started
            results[name] = {
                "growth_mib": round((sampler.peak - baseline) / MIB, 1),
                "seconds": round(seconds, 2),
                "mib_per_s": round(BIG / MIB / seconds),
                "samples": len(sampler.samples),
            }
            log.info("rss of %d, %s: %s (baseline %.1f MiB)", pid, name, results[name], baseline / MIB)
            # The sampler must have watched the transfer, not just its ends.
            assert len(sampler.samples) >= seconds / SAMPLE_SECONDS / 4, results[name]
    return baseline, results
