"""The proxy as a process (two workers): TLS, per-upstream metrics, JSON access log, a
graceful drain on SIGTERM (a download in flight finishes; new connections are refused), and
one log line per ejection and restoration of an upstream, whichever worker saw it."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import psutil
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import ServiceProcess, free_port, proxy_process
from tests.support.tls import self_signed
from tests.support.upstream import GATE, MiB, start_upstream, upstream_process
from tests.support.wire import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    server = await start_upstream("registry")
    yield server
    await server.close()


@pytest.fixture
async def proxy(upstream: TestServer, tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    cert, key = self_signed(tmp_path)
    base = f"http://{upstream.host}:{upstream.port}"
    env = {
        "WHARF_DATA_DIR": str(tmp_path / "var"),
        "WHARF_EXTERNAL_URL": "https://127.0.0.1",
        "WHARF_PROXY__UPSTREAMS__REGISTRY": base,
        "WHARF_PROXY__UPSTREAMS__TOKEN": base,
        "WHARF_PROXY__TLS_CERT_FILE": str(cert),
        "WHARF_PROXY__TLS_KEY_FILE": str(key),
        "WHARF_PROXY__WORKERS": "2",
        "WHARF_PROXY__DRAIN_SECONDS": "20",
    }
    process = proxy_process(env, tmp_path / "logs")
    process.scheme = "https"
    await asyncio.to_thread(process.start)
    yield process
    await asyncio.to_thread(process.stop)


def client_tls(cert_dir: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert_dir / "cert.pem"))


async def test_tls_metrics_and_access_log(
    proxy: ServiceProcess, upstream: TestServer, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        tls = client_tls(tmp_path)
        async with session.get(f"{proxy.url}/v2/some/repo/tags/list", ssl=tls) as resp:
            assert resp.status == 200
            echoed = await resp.json()
        assert echoed["headers"]["X-Forwarded-Proto"] == "https"
        async with session.get(f"{proxy.url}/metrics", ssl=tls) as resp:
            metrics = await resp.text()
    base = f"http://{upstream.host}:{upstream.port}"
    assert f'wharf_proxy_upstream_requests_total{{pool="registry",status="200",upstream="{base}"}}' in metrics
    assert f'wharf_proxy_upstream_healthy{{pool="registry",upstream="{base}"}} 1.0' in metrics
    access = [
        json.loads(line)
        for line in proxy.log_path.read_text().splitlines()
        if line.startswith("{") and '"access"' in line
    ]
    entry = next(e for e in access if e["path"] == "/v2/some/repo/tags/list")
    assert (entry["status"], entry["upstream"], entry["pool"]) == (200, base, "registry")
    assert entry["request_id"]


def workers_logging(proxy: ServiceProcess, event: str) -> int:
    """How many of the proxy's workers have logged `event` (`listening`, `stopping`)."""
    lines = proxy.log_path.read_text().splitlines()
    return sum(1 for line in lines if line.startswith("{") and json.loads(line).get("event") == event)


def stopping_workers(proxy: ServiceProcess) -> int:
    return workers_logging(proxy, "stopping")


async def both_workers_listening(proxy: ServiceProcess) -> None:
    """The proxy answers once one worker listens; a stop sent while the other is still starting
    ends that one before it ever serves (no `stopping` to wait for)."""
    await wait_until(lambda: workers_logging(proxy, "listening") == 2, "both workers to listen")


