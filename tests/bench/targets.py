"""The registries under test: Wharf (auth none, auth token, the full path through the proxy) and
the reference (CNCF distribution).

Each target is a server process (tree) on a free port with its own storage directory; Wharf's
also get a fresh database and a Redis DB number of their own. Everything is registered on an
ExitStack, so an error or Ctrl-C stops the processes and drops the databases.

Wharf with token auth can also bring its token service (`python -m wharf_token`, one worker)
on the same data directory, database and Redis: the registry's key pair signs its tokens, and
its database holds a non-admin user who is a developer of a private project, so the scopes a
token request names are resolved from the database as they are for a real `docker login`.

The full path (`wharf-proxy`) is the suite as a client meets it: the proxy (`python -m
wharf_proxy`) in front of a token service and a token-auth registry (the registry as in
`wharf-token`), all on one data dir, database and Redis, with `WHARF_EXTERNAL_URL` the proxy's
so the registry's challenge names `<proxy>/service/token`. Its clients log in the real way: a
`GET <proxy>/service/token` with Basic credentials and the scope they need, once per client
and repository (as docker does), then `Authorization: Bearer` on every request through the
proxy. Repositories are in a private project `bench` whose maintainer is the bench user (a
maintainer, not a developer: the mixed load deletes, which Harbor's developers may not); the
catalog scope is for sysadmins only, so that token is the admin's.

`wharf-run` is what a new user runs: `wharf run` (the command behind `make run`) on free ports in
a temp data dir with its defaults (SQLite, its private Redis, its worker counts), the bench user
and project added to its database, logins through its proxy as on `wharf-proxy`. Its CPU and
memory are the whole process tree of `wharf run`, Redis included.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from pydantic import SecretStr

from tests.bench.http import Connection, HTTPError, expect
from tests.bench.machine import tree_cpu_seconds
from tests.support.backends import fresh_database, leased_redis_db
from tests.support.grants import allow_push
from tests.support.memory import tree_memory
from tests.support.processes import (
    ServiceProcess,
    free_port,
    proxy_process,
    registry_process,
    service_env,
    token_process,
)
from wharf_shared.config import Settings
from wharf_shared.db import accounts, projects
from wharf_shared.db.engine import Database
from wharf_shared.passwords import hash_password
from wharf_shared.rbac import Role
from wharf_shared.setup import ensure_accounts, ensure_files
from wharf_shared.tokens import Access, TokenIssuer, TokenVerifier, load_private_key

HOST = "127.0.0.1"
TOKEN_LIFETIME = 4 * 3600
# SQL connections per pool (each process has a write and a read pool): three Wharf targets run
# side by side on one PostgreSQL, whose default max_connections is 100.
POOL_SIZE = "5"

WHARF_NONE = "wharf-none"
WHARF_TOKEN = "wharf-token"
WHARF_PROXY = "wharf-proxy"
WHARF_RUN = "wharf-run"
REFERENCE = "reference"
ALL_TARGETS = (WHARF_NONE, WHARF_TOKEN, WHARF_PROXY, WHARF_RUN, REFERENCE)
FULL_PATH = (WHARF_PROXY, WHARF_RUN)  # a client → proxy → token service + registry
TOKEN_SERVICE = "wharf-token-service"  # not a target: the token process behind WHARF_TOKEN

# The accounts the token service logs in: a member of a private project (not a sysadmin,
# so its grants come from its membership: developer, or maintainer on the full path), and the
# admin that owns the project.
BENCH_ADMIN_PASSWORD = "bench-admin-password-1"
BENCH_USER = "bench-user"
BENCH_PASSWORD = "bench-password-1"
BENCH_PROJECT = "bench-private"
PROXY_PROJECT = "bench"  # the full path's repositories (`bench/...`), a project the bench user develops


@dataclass
class Target:
    key: str
    label: str
    process: ServiceProcess
    issuer: TokenIssuer | None = None
    single_post: bool = False  # answers `POST …/uploads/?digest=` with the body in one request
    notes: list[str] = field(default_factory=list)
    token_service: TokenService | None = None
    login: Login | None = None  # tokens come from the target's own `/service/token` (full path)
    behind: list[ServiceProcess] = field(default_factory=list)  # the processes behind `process`

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def is_wharf(self) -> bool:
        return self.key != REFERENCE

    def connect(self) -> Connection:
        return Connection(self.url)

    def auth(self, *access: Access) -> dict[str, str]:
        """Headers that grant `access` (nothing when the target has no auth): a token minted with
        the signing key, or on the full path one fetched from the proxy's token endpoint."""
        if self.login is not None:
            return {"Authorization": f"Bearer {self.login.token(self.url, access)}"}
        if self.issuer is None:
            return {}
        token, _ = self.issuer.issue("bench", list(access), TOKEN_LIFETIME)
        return {"Authorization": f"Bearer {token}"}

    def servers(self) -> list[ServiceProcess]:
        """Every process that serves this target's requests: the front one first."""
        return [self.process, *self.behind]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) so far of the server processes and all their descendants
        (on the full path: proxy, registry and token service together; `wharf run`: the whole
        suite with its private Redis)."""
        return tree_cpu_seconds(*(p.pid for p in self.servers()))

    def memory_roots(self) -> list[int]:
        """The processes whose trees hold this target's memory (its token service's too)."""
        roots = [p.pid for p in self.servers()]
        if self.token_service is not None:
            roots.append(self.token_service.server.process.pid)
        return roots

    def profiled(self) -> list[tuple[str, int]]:
        """(name, pid) of each process tree py-spy records on its own: the front process under
        the target's key, those behind it under their names; under `wharf run`, each service it
        started (not the supervisor, not Redis, not the parent of the forked services, which runs
        the events consumer)."""
        if self.key == WHARF_RUN:
            root = self.process.pid
            processes = tree_memory(root).processes
            # Token, registry and the ui are forks of the process that runs the events consumer
            # (wharf_shared.forks). That one is not recorded: py-spy follows subprocesses, so its
            # profile would hold its forks' samples again (and it serves no benchmarked request).
            forks = {p.pid for p in processes if p.ppid == root and "wharf_shared.forks" in _cmdline(p.pid)}
            services = [
                (p.name, p.pid)
                for p in processes
                if (p.ppid == root and p.pid not in forks) or p.ppid in forks
            ]
            found = [(f"{WHARF_RUN}-{n.rsplit('wharf_', 1)[1]}", pid) for n, pid in services if "wharf_" in n]
            return found or [(self.key, self.process.pid)]
        return [(self.key if p is self.process else p.name, p.pid) for p in self.servers()]


@dataclass
class TokenService:
    """Wharf's token service beside a token-auth registry, and who to log in as."""

    server: Target  # the token process: what the scenario times, measures the CPU of and profiles
    service: str  # the `service` parameter (the registry's name)
    username: str
    password: str
    project: str  # a private project the user is a developer of
    verifier: TokenVerifier  # checks issued tokens against the registry's trusted keys


