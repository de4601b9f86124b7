"""`wharf run`: every service that exists, on one host, on embedded defaults.

SQLite and the filesystem under the data dir, and a private Redis (persisted under the data
dir) unless `WHARF_REDIS_URL` names one. Ctrl-C stops everything; a second run reuses the data.

The supervisor lives as long as the suite, so it imports nothing but the standard library: the
settings, migrations and `init` (pydantic, SQLAlchemy, Alembic, argon2: ~90 MiB) run in a forked
child that hands back what the supervisor needs (`Plan`) and exits.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from wharf_shared.config import Settings

# Two malloc arenas per service process: its threads (SQLite connections, S3 calls, the
# default executor) would otherwise each keep an arena of freed memory.
CHILD_ENV_DEFAULTS = {"MALLOC_ARENA_MAX": "2"}


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


@dataclass(frozen=True)
class Service:
    name: str
    module: str
    host: str
    port: int
    args: tuple[str, ...] = ()  # after `python -m <module>`
    # Started with the other forked services as forks of one process (wharf_shared.forks), sharing
    # the pages of the modules they all load.
    forked: bool = False

    @property
    def spec(self) -> str:
        return ":".join([self.module, ",".join(self.args)]) if self.args else self.module

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class Plan:
    """What the supervisor needs, worked out (with the settings) by the preparing child."""

    data_dir: str
    env: dict[str, str]  # set in every service's environment
    env_defaults: dict[str, str]  # set unless the environment already has them
    services: list[Service]
    banner: str
    # Modules the parent of the forked services loads for them all (wharf_shared.forks --preload).
    preload: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        fields: dict[str, Any] = json.loads(text)
        fields["services"] = [Service(**{**s, "args": tuple(s["args"])}) for s in fields["services"]]
        return cls(**fields)


def _say(message: str) -> None:
    print(message, flush=True)  # noqa: T201


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ok(host: str, port: int, path: str) -> bool:
    """A GET that answers 200 (a plain socket: urllib would cost the supervisor 7 MiB)."""
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
        status = sock.recv(64).split(b"\r\n", 1)[0].split()
        return len(status) >= 2 and status[0].startswith(b"HTTP/") and status[1] == b"200"


def _wait_http(service: Service, child: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited with status {child.process.returncode} while starting")
        try:
            if _answers_ok(service.host, service.port, "/health"):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{child.name} did not answer {service.url}/health within {timeout:.0f}s")


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


def prepare(settings: Settings) -> Plan:
    """Migrate, `init`, and work out the services' addresses and the banner."""
    import asyncio

    from wharf_shared.db.engine import Database
    from wharf_shared.db.migrate import upgrade
    from wharf_shared.setup import ensure_accounts, ensure_files

    async def migrate() -> None:
        db = Database(settings.effective_database_url, pool_size=1)
        try:
            await upgrade(db)
        finally:
            await db.close()

    asyncio.run(migrate())
    ensure_files(settings)
    accounts = asyncio.run(ensure_accounts(settings))

    token, reg, ui, jobs = settings.token, settings.registry, settings.ui, settings.jobservice
    # Only the proxy's port is the user's business: a service behind it takes a free port unless
    # its own port is set, so two `make run`s side by side differ in WHARF_HTTP_PORT alone.
    ports = {
        name: _port(group)
        for name, group in (("token", token), ("registry", reg), ("ui", ui), ("jobservice", jobs))
    }
    proxy = Service("proxy", "wharf_proxy", settings.proxy.host, settings.http_port)
    services = [
        Service("token", "wharf_token", token.host, ports["token"], forked=True),
        Service("registry", "wharf_registry", reg.host, ports["registry"], forked=True),
        Service("ui", "wharf_ui", ui.host, ports["ui"], forked=True),
        # The job service: Celery worker, scheduler, events consumers (audit log, replication triggers).
        Service("jobservice", "wharf_jobservice", jobs.host, ports["jobservice"], ("worker",), forked=True),
        proxy,  # last: once it answers, everything behind it does
    ]
    front_url = proxy.url
    # Clients see one address, the proxy's: the registry's challenge names it, and the
    # proxy sends /v2/, /service/token and /api/ on to the services on their own ports.
    env_defaults = {
        "WHARF_EXTERNAL_URL": front_url,
        "WHARF_PROXY__UPSTREAMS__REGISTRY": services[1].url,
        "WHARF_PROXY__UPSTREAMS__TOKEN": services[0].url,
        "WHARF_PROXY__UPSTREAMS__UI": services[2].url,
        **CHILD_ENV_DEFAULTS,
    }
    external_url = os.environ.get("WHARF_EXTERNAL_URL", front_url)
    data_dir = str(settings.data_dir.resolve())
    # A service of several workers picks multiprocess metrics before prometheus_client is loaded:
    # only when each forked one keeps a single process may their parent load their modules.
    single = all(group.workers == 1 for group in (token, reg, ui))
    return Plan(
        data_dir=data_dir,
        env={
            "WHARF_DATA_DIR": data_dir,
            **{f"WHARF_{name.upper()}__PORT": str(port) for name, port in ports.items()},
        },
        env_defaults=env_defaults,
        services=services,
        banner=_banner(settings, external_url, accounts.admin_password),
        preload=[f"{s.module}.app" for s in services if s.forked] if single else [],
    )


