"""Service processes for end-to-end tests and benchmarks: started on free ports, stopped cleanly."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(values: dict[str, str]) -> dict[str, str]:
    """The process environment minus every WHARF_* variable, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    env.update(values)
    return env


@dataclass
class ServiceProcess:
    name: str
    argv: list[str]
    env: dict[str, str]
    host: str
    port: int
    log_path: Path
    ready_path: str = "/health/ready"  # answers 200 once the process can serve
    scheme: str = "http"  # "https": readiness is checked without verifying the certificate
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT
        )
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{self.tail()}")
            try:
                context = ssl._create_unverified_context() if self.scheme == "https" else None  # noqa: S323
                ready = f"{self.url}{self.ready_path}"
                with urllib.request.urlopen(ready, timeout=2, context=context) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# Per service: its module and the variables that set its listening address.
_SERVICES = {
    "registry": ("wharf_registry", "WHARF_REGISTRY__HOST", "WHARF_REGISTRY__PORT"),
    "token": ("wharf_token", "WHARF_TOKEN__HOST", "WHARF_TOKEN__PORT"),
    "proxy": ("wharf_proxy", "WHARF_PROXY__HOST", "WHARF_HTTP_PORT"),
    "ui": ("wharf_ui", "WHARF_UI__HOST", "WHARF_UI__PORT"),
    "jobservice": ("wharf_jobservice", "WHARF_JOBSERVICE__HOST", "WHARF_JOBSERVICE__PORT"),
}
_COMMANDS = {"jobservice": ["events"]}


def service_process(
    service: str,
    env_values: dict[str, str],
    log_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    name: str | None = None,
    command: list[str] | None = None,
) -> ServiceProcess:
    """A `python -m wharf_<service>` process (not started) listening on host:port."""
    module, host_var, port_var = _SERVICES[service]
    name = name or service
    port = port or free_port(host)
    env = service_env({**env_values, host_var: host, port_var: str(port)})
    return ServiceProcess(
        name,
        [sys.executable, "-m", module, *(command if command is not None else _COMMANDS.get(service, []))],
        env,
        host,
        port,
        log_dir / f"{name}-{port}.log",
    )


def registry_process(env_values: dict[str, str], log_dir: Path, **where: Any) -> ServiceProcess:
    return service_process("registry", env_values, log_dir, **where)


def token_process(env_values: dict[str, str], log_dir: Path, **where: Any) -> ServiceProcess:
    return service_process("token", env_values, log_dir, **where)


def proxy_process(env_values: dict[str, str], log_dir: Path, **where: Any) -> ServiceProcess:
    return service_process("proxy", env_values, log_dir, **where)


def ui_process(env_values: dict[str, str], log_dir: Path, **where: Any) -> ServiceProcess:
    return service_process("ui", env_values, log_dir, **where)


def jobservice_process(env_values: dict[str, str], log_dir: Path, **where: Any) -> ServiceProcess:
    """`python -m wharf_jobservice events`: the events consumer."""
    return service_process("jobservice", env_values, log_dir, **where)


def jobservice_worker_process(env_values: dict[str, str], log_dir: Path, **where: Any) -> ServiceProcess:
    """`python -m wharf_jobservice worker`: Celery worker, replication engine, events consumer."""
    return service_process("jobservice", env_values, log_dir, command=["worker"], **where)
