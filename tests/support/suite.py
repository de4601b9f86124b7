"""The whole suite as processes: token and registry instances behind one or more proxies, and
job service events consumers, on loopback addresses of their own, sharing one database, Redis and
data dir (keys, filesystem storage). The first proxy's address is the suite's external URL; the
others serve it too (as proxies behind one load-balanced address do)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.processes import (
    ServiceProcess,
    free_port,
    jobservice_process,
    proxy_process,
    registry_process,
    token_process,
    ui_process,
)
from wharf_shared.config import Settings
from wharf_shared.setup import ensure_accounts, ensure_files


@dataclass
class Suite:
    data_dir: Path
    env: dict[str, str]
    registries: list[ServiceProcess]
    tokens: list[ServiceProcess]
    proxies: list[ServiceProcess]
    log_dir: Path
    uis: list[ServiceProcess] = field(default_factory=list)
    jobservices: list[ServiceProcess] = field(default_factory=list)
    stopped: list[ServiceProcess] = field(default_factory=list)

    @property
    def proxy(self) -> ServiceProcess:
        return self.proxies[0]

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def address(self) -> str:
        return f"{self.proxy.host}:{self.proxy.port}"

    def ref(self, name: str) -> str:
        return f"docker://{self.address}/{name}"

    def processes(self) -> list[ServiceProcess]:
        return [*self.proxies, *self.registries, *self.tokens, *self.uis, *self.jobservices]

    def stop(self) -> None:
        for process in self.processes():
            process.stop()

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"--- {p.name} ({p.log_path}) ---\n{p.tail(lines)}" for p in self.processes())


def init_site(
    tmp: Path,
    database_url: str,
    redis_url: str,
    *,
    admin_password: str,
    populate: Callable[[Settings], Coroutine[Any, Any, None]] | None = None,
) -> Path:
    """What `wharf init` does (keys, admin, `library`), then `populate`; returns the data dir."""
    data_dir = tmp / "data"
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        redis_url=redis_url,
        admin_password=admin_password,
    )
    ensure_files(settings)
    asyncio.run(ensure_accounts(settings))
    if populate is not None:
        asyncio.run(populate(settings))
    return data_dir


def start_suite(
    tmp: Path,
    database_url: str,
    redis_url: str,
    *,
    admin_password: str,
    registry_hosts: tuple[str, ...] = ("127.0.0.1",),
    token_hosts: tuple[str, ...] = ("127.0.0.1",),
    proxy_host: str = "127.0.0.1",
    more_proxy_hosts: tuple[str, ...] = (),
    ui_hosts: tuple[str, ...] = (),
    jobservice_hosts: tuple[str, ...] = ("127.0.0.1",),
    extra_env: dict[str, str] | None = None,
    populate: Callable[[Settings], Coroutine[Any, Any, None]] | None = None,
) -> Suite:
    """Init the data dir and accounts (then `populate`), start every process, ready to serve."""
    data_dir = init_site(tmp, database_url, redis_url, admin_password=admin_password, populate=populate)
    proxy_port = free_port(proxy_host)
    more_proxy_ports = [free_port(h) for h in more_proxy_hosts]
    registry_ports = [free_port(h) for h in registry_hosts]
    token_ports = [free_port(h) for h in token_hosts]
    ui_ports = [free_port(h) for h in ui_hosts]
    jobservice_ports = [free_port(h) for h in jobservice_hosts]
    env = {
        "WHARF_DATA_DIR": str(data_dir),
        "WHARF_DATABASE_URL": database_url,
        "WHARF_REDIS_URL": redis_url,
        "WHARF_DATABASE_POOL_SIZE": "5",
        "WHARF_EXTERNAL_URL": f"http://{proxy_host}:{proxy_port}",
        "WHARF_REGISTRY__AUTH": "token",
        "WHARF_PROXY__UPSTREAMS__REGISTRY": ",".join(
            f"http://{h}:{p}" for h, p in zip(registry_hosts, registry_ports, strict=True)
        ),
        "WHARF_PROXY__UPSTREAMS__TOKEN": ",".join(
            f"http://{h}:{p}" for h, p in zip(token_hosts, token_ports, strict=True)
        ),
        "WHARF_PROXY__UPSTREAMS__UI": ",".join(
            f"http://{h}:{p}" for h, p in zip(ui_hosts, ui_ports, strict=True)
        ),
        "WHARF_PROXY__HEALTH_INTERVAL_SECONDS": "0.5",
        **(extra_env or {}),
    }
    logs = tmp / "logs"
    suite = Suite(
        data_dir,
        env,
        [
            registry_process(env, logs, host=h, port=p, name=f"registry-{h}")
            for h, p in zip(registry_hosts, registry_ports, strict=True)
        ],
        [
            token_process(env, logs, host=h, port=p, name=f"token-{h}")
            for h, p in zip(token_hosts, token_ports, strict=True)
        ],
        [
            proxy_process(env, logs, host=proxy_host, port=proxy_port),
            *(
                proxy_process(env, logs, host=h, port=p, name=f"proxy-{h}")
                for h, p in zip(more_proxy_hosts, more_proxy_ports, strict=True)
            ),
        ],
        logs,
        [
            ui_process(env, logs, host=h, port=p, name=f"ui-{h}")
            for h, p in zip(ui_hosts, ui_ports, strict=True)
        ],
        [
            jobservice_process(env, logs, host=h, port=p, name=f"jobservice-{h}")
            for h, p in zip(jobservice_hosts, jobservice_ports, strict=True)
        ],
    )
    try:
        # Side by side (each start waits for its readiness): the proxies (and the events consumers) last.
        for wave in ([*suite.tokens, *suite.registries, *suite.uis], [*suite.proxies, *suite.jobservices]):
            with ThreadPoolExecutor(len(wave)) as pool:
                list(pool.map(ServiceProcess.start, wave))
    except BaseException:
        suite.stop()
        raise
    return suite
