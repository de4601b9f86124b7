"""`wharf run`: every service that exists, on one host, on embedded defaults.

SQLite and the filesystem under the data dir, and a private Redis (persisted under the data
dir) unless `WHARF_REDIS_URL` names one. Ctrl-C stops everything; a second run reuses the data.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from wharf_shared.config import Settings, mask_url


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def _say(message: str) -> None:
    print(message, flush=True)  # noqa: T201


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_http(url: str, child: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited with status {child.process.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback URL
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{child.name} did not answer {url} within {timeout:.0f}s")


def _start_redis(data_dir: Path) -> tuple[Child, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server is not installed (`make run` installs it) and WHARF_REDIS_URL is not set"
        )
    port = free_port()
    directory = data_dir / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(directory / "redis.log"),
        ],
        stdin=subprocess.DEVNULL,
    )
    child = Child("redis", process)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited ({process.returncode}); see {directory / 'redis.log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return child, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the private redis-server did not start")


def run_suite(settings: Settings) -> int:
    from wharf_shared.db.engine import Database
    from wharf_shared.db.migrate import upgrade
    from wharf_shared.setup import ensure_accounts, ensure_files

    env = dict(os.environ)
    data_dir = settings.data_dir.resolve()
    env["WHARF_DATA_DIR"] = str(data_dir)
    children: list[Child] = []
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        if "WHARF_REDIS_URL" not in os.environ:
            redis_child, redis_url = _start_redis(data_dir)
            children.append(redis_child)
            env["WHARF_REDIS_URL"] = redis_url

        async def migrate() -> None:
            db = Database(settings.effective_database_url, pool_size=1)
            try:
                await upgrade(db)
            finally:
                await db.close()

        asyncio.run(migrate())
        ensure_files(settings)
        accounts = asyncio.run(ensure_accounts(settings))

        token = settings.token
        token_url = f"http://{token.host}:{token.port}"
        reg = settings.registry
        registry_url = f"http://{reg.host}:{reg.port}"
        proxy_host = settings.proxy.host
        front_url = f"http://{proxy_host}:{settings.http_port}"
        # Clients see one address, the proxy's: the registry's challenge names it, and the
        # proxy sends /v2/ and /service/token on to the services on their own ports.
        env.setdefault("WHARF_EXTERNAL_URL", front_url)
        env.setdefault("WHARF_PROXY__UPSTREAMS__REGISTRY", registry_url)
        env.setdefault("WHARF_PROXY__UPSTREAMS__TOKEN", token_url)
        for name, module, url in (
            ("token", "wharf_token", token_url),
            ("registry", "wharf_registry", registry_url),
            ("proxy", "wharf_proxy", front_url),
        ):
            child = Child(name, subprocess.Popen([sys.executable, "-m", module], env=env))
            children.append(child)
            _wait_http(f"{url}/health", child)
        _banner(settings, env["WHARF_EXTERNAL_URL"], accounts.admin_password)
        while not stopping:
            for child in children:
                if child.process.poll() is not None:
                    _say(f"wharf: {child.name} exited with status {child.process.returncode}; stopping")
                    return 1
            time.sleep(0.5)
        return 0
    except RuntimeError as exc:
        _say(f"wharf: {exc}")
        return 1
    finally:
        _stop_all(children)


def _stop_all(children: list[Child]) -> None:
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    for child in reversed(children):
        try:
            child.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.process.kill()
    if children:
        _say("wharf: stopped")


def _banner(settings: Settings, front_url: str, new_admin_password: str | None) -> None:
    host = front_url.split("://", 1)[1].rstrip("/")
    if new_admin_password:
        admin_line = f"  admin:     admin / {new_admin_password}   (generated now and shown once: note it)"
    elif settings.admin_password:
        admin_line = "  admin:     admin / the password in WHARF_ADMIN_PASSWORD"
    else:
        admin_line = "  admin:     admin / the password printed by the first `make run` (or `wharf init`)"
    tls = "" if front_url.startswith("https://") else "--tls-verify=false "
    dest_tls = "" if front_url.startswith("https://") else "--dest-tls-verify=false "
    lines = [
        "",
        f"Wharf is running at {front_url}",
        admin_line,
        f"  data:      {settings.data_dir.resolve()}",
        f"  database:  {mask_url(settings.effective_database_url)}",
        "",
        "Push and pull an image (library is public; anonymous pulls work while anonymous access is on):",
        f"  skopeo copy {dest_tls}--dest-creds admin:PASSWORD \\",
        f"      docker://docker.io/library/alpine:latest docker://{host}/library/hello:latest",
        f"  skopeo inspect {tls}docker://{host}/library/hello:latest",
        f"  docker login {host}   (plain HTTP: list {host} in the daemon's insecure-registries)",
        f"  docker push {host}/library/hello:latest",
        "",
        "Ctrl-C stops every service.",
    ]
    _say("\n".join(lines))