@dataclass(frozen=True)
class Login:
    """What a docker client does before it talks to the registry: trade credentials for a token
    at `GET /service/token` (Basic auth, `service`, one `scope` per access). Repository scopes
    are asked as the user (a maintainer of the repositories' project); the catalog, which the
    token service grants to sysadmins only, as the admin."""

    service: str
    username: str
    password: str
    admin_password: str
    verifier: TokenVerifier  # checks that the token grants what was asked (else fail early)

    def token(self, base_url: str, access: tuple[Access, ...]) -> str:
        catalog = any(a.type == "registry" for a in access)
        username, password = ("admin", self.admin_password) if catalog else (self.username, self.password)
        query = [("service", self.service)]
        query += [("scope", f"{a.type}:{a.name}:{','.join(sorted(a.actions))}") for a in access]
        basic = base64.b64encode(f"{username}:{password}".encode()).decode()
        with Connection(base_url) as conn:
            answer = expect(
                conn.request(
                    "GET",
                    "/service/token?" + urlencode(query, safe=":/,*"),
                    headers={"Authorization": f"Basic {basic}"},
                ),
                200,
                what=f"GET /service/token as {username}",
            )
        token = json.loads(answer.body).get("token")
        if not isinstance(token, str) or not token:
            raise HTTPError(f"token answer without a token: {answer.body[:200]!r}")
        grant = self.verifier.verify(token)
        for entry in access:
            missing = [a for a in sorted(entry.actions) if not grant.allows(entry.type, entry.name, a)]
            if missing:
                raise HTTPError(f"{username}'s token lacks {entry.type}:{entry.name}:{','.join(missing)}")
        return token


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def repo_access(name: str, *actions: str) -> Access:
    """`repository:<name>:<actions>` (pull and push when none are named)."""
    return Access("repository", name, frozenset(actions or ("pull", "push")))


