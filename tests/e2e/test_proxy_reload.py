"""A `wharf-proxy` process (two workers) whose pools come from an upstreams file rewritten while
a client GETs in a loop: an instance added gets requests, one removed gets none, a broken file
changes nothing, and the client sees no failure throughout. SIGHUP (systemd's `ExecReload`)
re-reads the file at once; a file that will not do stops start-up."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.support.processes import ServiceProcess, proxy_process, service_env
from tests.support.upstream import SEEN, start_upstream
from tests.support.wire import wait_until

pytestmark = pytest.mark.e2e


def write_atomically(path: Path, text: str) -> None:
    """As Ansible's `template` does: a temporary file in the same directory, renamed over."""
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(text)
    os.replace(staged, path)


def pools_text(registry: list[str]) -> str:
    return "registry = [" + ", ".join(f'"{u}"' for u in registry) + "]\n"


def url(server: TestServer) -> str:
    return f"http://{server.host}:{server.port}"


def log_events(proxy: ServiceProcess, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in proxy.log_path.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def workers_logged(proxy: ServiceProcess, event: str, match: Callable[[dict[str, Any]], bool]) -> int:
    """How many of the proxy's workers have logged `event` with what `match` wants."""
    return len({e["pid"] for e in log_events(proxy, event) if match(e)})


@dataclass
class Puller:
    """GETs through the proxy from `clients` loops at once until stopped, each GET on a new
    connection (so that the kernel hands them to either worker); every failure is kept."""

    base: str
    clients: int = 3
    answered: int = 0
    by_client: list[int] = field(default_factory=list)  # answered, per loop
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        deadline = time.monotonic() + 120  # bounded, whatever the test does
        async with aiohttp.ClientSession() as session:

            async def loop(me: int) -> None:
                while not self.stop.is_set() and time.monotonic() < deadline:
                    try:
                        async with session.get(
                            f"{self.base}/v2/library/app/manifests/latest", headers={"Connection": "close"}
                        ) as resp:
                            await resp.read()
                            if resp.status != 200:
                                self.failures.append(f"status {resp.status}")
                    except aiohttp.ClientError as exc:
                        self.failures.append(repr(exc))
                    self.answered += 1
                    self.by_client[me] += 1

            self.by_client = [0] * self.clients
            await asyncio.gather(*(loop(me) for me in range(self.clients)))

    async def each_ended_one(self) -> None:
        """Until every loop has ended the request it had under way (and begun another)."""
        before = list(self.by_client)
        await wait_until(lambda: all(n > m for n, m in zip(self.by_client, before, strict=True)), "each loop")

    async def more(self, count: int) -> None:
        """Until `count` more requests were answered."""
        target = self.answered + count
        await wait_until(lambda: self.answered >= target, f"{count} more requests")


@pytest.fixture
async def upstreams() -> AsyncIterator[list[TestServer]]:
    servers = [await start_upstream("a"), await start_upstream("b")]
    yield servers
    for server in servers:
        await server.close()


def file_proxy(tmp_path: Path, path: Path, interval: float, workers: int = 2) -> ServiceProcess:
    env = {
        "WHARF_DATA_DIR": str(tmp_path / "var"),
        "WHARF_PROXY__UPSTREAMS_FILE": str(path),
        "WHARF_PROXY__WORKERS": str(workers),
        "WHARF_PROXY__HEALTH_INTERVAL_SECONDS": str(interval),
    }
    return proxy_process(env, tmp_path / "logs")


async def listed(proxy: ServiceProcess, session: aiohttp.ClientSession) -> list[str]:
    async with session.get(f"{proxy.url}/health/upstreams", headers={"Connection": "close"}) as resp:
        report = await resp.json()
    return [u["url"] for u in report["pools"]["registry"]["upstreams"]]


async def test_scaling_out_and_in_through_the_file_fails_no_request(
    tmp_path: Path, upstreams: list[TestServer]
) -> None:
    a, b = upstreams
    path = tmp_path / "upstreams.toml"
    write_atomically(path, pools_text([url(a)]))
    proxy = file_proxy(tmp_path, path, interval=0.2)
    await asyncio.to_thread(proxy.start)
    puller = Puller(proxy.url)
    pulling = asyncio.create_task(puller.run())
    try:
        await wait_until(lambda: workers_logged(proxy, "listening", lambda _e: True) == 2, "both workers")
        await puller.more(10)

        # Scale out: b joins; both get requests, and both workers route to it.
        write_atomically(path, pools_text([url(a), url(b)]))
        await wait_until(
            lambda: (
                workers_logged(proxy, "upstreams_reloaded", lambda e: e["added"] == {"registry": [url(b)]})
                == 2
            ),
            "both workers to add b",
        )
        await wait_until(lambda: len(b.app[SEEN]) >= 10, "requests to b")
        seen_by_a = len(a.app[SEEN])
        await wait_until(lambda: len(a.app[SEEN]) >= seen_by_a + 10, "requests to a, still")
        async with aiohttp.ClientSession() as session:
            assert await listed(proxy, session) == [url(a), url(b)]
        assert len(log_events(proxy, "upstream_admitted")) == 1  # once, whichever worker checked it

        # Scale in: a leaves; once both workers dropped it (and the request in flight then
        # ended), it gets none.
        write_atomically(path, pools_text([url(b)]))
        await wait_until(
            lambda: (
                workers_logged(proxy, "upstreams_reloaded", lambda e: e["removed"] == {"registry": [url(a)]})
                == 2
            ),
            "both workers to remove a",
        )
        await puller.each_ended_one()  # every request begun before has ended
        seen_by_a = len(a.app[SEEN])
        await puller.more(40)
        assert len(a.app[SEEN]) == seen_by_a
        async with aiohttp.ClientSession() as session:
            assert await listed(proxy, session) == [url(b)]
            async with session.get(f"{proxy.url}/metrics") as resp:
                healthy = [
                    line
                    for line in (await resp.text()).splitlines()
                    if line.startswith("wharf_proxy_upstream_healthy{")
                ]
        assert healthy == [f'wharf_proxy_upstream_healthy{{pool="registry",upstream="{url(b)}"}} 1.0']

        # A broken file (a half-written one, not renamed into place) keeps the pools.
        path.write_text('registry = ["http://127.0.0.1:1"')
        await wait_until(
            lambda: workers_logged(proxy, "upstreams_reload_failed", lambda _e: True) == 2, "refusals"
        )
        assert all("not TOML" in e["reason"] for e in log_events(proxy, "upstreams_reload_failed"))
        seen_by_b = len(b.app[SEEN])
        await puller.more(20)
        assert len(b.app[SEEN]) >= seen_by_b + 20
        async with aiohttp.ClientSession() as session:
            assert await listed(proxy, session) == [url(b)]
    finally:
        puller.stop.set()
        await pulling
        await asyncio.to_thread(proxy.stop)
    assert puller.failures == []
    assert puller.answered > 80


@pytest.mark.parametrize("workers", [2, 1])
async def test_sighup_rereads_the_file_at_once(
    tmp_path: Path, upstreams: list[TestServer], workers: int
) -> None:
    """The file is looked at every health interval, here a minute: what makes every worker
    re-read it within the test's wait is the SIGHUP sent to the proxy's main process (which,
    with one worker, is the worker)."""
    a, b = upstreams
    path = tmp_path / "upstreams.toml"
    write_atomically(path, pools_text([url(a)]))
    proxy = file_proxy(tmp_path, path, interval=60, workers=workers)
    await asyncio.to_thread(proxy.start)
    try:
        await wait_until(
            lambda: workers_logged(proxy, "listening", lambda _e: True) == workers, "the workers"
        )
        write_atomically(path, pools_text([url(b)]))
        assert proxy.process is not None
        proxy.process.send_signal(signal.SIGHUP)
        await wait_until(
            lambda: (
                workers_logged(proxy, "upstreams_reloaded", lambda e: e["removed"] == {"registry": [url(a)]})
                == workers
            ),
            "the workers to re-read the file",
        )
        async with aiohttp.ClientSession() as session:
            for _ in range(6):
                async with session.get(f"{proxy.url}/v2/", headers={"Connection": "close"}) as resp:
                    assert (await resp.json())["upstream"] == "b"
    finally:
        await asyncio.to_thread(proxy.stop)


async def test_sighup_without_an_upstreams_file_leaves_the_proxy_serving(
    tmp_path: Path, upstreams: list[TestServer]
) -> None:
    a, _ = upstreams
    env = {
        "WHARF_DATA_DIR": str(tmp_path / "var"),
        "WHARF_PROXY__UPSTREAMS__REGISTRY": url(a),
        "WHARF_PROXY__WORKERS": "2",
    }
    proxy = proxy_process(env, tmp_path / "logs")
    await asyncio.to_thread(proxy.start)
    try:
        await wait_until(lambda: workers_logged(proxy, "listening", lambda _e: True) == 2, "both workers")
        assert proxy.process is not None
        proxy.process.send_signal(signal.SIGHUP)
        await wait_until(
            lambda: len(log_events(proxy, "upstreams_reload_skipped")) == 2, "both workers to skip"
        )
        async with aiohttp.ClientSession() as session, session.get(f"{proxy.url}/v2/") as resp:
            assert resp.status == 200
        assert proxy.process.poll() is None
    finally:
        await asyncio.to_thread(proxy.stop)


def test_a_file_that_will_not_do_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.toml"
    path.write_text('registry = ["10.0.0.11:5000"]\n')
    env = service_env({"WHARF_DATA_DIR": str(tmp_path / "var"), "WHARF_PROXY__UPSTREAMS_FILE": str(path)})
    done = subprocess.run(
        [sys.executable, "-m", "wharf_proxy"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert f"WHARF_PROXY__UPSTREAMS_FILE={path}: registry:" in done.stderr
    assert "is not an http:// or https:// base URL" in done.stderr