async def test_sigterm_drains_requests_in_flight(
    proxy: ServiceProcess, upstream: TestServer, tmp_path: Path
) -> None:
    received = 0
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{proxy.url}/v2/slow", ssl=client_tls(tmp_path)) as resp,
    ):
        assert resp.status == 200
        first = await resp.content.readexactly(MiB // 4)
        received += len(first)
        assert proxy.process is not None
        await both_workers_listening(proxy)
        proxy.process.send_signal(signal.SIGTERM)
        # The rest of the download is held back until both workers are draining.
        await wait_until(lambda: stopping_workers(proxy) == 2, "both workers to stop accepting")
        upstream.app[GATE].set()
        async for chunk in resp.content.iter_chunked(MiB):
            received += len(chunk)
    assert received == 8 * MiB  # the download in flight finished after SIGTERM
    code = await asyncio.to_thread(proxy.process.wait, 30)
    assert code == 0, proxy.tail()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"{proxy.url}/health", ssl=client_tls(tmp_path))


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_workers_drain_and_stop_when_their_supervisor_is_killed(
    proxy: ServiceProcess, upstream: TestServer, tmp_path: Path
) -> None:
    """SIGKILL of the proxy's main process (the supervisor) leaves no worker serving on
    unsupervised, holding the port: each gets SIGTERM and drains as on a plain SIGTERM."""
    workers = psutil.Process(proxy.pid).children()
    assert len(workers) == 2
    received = 0
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{proxy.url}/v2/slow", ssl=client_tls(tmp_path)) as resp,
    ):
        assert resp.status == 200
        received += len(await resp.content.readexactly(MiB // 4))
        await both_workers_listening(proxy)
        proxy.kill()
        await wait_until(lambda: stopping_workers(proxy) == 2, "both workers to stop accepting")
        upstream.app[GATE].set()
        async for chunk in resp.content.iter_chunked(MiB):
            received += len(chunk)
    assert received == 8 * MiB  # the download in flight finished
    await wait_until(lambda: not any(alive(w) for w in workers), "the workers to exit")
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"{proxy.url}/health", ssl=client_tls(tmp_path))


def proxy_events(proxy: ServiceProcess, event: str, pool: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in proxy.log_path.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event and line.get("pool") == pool]


def proxy_metric(proxy: ServiceProcess, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"{proxy.url}/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


async def test_a_dead_upstream_is_logged_once_by_two_workers(tmp_path: Path) -> None:
    """Two workers, each with its own pools: an upstream that dies is logged (and counted) once
    when ejected, however long it stays dead and however many requests fail on it in either
    worker, and once when it comes back."""
    host, port = "127.0.0.1", free_port()
    base = f"http://{host}:{port}"
    upstream = upstream_process("first", host, port, tmp_path / "logs")
    await asyncio.to_thread(upstream.start)
    env = {
        "WHARF_DATA_DIR": str(tmp_path / "var"),
        "WHARF_PROXY__UPSTREAMS__REGISTRY": base,
        "WHARF_PROXY__UPSTREAMS__TOKEN": base,
        "WHARF_PROXY__WORKERS": "2",
        "WHARF_PROXY__HEALTH_INTERVAL_SECONDS": "0.1",
        "WHARF_PROXY__EJECT_AFTER_FAILURES": "2",
        "WHARF_PROXY__EJECT_SECONDS": "0.3",
    }
    proxy = proxy_process(env, tmp_path / "logs")
    await asyncio.to_thread(proxy.start)
    try:
        upstream.kill()

        def failed_checks() -> float:
            return proxy_metric(
                proxy, "wharf_proxy_upstream_failures_total", pool="registry", upstream=base, kind="health"
            )

        await wait_until(lambda: len(proxy_events(proxy, "upstream_ejected", "registry")) >= 1, "an ejection")
        # Dead for many more checks (and ejection periods), requests failing in both workers.
        seen = await asyncio.to_thread(failed_checks)
        async with aiohttp.ClientSession() as session:
            while await asyncio.to_thread(failed_checks) < seen + 20:
                for _ in range(8):  # a new connection each: the kernel hands them to either worker
                    async with session.get(f"{proxy.url}/v2/", headers={"Connection": "close"}) as resp:
                        assert resp.status == 503
        upstream = upstream_process("second", host, port, tmp_path / "logs")
        await asyncio.to_thread(upstream.start)
        await wait_until(
            lambda: len(proxy_events(proxy, "upstream_restored", "registry")) >= 1, "a restoration"
        )
        async with aiohttp.ClientSession() as session:
            for _ in range(8):
                async with session.get(f"{proxy.url}/v2/", headers={"Connection": "close"}) as resp:
                    assert (await resp.json())["upstream"] == "second"
        assert len(proxy_events(proxy, "upstream_ejected", "registry")) == 1
        assert len(proxy_events(proxy, "upstream_restored", "registry")) == 1
        assert proxy_metric(proxy, "wharf_proxy_upstream_ejections_total", pool="registry") == 1
        assert proxy_metric(proxy, "wharf_proxy_upstream_restorations_total", pool="registry") == 1
        assert proxy_metric(proxy, "wharf_proxy_upstream_healthy", pool="registry") == 1
    finally:
        await asyncio.to_thread(proxy.stop)
        upstream.kill()