CATALOG_ACCESS = Access("registry", "catalog", frozenset({"*"}))


def start_wharf(
    stack: ExitStack,
    work: Path,
    logs: Path,
    *,
    auth: str,
    db_kind: str,
    workers: int,
    token_service: bool = False,
    storage_env: dict[str, str] | None = None,
) -> Target:
    """Wharf's registry; with `auth="token"` and `token_service`, its token service as well.
    `storage_env` (the WHARF_STORAGE__* variables) puts it on S3 instead of the filesystem."""
    key = WHARF_TOKEN if auth == "token" else WHARF_NONE
    data_dir = work / key
    data_dir.mkdir(parents=True)
    db_url = stack.enter_context(fresh_database(db_kind, str(work)))
    redis_url = stack.enter_context(leased_redis_db())
    env = {
        "WHARF_DATA_DIR": str(data_dir),
        "WHARF_DATABASE_URL": db_url,
        "WHARF_DATABASE_POOL_SIZE": POOL_SIZE,
        "WHARF_REDIS_URL": redis_url,
        "WHARF_REGISTRY__AUTH": auth,
        "WHARF_REGISTRY__WORKERS": str(workers),
        **(storage_env or {}),
    }
    issuer = None
    if auth == "token":
        # Built from explicit values only: the bench's own environment must not leak in.
        settings = Settings.model_construct(data_dir=data_dir)
        ensure_files(settings)
        # The subject of the minted tokens may push to `bench/…`: the registry re-checks it in SQL.
        allow_push(db_url, "bench", ["bench/"])
        issuer = TokenIssuer(
            load_private_key(settings.token_private_key_path),
            service=settings.token.service,
            issuer=settings.token.issuer,
        )
    process = registry_process(env, logs, host=HOST, name=key)
    stack.callback(process.stop)
    process.start(timeout=60)
    label = f"Wharf ({auth}, {db_kind}, {workers} worker{'s' if workers > 1 else ''})"
    target = Target(key, label, process, issuer)
    if auth == "token" and token_service:
        target.token_service = start_token_service(stack, logs, env, data_dir)
        target.label = label[:-1] + "; token service 1 worker)"
    return target


def start_token_service(
    stack: ExitStack, logs: Path, registry_env: dict[str, str], data_dir: Path
) -> TokenService:
    """`python -m wharf_token` (one worker) on the registry's data dir, database and Redis."""
    db_url = registry_env["WHARF_DATABASE_URL"]
    # Built from explicit values only, like the registry's: the bench's environment must not leak in.
    settings = Settings.model_construct(
        data_dir=data_dir, database_url=db_url, admin_password=SecretStr(BENCH_ADMIN_PASSWORD)
    )
    asyncio.run(_seed_accounts(settings, BENCH_PROJECT))
    env = {
        "WHARF_DATA_DIR": registry_env["WHARF_DATA_DIR"],
        "WHARF_DATABASE_URL": db_url,
        "WHARF_DATABASE_POOL_SIZE": POOL_SIZE,
        "WHARF_REDIS_URL": registry_env["WHARF_REDIS_URL"],
        "WHARF_TOKEN__WORKERS": "1",
    }
    process = token_process(env, logs, host=HOST, name=TOKEN_SERVICE)
    stack.callback(process.stop)
    process.start(timeout=60)
    server = Target(TOKEN_SERVICE, "Wharf token service (1 worker)", process)
    verifier = TokenVerifier.from_bundle(
        settings.token_keys_path, service=settings.token.service, issuer=settings.token.issuer
    )
    return TokenService(server, settings.token.service, BENCH_USER, BENCH_PASSWORD, BENCH_PROJECT, verifier)