class _Listens(Protocol):
    host: str
    port: int

    @property
    def model_fields_set(self) -> set[str]: ...


def _port(group: _Listens) -> int:
    """The port a service behind the proxy listens on: its own setting, else a free one."""
    if "port" in group.model_fields_set and group.port != 0:
        return group.port
    return free_port(group.host)


def _prepare_in_child() -> Plan | int:
    """`prepare` in a forked child; the plan, or the child's exit status when it failed (it has
    said why on stderr, as `wharf migrate` or `wharf init` would)."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        code = 0
        try:
            from wharf_shared.cli import with_settings

            def send(settings: Settings) -> None:
                with os.fdopen(write_end, "w") as out:
                    out.write(prepare(settings).to_json())

            with_settings(send)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as received:
        text = received.read()
    _, status = os.waitpid(pid, 0)  # Ctrl-C meanwhile: the child finishes, then we stop
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or not text:
        return code or 1
    return Plan.from_json(text)


def run_suite() -> int:
    children: list[Child] = []
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    plan = _prepare_in_child()
    if isinstance(plan, int):
        return plan
    if stopping:  # Ctrl-C while preparing
        return 0
    env = dict(os.environ)
    env.update(plan.env)
    for key, value in plan.env_defaults.items():
        env.setdefault(key, value)
    try:
        if "WHARF_REDIS_URL" not in os.environ:
            redis_child, redis_url = _start_redis(Path(plan.data_dir))
            children.append(redis_child)
            env["WHARF_REDIS_URL"] = redis_url
        forked = [service for service in plan.services if service.forked]
        if forked:
            preload = ["--preload", ",".join(plan.preload)] if plan.preload else []
            specs = [service.spec for service in forked]
            argv = [sys.executable, "-m", "wharf_shared.forks", *preload, *specs]
            child = Child("+".join(service.name for service in forked), subprocess.Popen(argv, env=env))
            children.append(child)
            for service in forked:
                _wait_http(service, child)
        for service in plan.services:
            if stopping:
                return 0
            if service.forked:
                continue
            argv = [sys.executable, "-m", service.module, *service.args]
            child = Child(service.name, subprocess.Popen(argv, env=env))
            children.append(child)
            _wait_http(service, child)
        _say(plan.banner)
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


def _banner(settings: Settings, front_url: str, new_admin_password: str | None) -> str:
    from wharf_shared.config import mask_url

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
        f"  portal:    {front_url}/   (open it in a browser and sign in)",
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
        "Harbor's REST API (v2.0), with Basic auth:",
        f"  curl -u admin:PASSWORD {front_url}/api/v2.0/users/current",
        "",
        "Ctrl-C stops every service.",
    ]
    return "\n".join(lines)
