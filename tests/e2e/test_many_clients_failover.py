"""Sixteen clients keep logging in and pushing while instances die, and none of them notices.

Two registries (127.0.0.2, .3) and two token services (.4, .5) share PostgreSQL, Redis and one
storage directory behind two proxies (127.0.0.1, the external URL that token challenges name,
and 127.0.0.6, as two proxies behind one load-balanced address). Sixteen skopeo clients, half
through each proxy, each with its own credentials, log in and push small images (three small
layers, new bytes every time) over and over. Meanwhile a token instance is SIGKILLed, restarted,
then the other one is killed; and a registry instance is killed once. skopeo runs WITHOUT
`--retry-times`: every command must succeed, and every image pushed pulls back (through the
other proxy) with the digest it was pushed with.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import Registry, Skopeo, make_skopeo
from tests.images import make_image, write_layout
from tests.support import backends
from tests.support.processes import ServiceProcess
from tests.support.suite import Suite, start_suite

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLIENTS = 16
ADMIN_PASSWORD = "many-clients-admin-password"
LAYERS = (12_000, 40_000, 90_000)
# Commands that complete between two steps of the chaos: each kill lands in steady traffic.
STEP = 24


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
            more_proxy_hosts=("127.0.0.6",),
            extra_env={"WHARF_PROXY__EJECT_SECONDS": "3"},
        )
        try:
            yield suite
        finally:
            suite.stop()


@dataclass(frozen=True)
class Push:
    client: int
    ref: str  # repository:tag
    digest: str
    proxy: int  # index into suite.proxies


def address(process: ServiceProcess) -> str:
    return f"{process.host}:{process.port}"


def sha256_file(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.timeout(300)
def test_sixteen_clients_push_through_two_proxies_while_instances_die(suite: Suite, tmp_path: Path) -> None:
    explain = Registry(suite.registries[0], "token", "postgresql", suite.data_dir, None)
    lock = threading.Lock()
    failures: list[str] = []
    pushes: list[Push] = []
    completed = [0]  # skopeo commands that succeeded
    stop = threading.Event()

    def run(client: Skopeo, *args: str) -> bool:
        result = client.run(*args)
        with lock:
            if result.returncode != 0:
                failures.append(client.describe(result) + "\n" + suite.logs(12))
                return False
            completed[0] += 1
        return True

    def pusher(c: int) -> None:
        proxy_index = c % 2
        here = address(suite.proxies[proxy_index])
        skopeo = make_skopeo(explain, tmp_path / "clients" / str(c))
        round_ = 0
        while not stop.is_set():
            round_ += 1
            if not run(skopeo, "login", "--tls-verify=false", "-u", "admin", "-p", ADMIN_PASSWORD, here):
                continue  # a failure is a failure: the next round is a new login, not a retry
            layout = tmp_path / "images" / f"{c}-{round_}"
            write_layout(layout, [make_image(f"many-{c}-{round_}", layer_sizes=LAYERS)])
            ref = f"library/many-{c}:{round_}"
            digest_file = tmp_path / "digests" / f"{c}-{round_}"
            digest_file.parent.mkdir(exist_ok=True)
            if run(
                skopeo,
                "copy",
                "--dest-tls-verify=false",
                f"--digestfile={digest_file}",
                f"oci:{layout}:latest",
                f"docker://{here}/{ref}",
            ):
                with lock:
                    pushes.append(Push(c, ref, digest_file.read_text().strip(), proxy_index))

    events: list[str] = []

    def after(steps: int) -> int:
        """Wait until `steps` more commands succeeded (or the clients stopped); the count then."""
        with lock:
            target = completed[0] + steps
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stop.is_set():
            with lock:
                if completed[0] >= target:
                    return completed[0]
            time.sleep(0.05)
        raise AssertionError(f"traffic stalled at {completed[0]} commands ({events}; {len(failures)} failed)")

    def chaos() -> None:
        first_token, second_token = suite.tokens
        first_registry = suite.registries[0]
        steps: list[tuple[str, Callable[[], None]]] = [
            (f"killed {first_token.name}", first_token.kill),
            (f"restarted {first_token.name}", first_token.start),
            (f"killed {second_token.name}", second_token.kill),
            (f"killed {first_registry.name}", first_registry.kill),
        ]
        try:
            for what, action in steps:
                at = after(STEP)
                action()
                events.append(f"{what} after {at} commands")
            after(STEP)
        finally:
            stop.set()

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    chaos_thread.start()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        for done in [pool.submit(pusher, c) for c in range(CLIENTS)]:
            done.result()
    chaos_thread.join(timeout=60)

    assert len(events) == 4, (events, failures[:1])
    assert not failures, f"{len(failures)} failed client operations ({events}):\n" + "\n\n".join(failures[:3])
    assert {p.proxy for p in pushes} == {0, 1}

    # Every image, pulled back through the other proxy, is the one pushed.
    puller = make_skopeo(explain, tmp_path / "puller")
    (tmp_path / "pulled").mkdir()

    def pull(push: Push) -> str | None:
        other = address(suite.proxies[1 - push.proxy])
        target = tmp_path / "pulled" / push.ref.replace("/", "_").replace(":", "_")
        result = puller.run(
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            f"admin:{ADMIN_PASSWORD}",
            f"docker://{other}/{push.ref}",
            f"dir:{target}",
        )
        if result.returncode != 0:
            return puller.describe(result)
        if sha256_file(target / "manifest.json") != push.digest:
            return f"{push.ref}: pulled {sha256_file(target / 'manifest.json')}, pushed {push.digest}"
        for blob in target.iterdir():
            if blob.name not in ("manifest.json", "version") and sha256_file(blob) != "sha256:" + blob.name:
                return f"{push.ref}: blob {blob.name} does not hash to its name"
        return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        wrong = [problem for problem in pool.map(pull, pushes) if problem is not None]
    assert not wrong, f"{len(wrong)} of {len(pushes)} images did not come back:\n" + "\n\n".join(wrong[:3])