async def _seed_accounts(settings: Settings, project_name: str, role: Role = Role.DEVELOPER) -> None:
    """The admin and `library` (as `wharf init` makes them), then the bench user and its project."""
    await ensure_accounts(settings)
    db = Database(settings.effective_database_url, pool_size=1)
    try:
        async with db.transaction() as conn:
            user = await accounts.create_user(conn, BENCH_USER, hash_password(BENCH_PASSWORD))
            admin = await accounts.find_user(conn, "admin")
            assert admin is not None
            project = await projects.create_project(conn, project_name, admin.id, public=False)
            await projects.set_member(conn, project.id, user.id, role)
    finally:
        await db.close()


def start_full_path(
    stack: ExitStack,
    work: Path,
    logs: Path,
    *,
    db_kind: str,
    workers: int,
    proxy_workers: int,
    storage_env: dict[str, str] | None = None,
) -> Target:
    """Proxy (`proxy_workers`) → token service (1 worker) + token-auth registry (`workers`), one
    data dir, database and Redis; the target is the proxy, the other two are `behind` it."""
    data_dir = work / WHARF_PROXY
    data_dir.mkdir(parents=True)
    db_url = stack.enter_context(fresh_database(db_kind, str(work)))
    redis_url = stack.enter_context(leased_redis_db())
    proxy_port = free_port(HOST)
    external = f"http://{HOST}:{proxy_port}"
    # Built from explicit values only: the bench's own environment must not leak in.
    settings = Settings.model_construct(
        data_dir=data_dir,
        database_url=db_url,
        external_url=external,
        admin_password=SecretStr(BENCH_ADMIN_PASSWORD),
    )
    ensure_files(settings)
    asyncio.run(_seed_accounts(settings, PROXY_PROJECT, Role.MAINTAINER))
    registry_port, token_port = free_port(HOST), free_port(HOST)
    env = {
        "WHARF_DATA_DIR": str(data_dir),
        "WHARF_DATABASE_URL": db_url,
        "WHARF_DATABASE_POOL_SIZE": POOL_SIZE,
        "WHARF_REDIS_URL": redis_url,
        "WHARF_EXTERNAL_URL": external,  # the challenge's realm: <proxy>/service/token
        "WHARF_REGISTRY__AUTH": "token",
        "WHARF_REGISTRY__WORKERS": str(workers),
        "WHARF_TOKEN__WORKERS": "1",
        "WHARF_PROXY__WORKERS": str(proxy_workers),
        **(storage_env or {}),
        "WHARF_PROXY__UPSTREAMS__REGISTRY": f"http://{HOST}:{registry_port}",
        "WHARF_PROXY__UPSTREAMS__TOKEN": f"http://{HOST}:{token_port}",
    }
    token = token_process(env, logs, host=HOST, port=token_port, name=f"{WHARF_PROXY}-token")
    registry = registry_process(env, logs, host=HOST, port=registry_port, name=f"{WHARF_PROXY}-registry")
    proxy = proxy_process(env, logs, host=HOST, port=proxy_port, name=WHARF_PROXY)
    for process in (token, registry, proxy):  # the proxy is ready once both pools have an instance
        stack.callback(process.stop)  # stopped in reverse: the proxy first
        process.start(timeout=60)
    verifier = TokenVerifier.from_bundle(
        settings.token_keys_path, service=settings.token.service, issuer=settings.token.issuer
    )
    login = Login(settings.token.service, BENCH_USER, BENCH_PASSWORD, BENCH_ADMIN_PASSWORD, verifier)
    plural = "s" if workers > 1 else ""
    label = (
        f"Wharf full path: proxy ({proxy_workers} worker{'s' if proxy_workers > 1 else ''})"
        f" → token service (1 worker) + registry (token, {db_kind}, {workers} worker{plural})"
    )
    return Target(WHARF_PROXY, label, proxy, login=login, behind=[registry, token])


