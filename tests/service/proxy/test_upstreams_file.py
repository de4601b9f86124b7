"""Pools from an upstreams file (`WHARF_PROXY__UPSTREAMS_FILE`), re-read while the proxy serves:
instances that come get requests once their first health check passes, those that leave get none,
a pool emptied or filled answers 404 or relays, and a file that will not do changes nothing.
One process here; tests/e2e/test_proxy_reload.py has two workers and SIGHUP."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.service.proxy.test_proxy import dead_url, proxy_client, url
from tests.support import wire
from tests.support.upstream import SEEN, start_upstream
from wharf_proxy.app import create_app
from wharf_proxy.board import CHECK_FAILURES
from wharf_proxy.keys import POOLS, RELOADER
from wharf_proxy.upstreams_file import UpstreamsFileError, signature
from wharf_shared.config import Settings

Client = TestClient  # type: ignore[type-arg]


def write_atomically(path: Path, text: str) -> None:
    """As Ansible's `template` does: a temporary file in the same directory, renamed over."""
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(text)
    os.replace(staged, path)


def pools_text(registry: list[str], token: list[str] | None = None) -> str:
    quoted = ", ".join(f'"{u}"' for u in registry)
    text = f"registry = [{quoted}]\n"
    if token:
        text += "token = [" + ", ".join(f'"{u}"' for u in token) + "]\n"
    return text


def file_settings(tmp_path: Path, path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        external_url="https://registry.example.com",
        proxy={"upstreams_file": path, "health_interval_seconds": 0.05},  # type: ignore[arg-type]
    )


@pytest.fixture
async def servers() -> AsyncIterator[list[TestServer]]:
    started = [await start_upstream("a"), await start_upstream("b")]
    yield started
    for server in started:
        await server.close()


def registry_urls(client: Client) -> list[str]:
    return [u.url for u in client.app[POOLS]["registry"].upstreams]


async def reloaded(client: Client, path: Path) -> None:
    """Until the proxy has read the file as it is now (well or not)."""
    reloader = client.app[RELOADER]
    await wire.wait_until(lambda: reloader.seen == signature(path), "the file to be re-read")


async def answered_by(client: Client, times: int) -> list[str]:
    labels = []
    for _ in range(times):
        resp = await client.get("/v2/some/repo/tags/list")
        assert resp.status == 200, await resp.text()
        labels.append((await resp.json())["upstream"])
    return labels


async def test_the_pools_follow_the_file(
    aiohttp_client: Any, tmp_path: Path, servers: list[TestServer]
) -> None:
    a, b = servers
    path = tmp_path / "upstreams.toml"
    write_atomically(path, pools_text([url(a)]))
    client = await proxy_client(aiohttp_client, file_settings(tmp_path, path))
    assert set(await answered_by(client, 4)) == {"a"}
    assert (await client.get("/service/token")).status == 404  # no token instance listed

    write_atomically(path, pools_text([url(a), url(b)], token=[url(b)]))
    await reloaded(client, path)
    assert registry_urls(client) == [url(a), url(b)]
    new = client.app[POOLS]["registry"].upstreams[1]
    await wire.wait_until(lambda: new.in_rotation, "b's first passing check")
    assert set(await answered_by(client, 8)) == {"a", "b"}
    assert (await client.get("/service/token")).status == 200  # the pool got its routes' instance
    report = await (await client.get("/health/upstreams")).json()
    assert [u["url"] for u in report["pools"]["registry"]["upstreams"]] == [url(a), url(b)]
    metrics = await (await client.get("/metrics")).text()
    assert f'wharf_proxy_upstream_healthy{{pool="registry",upstream="{url(b)}"}} 1.0' in metrics

    write_atomically(path, pools_text([url(b)]))
    await reloaded(client, path)
    seen_by_a = len(a.app[SEEN])
    assert set(await answered_by(client, 8)) == {"b"}
    assert len(a.app[SEEN]) == seen_by_a
    metrics = await (await client.get("/metrics")).text()
    assert f'upstream="{url(a)}"}} ' not in metrics.split("wharf_proxy_upstream_healthy", 1)[1]
    assert (await client.get("/service/token")).status == 404  # emptied again


@pytest.mark.parametrize(
    "broken",
    [
        'registry = ["http://127.0.0.1:5000"',  # cut off mid-write (not TOML)
        'registry = ["127.0.0.1:5000"]',  # not a URL
        'registri = ["http://127.0.0.1:5000"]',  # a typo
    ],
)
async def test_a_file_that_will_not_do_keeps_the_pools(
    aiohttp_client: Any, tmp_path: Path, servers: list[TestServer], broken: str
) -> None:
    a, _ = servers
    path = tmp_path / "upstreams.toml"
    write_atomically(path, pools_text([url(a)]))
    client = await proxy_client(aiohttp_client, file_settings(tmp_path, path))
    write_atomically(path, broken)
    await reloaded(client, path)
    assert registry_urls(client) == [url(a)]
    assert set(await answered_by(client, 3)) == {"a"}
    path.unlink()  # gone altogether: the same
    await reloaded(client, path)
    assert registry_urls(client) == [url(a)]
    assert set(await answered_by(client, 3)) == {"a"}


async def test_an_instance_added_before_its_service_is_up_gets_no_requests(
    aiohttp_client: Any, tmp_path: Path, servers: list[TestServer]
) -> None:
    """A host put in the inventory before its service runs: it waits, out of rotation, for a
    passing check; requests go on to the instances in rotation, and the proxy stays ready."""
    a, _ = servers
    path = tmp_path / "upstreams.toml"
    write_atomically(path, pools_text([url(a)]))
    settings = file_settings(tmp_path, path)
    client = await proxy_client(aiohttp_client, settings)
    dead = dead_url()
    write_atomically(path, pools_text([dead, url(a)]))
    await reloaded(client, path)
    pool = client.app[POOLS]["registry"]
    assert registry_urls(client) == [dead, url(a)]
    checks = settings.proxy.eject_after_failures + 2
    await wire.wait_until(
        lambda: pool.upstreams[0].board.get(pool.upstreams[0].slot, CHECK_FAILURES) >= checks, "checks"
    )
    assert pool.upstreams[0].state == "new"
    assert set(await answered_by(client, 6)) == {"a"}
    assert (await client.get("/health/ready")).status == 200
    report = await (await client.get("/health/upstreams")).json()
    assert report["pools"]["registry"]["upstreams"][0]["state"] == "new"


def test_a_file_that_will_not_do_at_start_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.toml"
    path.write_text('registry = ["http://127.0.0.1:5000"')
    with pytest.raises(UpstreamsFileError, match="not TOML"):
        create_app(file_settings(tmp_path, path))
