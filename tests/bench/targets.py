"""The registries under test: Wharf (auth none, auth token) and the reference (CNCF distribution).

Each target is a server process (tree) on a free port with its own storage directory; Wharf's
also get a fresh database and a Redis DB number of their own. Everything is registered on an
ExitStack, so an error or Ctrl-C stops the processes and drops the databases.
"""

from __future__ import annotations

import shutil
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.http import Connection
from tests.bench.machine import tree_cpu_seconds
from tests.support.backends import fresh_database, leased_redis_db
from tests.support.processes import ServiceProcess, free_port, registry_process, service_env
from wharf_shared.config import Settings
from wharf_shared.setup import ensure_files
from wharf_shared.tokens import Access, TokenIssuer, load_private_key

HOST = "127.0.0.1"
TOKEN_LIFETIME = 4 * 3600

WHARF_NONE = "wharf-none"
WHARF_TOKEN = "wharf-token"
REFERENCE = "reference"
ALL_TARGETS = (WHARF_NONE, WHARF_TOKEN, REFERENCE)


@dataclass
class Target:
    key: str
    label: str
    process: ServiceProcess
    issuer: TokenIssuer | None = None
    single_post: bool = False  # answers `POST …/uploads/?digest=` with the body in one request
    notes: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def is_wharf(self) -> bool:
        return self.key != REFERENCE

    def connect(self) -> Connection:
        return Connection(self.url)

    def auth(self, *access: Access) -> dict[str, str]:
        """Headers that grant `access` (nothing when the target has no auth)."""
        if self.issuer is None:
            return {}
        token, _ = self.issuer.issue("bench", list(access), TOKEN_LIFETIME)
        return {"Authorization": f"Bearer {token}"}

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the server process and all its descendants so far."""
        return tree_cpu_seconds(self.process.pid)


def repo_access(name: str, *actions: str) -> Access:
    return Access("repository", name, frozenset(actions or ("pull", "push")))


CATALOG_ACCESS = Access("registry", "catalog", frozenset({"*"}))


def start_wharf(stack: ExitStack, work: Path, logs: Path, *, auth: str, db_kind: str, workers: int) -> Target:
    key = WHARF_TOKEN if auth == "token" else WHARF_NONE
    data_dir = work / key
    data_dir.mkdir(parents=True)
    db_url = stack.enter_context(fresh_database(db_kind, str(work)))
    redis_url = stack.enter_context(leased_redis_db())
    env = {
        "WHARF_DATA_DIR": str(data_dir),
        "WHARF_DATABASE_URL": db_url,
        "WHARF_REDIS_URL": redis_url,
        "WHARF_REGISTRY__AUTH": auth,
        "WHARF_REGISTRY__WORKERS": str(workers),
    }
    issuer = None
    if auth == "token":
        # Built from explicit values only: the bench's own environment must not leak in.
        settings = Settings.model_construct(data_dir=data_dir)
        ensure_files(settings)
        issuer = TokenIssuer(
            load_private_key(settings.token_private_key_path),
            service=settings.token.service,
            issuer=settings.token.issuer,
        )
    process = registry_process(env, logs, host=HOST, name=key)
    stack.callback(process.stop)
    process.start(timeout=60)
    label = f"Wharf ({auth}, {db_kind}, {workers} worker{'s' if workers > 1 else ''})"
    return Target(key, label, process, issuer)


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