def start_wharf_run(stack: ExitStack, work: Path, logs: Path) -> Target:
    """`wharf run` (what `make run` starts) on free ports in a data dir of its own, with nothing
    but its defaults: SQLite in the data dir, its private Redis, its worker counts. The admin's
    password is set (the run would print a generated one); the bench user and its project are
    added to its database once it is up, and clients log in through its proxy."""
    data_dir = work / WHARF_RUN
    http_port = free_port(HOST)
    env = service_env(  # no WHARF_* from the bench's environment: make run's defaults
        {
            "WHARF_DATA_DIR": str(data_dir),
            "WHARF_HTTP_PORT": str(http_port),
            "WHARF_REGISTRY__PORT": str(free_port(HOST)),
            "WHARF_TOKEN__PORT": str(free_port(HOST)),
            "WHARF_UI__PORT": str(free_port(HOST)),
            "WHARF_JOBSERVICE__PORT": str(free_port(HOST)),
            "WHARF_ADMIN_PASSWORD": BENCH_ADMIN_PASSWORD,
        }
    )
    wharf = Path(sys.executable).with_name("wharf")
    process = ServiceProcess(
        WHARF_RUN, [str(wharf), "run"], env, HOST, http_port, logs / f"{WHARF_RUN}-{http_port}.log"
    )
    stack.callback(process.stop)  # SIGTERM: `wharf run` stops its services and its Redis
    process.start(timeout=120)  # ready once the proxy (started last) is
    settings = Settings.model_construct(data_dir=data_dir, admin_password=SecretStr(BENCH_ADMIN_PASSWORD))
    asyncio.run(_seed_accounts(settings, PROXY_PROJECT, Role.MAINTAINER))
    verifier = TokenVerifier.from_bundle(
        settings.token_keys_path, service=settings.token.service, issuer=settings.token.issuer
    )
    login = Login(settings.token.service, BENCH_USER, BENCH_PASSWORD, BENCH_ADMIN_PASSWORD, verifier)
    counts = (settings.proxy.workers, settings.registry.workers, settings.token.workers)
    label = "wharf run (make run's defaults: SQLite, private Redis; workers: proxy {}, registry {}, token {})"
    label = label.format(*counts)
    return Target(WHARF_RUN, label, process, login=login)


REFERENCE_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {host}:{port}
  secret: wharf-bench-not-a-secret
health:
  storagedriver:
    enabled: false
"""


def reference_binary() -> str | None:
    return shutil.which("docker-registry") or shutil.which("registry")


def reference_version(binary: str) -> str:
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "unknown"
    return (done.stdout or done.stderr).strip() or "unknown"


def start_reference(stack: ExitStack, work: Path, logs: Path, binary: str) -> Target:
    """distribution with filesystem storage, no auth, deletes on, no debug server, logs at warn."""
    root = work / REFERENCE / "storage"
    root.mkdir(parents=True)
    port = free_port(HOST)
    config = work / REFERENCE / "config.yml"
    config.write_text(REFERENCE_CONFIG.format(root=root, host=HOST, port=port))
    # distribution has no health route on its API port; it is ready when `/v2/` answers.
    process = ServiceProcess(
        REFERENCE,
        [binary, "serve", str(config)],
        service_env({}),
        HOST,
        port,
        logs / f"reference-{port}.log",
        ready_path="/v2/",
    )
    stack.callback(process.stop)
    process.start(timeout=30)
    return Target(REFERENCE, f"distribution ({reference_version(binary)})", process)
