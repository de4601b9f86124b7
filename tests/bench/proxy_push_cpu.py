"""The proxy's CPU per GiB of upload bodies it forwards, with and without its spool.

`python -m tests.bench.proxy_push_cpu [--gib 1] [--rounds 3] [--code DIR]`: a registry (no auth,
SQLite, the filesystem) and one proxy worker process; per round and per configuration (the
spool as configured by default, and `WHARF_PROXY__SPOOL_BYTES=0`: no spool, no status asked
before the body), `--gib` GiB pushed through the proxy as 256 MiB PATCHes from memory. Prints the
proxy process's CPU seconds (user + system, its threads included) per GiB, the median of the
rounds. `--code DIR` runs the proxy from another checkout's source tree (the code before a
change), with the spool setting left out.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from tests.bench.machine import tree_cpu_seconds
from tests.support import backends
from tests.support.processes import ServiceProcess, free_port, proxy_process, registry_process

MiB = 1024 * 1024
PATCH = 256 * MiB
PACKAGES = (("wharf_proxy", "services/proxy"), ("wharf_shared", "shared"))  # what the proxy imports


async def push(url: str, body: bytes, count: int) -> None:
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(base_url=url, timeout=timeout) as session:
        for i in range(count):
            resp = await session.post(f"/v2/bench/cpu-{i}/blobs/uploads/")
            assert resp.status == 202, await resp.text()

            async def pieces() -> AsyncIterator[memoryview]:
                view = memoryview(body)
                for start in range(0, len(body), MiB):
                    yield view[start : start + MiB]

            resp = await session.patch(
                resp.headers["Location"], data=pieces(), headers={"Content-Length": str(len(body))}
            )
            assert resp.status == 202, await resp.text()
            resp = await session.put(resp.headers["Location"], params={"digest": digest})
            assert resp.status == 201, await resp.text()


def proxy_env(
    base: dict[str, str], registry: ServiceProcess, spool: bool, code: Path | None
) -> dict[str, str]:
    env = {
        **base,
        "WHARF_PROXY__UPSTREAMS__REGISTRY": registry.url,
        "WHARF_PROXY__UPSTREAMS__TOKEN": "",
        "WHARF_PROXY__WORKERS": "1",
    }
    if code is None and not spool:
        env["WHARF_PROXY__SPOOL_BYTES"] = "0"
    return env


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.proxy_push_cpu", description=__doc__)
    parser.add_argument("--gib", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--code", type=Path, help="another checkout whose proxy to measure (the code before)")
    args = parser.parse_args()
    body = os.urandom(PATCH)
    count = args.gib * 1024 * MiB // PATCH
    configs = ["before"] if args.code else ["spool", "no spool"]
    results: dict[str, list[float]] = {name: [] for name in configs}
    with tempfile.TemporaryDirectory() as tmp, backends.leased_redis_db() as redis_url:
        database_url = f"sqlite:///{tmp}/wharf.db"
        backends.migrate(database_url)
        base = {
            "WHARF_DATA_DIR": f"{tmp}/data",
            "WHARF_DATABASE_URL": database_url,
            "WHARF_REDIS_URL": redis_url,
            "WHARF_REGISTRY__AUTH": "none",
        }
        registry = registry_process(base, Path(tmp) / "logs").start()
        try:
            for round_ in range(args.rounds):
                for name in configs:
                    env = proxy_env(base, registry, name == "spool", args.code)
                    proxy = proxy_process(env, Path(tmp) / "logs", port=free_port(), name=f"proxy-{round_}")
                    if args.code is not None:
                        # The other tree's packages first on the path (before the editable install's).
                        paths = Path(tmp) / "code"
                        paths.mkdir(exist_ok=True)
                        for package, folder in PACKAGES:
                            link = paths / package
                            if not link.exists():
                                link.symlink_to((args.code / folder).resolve())
                        proxy.env["PYTHONPATH"] = str(paths)
                    proxy.start()
                    try:
                        before = tree_cpu_seconds(proxy.pid)
                        asyncio.run(push(proxy.url, body, count))
                        results[name].append((tree_cpu_seconds(proxy.pid) - before) / args.gib)
                    finally:
                        proxy.stop()
        finally:
            registry.stop()
    for name, values in results.items():
        rounds = ", ".join(f"{v:.2f}" for v in values)
        sys.stdout.write(f"{name:9} {statistics.median(values):.2f} CPU s/GiB (rounds: {rounds})\n")


if __name__ == "__main__":
    main()
