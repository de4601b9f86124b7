"""Instances come and go behind the proxy, and clients do not notice.

Two registry instances (127.0.0.2, 127.0.0.3) and two token instances (127.0.0.4, 127.0.0.5)
share PostgreSQL, Redis and the storage directory behind one proxy (127.0.0.1). While 30
images are pushed and pulled by skopeo (two at a time, logged in through the proxy), one
registry and one token instance are killed with SIGKILL and later restarted; then the other
registry is killed and restarted too. Every skopeo command must succeed, and every image must
come back with the digest it was pushed with.

skopeo runs with `--retry-times 3`, as docker retries a failed layer upload on its own: a
PATCH whose body the proxy held whole (up to `WHARF_PROXY__RETRY_BODY_BYTES`) and lost inside a
killed instance is not sent again, so the client starts that blob again (on the surviving
instance); larger bodies and blob downloads the proxy continues on the other instance itself
(tests/e2e/test_transfer_continuation.py). Everything else (connects refused by a dead
instance, token requests, reads) the proxy moves to the other instance without the client
seeing an error.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.conftest import Registry, Skopeo, make_skopeo
from tests.images import make_image, write_layout
from tests.support import backends
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
