"""`wharf drain` with a real proxy in front of a real registry: the proxy takes the draining
registry out of rotation (still serving what reaches it) and puts it back after `drain off`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import Registry
from tests.support.processes import ROOT, ServiceProcess, proxy_process, service_env
from tests.support.wire import wait_until

pytestmark = pytest.mark.e2e

WHARF = Path(sys.executable).parent / "wharf"


# Shared by the proxy and by `wharf drain` on the registry's host (one configuration everywhere).
CHECKS = {
    "WHARF_PROXY__HEALTH_INTERVAL_SECONDS": "0.2",
    "WHARF_PROXY__EJECT_AFTER_FAILURES": "2",
    "WHARF_PROXY__EJECT_SECONDS": "0.5",
}


@pytest.fixture
async def proxy(registry: Registry, tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    env = {
        "WHARF_DATA_DIR": str(tmp_path / "proxy-data"),  # its own: draining the registry's host only
        "WHARF_EXTERNAL_URL": "http://127.0.0.1",
        "WHARF_PROXY__UPSTREAMS__REGISTRY": registry.url,
        "WHARF_PROXY__UPSTREAMS__TOKEN": registry.url,  # a pool that stays ready, so the proxy is
        "WHARF_PROXY__WORKERS": "2",
        **CHECKS,
    }
    process = proxy_process(env, tmp_path / "logs")
    await asyncio.to_thread(process.start)
    yield process
    await asyncio.to_thread(process.stop)


def wharf_drain(registry: Registry, state: str) -> str:
    result = subprocess.run(
        [str(WHARF), "drain", state],
        env=service_env({"WHARF_DATA_DIR": str(registry.data_dir), **CHECKS}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def events(proxy: ServiceProcess, name: str, upstream: str) -> list[dict[str, Any]]:
    """The proxy's log lines `name` about the registry pool's `upstream`."""
    found = []
    for line in proxy.log_path.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == name and (entry.get("pool"), entry.get("upstream")) == (
                "registry",
                upstream,
            ):
                found.append(entry)
    return found


async def in_rotation(session: aiohttp.ClientSession, proxy: ServiceProcess) -> bool:
    async with session.get(f"{proxy.url}/health/upstreams") as resp:
        assert resp.status == 200
        report = await resp.json()
    (upstream,) = report["pools"]["registry"]["upstreams"]
    return bool(upstream["in_rotation"])


async def test_a_draining_registry_leaves_the_rotation_and_comes_back(
    registry: Registry, proxy: ServiceProcess
) -> None:
    async with aiohttp.ClientSession() as session:
        assert await in_rotation(session, proxy)

        said = wharf_drain(registry, "on")
        assert "out of rotation within about 0.4 s (2 failed readiness checks, 0.2 s apart)" in said
        await wait_until(lambda: bool(events(proxy, "upstream_ejected", registry.url)), "the ejection")
        (ejected,) = events(proxy, "upstream_ejected", registry.url)
        assert ejected["by"] == "health checks"
        assert ejected["reason"] == "not ready (503): drain: draining"
        assert not await in_rotation(session, proxy)
        ready = registry.get("/health/ready")
        assert ready.status == 503
        assert json.loads(ready.body)["checks"] == {
            "database": "ok",
            "redis": "ok",
            "storage": "ok",
            "drain": "draining",
        }
        # Out of rotation but still serving: the proxy's last resort, and the registry answers.
        async with session.get(f"{proxy.url}/v2/") as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer realm=")

        said = wharf_drain(registry, "off")
        assert said.startswith("not draining")
        await wait_until(lambda: bool(events(proxy, "upstream_restored", registry.url)), "the return")
        assert await in_rotation(session, proxy)
        assert registry.get("/health/ready").status == 200
        assert len(events(proxy, "upstream_ejected", registry.url)) == 1  # no flapping
