"""Instances come and go behind the proxy, and clients do not notice.

Two registry instances (127.0.0.2, 127.0.0.3) and two token instances (127.0.0.4, 127.0.0.5)
share PostgreSQL, Redis and the storage directory behind one proxy (127.0.0.1). While 30
images are pushed and pulled by skopeo (two at a time, logged in through the proxy), one
registry and one token instance are killed with SIGKILL and later restarted; then the other
registry is killed and restarted too. Every skopeo command must succeed, and every image must
come back with the digest it was pushed with.

skopeo runs with `--retry-times 3`, as docker retries a failed layer upload on its own; the
proxy rarely leaves it anything to retry: a PATCH or PUT whose body it held whole (up to
`WHARF_PROXY__RETRY_BODY_BYTES`) and lost inside a killed instance is sent again to the other
one under the proxy's write id (taken once), larger bodies and blob downloads it continues on
the other instance itself (tests/e2e/test_transfer_continuation.py), and everything else
(connects refused by a dead instance, token requests, reads) it moves to the other instance
without the client seeing an error.

A proxy dies too: of two proxies in front of the same instances (as behind one load-balanced
address), one is killed outright while pulls go through both; only what was in flight through
it is lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import psutil
import pytest

from tests.e2e.conftest import Registry, Skopeo, make_skopeo
from tests.images import make_image, write_layout
from tests.support import backends, wire
from tests.support.oci import V2, digest_of, image_manifest
from tests.support.processes import ServiceProcess
from tests.support.suite import Suite, start_suite

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

IMAGES = 30
PACE_SECONDS = 0.8  # image i starts no earlier than this many seconds times i
ADMIN_PASSWORD = "failover-admin-password"


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[Suite]:
    with (
        backends.fresh_database("postgresql", str(tmp_path)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        suite = start_suite(
            tmp_path,
            database_url,
            redis_url,
            admin_password=ADMIN_PASSWORD,
            registry_hosts=("127.0.0.2", "127.0.0.3"),
            token_hosts=("127.0.0.4", "127.0.0.5"),
            extra_env={"WHARF_PROXY__EJECT_SECONDS": "3"},
        )
        try:
            yield suite
        finally:
            suite.stop()


def sha256_file(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.timeout(600)
def test_instances_killed_and_restarted_under_load(suite: Suite, tmp_path: Path) -> None:
    registry = Registry(suite.registries[0], "token", "postgresql", suite.data_dir, None)
    layouts = []
    for i in range(IMAGES):
        layout = tmp_path / "images" / str(i)
        # Layers of 1 to 4 MiB: each push spends long enough in its uploads to be hit.
        write_layout(layout, [make_image(f"failover-{i}", layer_sizes=(1024 * 1024 * (1 + i % 4), 4096))])
        layouts.append(layout)
    (tmp_path / "pulled").mkdir()
    skopeo = make_skopeo(registry, tmp_path / "skopeo")
    skopeo.ok("login", "--tls-verify=false", "-u", "admin", "-p", ADMIN_PASSWORD, suite.address)

    done = 0
    lock = threading.Lock()
    failures: list[str] = []
    pushed: dict[int, str] = {}
    pulled: dict[int, str] = {}

    def run(client: Skopeo, *args: str) -> None:
        result = client.run(*args)
        if result.returncode != 0:
            failures.append(client.describe(result) + "\n" + suite.logs(15))

    began = time.monotonic()

    def push_and_pull(i: int) -> None:
        nonlocal done
        # Paced, so that the traffic outlasts every kill and restart (a restart takes seconds).
        time.sleep(max(0.0, began + i * PACE_SECONDS - time.monotonic()))
        digest_file = tmp_path / f"digest-{i}"
        run(
            skopeo,
            "copy",
            "--retry-times=3",
            "--dest-tls-verify=false",
            f"--digestfile={digest_file}",
            f"oci:{layouts[i]}:latest",
            suite.ref(f"library/failover-{i}:1"),
        )
        if digest_file.exists():
            pushed[i] = digest_file.read_text().strip()
        target = tmp_path / "pulled" / str(i)
        run(
            skopeo,
            "copy",
            "--retry-times=3",
            "--src-tls-verify=false",
            suite.ref(f"library/failover-{i}:1"),
            f"dir:{target}",
        )
        if (target / "manifest.json").exists():
            pulled[i] = sha256_file(target / "manifest.json")
            # Every blob pulled back hashes to its name.
            for blob in target.iterdir():
                if blob.name not in ("manifest.json", "version"):
                    assert sha256_file(blob) == "sha256:" + blob.name, blob
        with lock:
            done += 1

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 300
        while done < count and time.monotonic() < deadline:
            time.sleep(0.05)

    events: list[str] = []

    def chaos() -> None:
        first_registry, second_registry = suite.registries
        first_token = suite.tokens[0]
        wait_for(4)
        first_registry.kill()
        first_token.kill()
        events.append(f"killed {first_registry.name} and {first_token.name} after {done} images")
        wait_for(10)
        restarts = [threading.Thread(target=p.start) for p in (first_registry, first_token)]
        for thread in restarts:
            thread.start()
        for thread in restarts:
            thread.join()
        events.append(f"restarted them after {done} images")
        wait_for(16)
        second_registry.kill()
        events.append(f"killed {second_registry.name} after {done} images")
        wait_for(20)
        second_registry.start()
        events.append(f"restarted it after {done} images")

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    chaos_thread.start()
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(push_and_pull, range(IMAGES)))
    chaos_thread.join(timeout=60)

    assert len(events) == 4, events
    # Each kill and restart happened while images were still moving.
    assert all(int(event.rsplit(" after ", 1)[1].split()[0]) < IMAGES for event in events), events
    assert not failures, f"{len(failures)} failed client operations ({events}):\n" + "\n\n".join(failures[:3])
    assert sorted(pushed) == list(range(IMAGES))
    for i in range(IMAGES):
        assert pulled.get(i) == pushed[i], (i, pushed[i], pulled.get(i))
    # Both registry instances served requests (the proxy spread the load and came back to each).
    lines = [
        json.loads(line) for line in suite.proxy.log_path.read_text().splitlines() if line.startswith("{")
    ]
    access = [entry for entry in lines if entry.get("event") == "access"]
    upstreams = {entry.get("upstream") for entry in access if entry.get("pool") == "registry"}
    assert {f"http://{p.host}:{p.port}" for p in suite.registries} <= upstreams
    # The proxy saw the dead instances (connects refused, health checks failing) and took them out.
    ejected = {entry["upstream"] for entry in lines if entry.get("event") == "upstream_ejected"}
    assert {p.url for p in [*suite.registries, suite.tokens[0]]} <= ejected, ejected


def kill_all(process: ServiceProcess) -> None:
    """SIGKILL a service and its workers at once, as the death of its host would."""
    assert process.process is not None
    family = [psutil.Process(process.pid), *psutil.Process(process.pid).children()]
    for member in family:
        member.send_signal(signal.SIGKILL)
    process.process.wait()


@pytest.fixture
def two_proxies(tmp_path: Path) -> Iterator[Suite]:
    with (
        backends.fresh_database("postgresql", str(tmp_path)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        suite = start_suite(
            tmp_path, database_url, redis_url, admin_password=ADMIN_PASSWORD, more_proxy_hosts=("127.0.0.6",)
        )
        try:
            yield suite
        finally:
            suite.stop()


@pytest.mark.timeout(300)
async def test_a_proxy_killed_leaves_the_others_serving(two_proxies: Suite) -> None:
    """Two proxies in front of the same instances, as behind one load-balanced address: one is
    killed (SIGKILL, every process of it) while pulls go through both. Pulls through the other
    all succeed; through the dead one, only those in flight when it died are lost, and nothing
    answers there afterwards (a client, or the balancer, turns to the other)."""
    await pull_through_both_while_one_dies(two_proxies)


async def pull_through_both_while_one_dies(suite: Suite) -> None:
    survivor, doomed = suite.proxies
    name = "library/through-two"
    layer = os.urandom(4 * 1024 * 1024)  # large enough to be caught mid-transfer
    credentials = {"Authorization": aiohttp.encode_basic_auth("admin", ADMIN_PASSWORD)}
    async with aiohttp.ClientSession() as session:

        async def token(base: str, actions: str) -> dict[str, str]:
            params = {"service": "wharf-registry", "scope": f"repository:{name}:{actions}"}
            async with session.get(f"{base}/service/token", params=params, headers=credentials) as resp:
                assert resp.status == 200, await resp.text()
                return {"Authorization": f"Bearer {(await resp.json())['token']}"}

        v2 = V2(_Base(session, survivor.url), await token(survivor.url, "pull,push"))
        config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        await v2.push_blob(name, config)
        layer_digest = await v2.push_blob_chunked(name, layer, 512 * 1024)
        manifest = image_manifest(config, [layer])
        assert (await v2.push_manifest(name, "1", manifest)).status == 201
        digest = digest_of(manifest)
        results: dict[str, list[tuple[bool, bool]]] = {
            survivor.url: [],
            doomed.url: [],
        }  # (ok, after the kill)
        killed = asyncio.Event()
        stop = asyncio.Event()

        async def pull(base: str, headers: dict[str, str]) -> None:
            while not stop.is_set():
                after = killed.is_set()
                try:
                    async with session.get(f"{base}/v2/{name}/manifests/1", headers=headers) as resp:
                        assert resp.status == 200
                        assert "sha256:" + hashlib.sha256(await resp.read()).hexdigest() == digest
                    async with session.get(f"{base}/v2/{name}/blobs/{layer_digest}", headers=headers) as resp:
                        assert resp.status == 200
                        assert "sha256:" + hashlib.sha256(await resp.read()).hexdigest() == layer_digest
                    results[base].append((True, after))
                except (aiohttp.ClientError, OSError):
                    results[base].append((False, after))
                    await asyncio.sleep(0.05)

        def done(base: str, after: bool) -> int:
            return sum(1 for ok, late in results[base] if ok and late == after)

        pullers = [
            asyncio.create_task(pull(base, await token(base, "pull")))
            for base in (survivor.url, doomed.url)
            for _ in range(2)
        ]
        try:
            await wire.wait_until(
                lambda: min(done(survivor.url, False), done(doomed.url, False)) >= 5, "pulls"
            )
            await asyncio.to_thread(kill_all, doomed)
            killed.set()
            await wire.wait_until(lambda: done(survivor.url, True) >= 20, "pulls after the kill")
        finally:
            stop.set()
            await asyncio.gather(*pullers)
    assert all(ok for ok, _after in results[survivor.url]), results[survivor.url]
    lost_in_flight = [ok for ok, after in results[doomed.url] if not after and not ok]
    assert len(lost_in_flight) <= 2  # the two pullers' requests in flight, at most
    assert not any(ok for ok, after in results[doomed.url] if after)


class _Base:
    """An aiohttp session bound to one base URL, as V2 expects of a client."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def request(self, method: str, path: str, **kwargs: object) -> aiohttp.ClientResponse:
        return await self.session.request(method, self.base + path, **kwargs)  # type: ignore[arg-type]
