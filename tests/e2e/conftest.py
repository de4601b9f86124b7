"""End-to-end fixtures: a registry process of its own and a skopeo that reads no user configuration.

Each test gets a fresh database, a leased Redis DB number and a data dir under `tmp_path`, and a
`python -m wharf_registry` on a free port, stopped at teardown. Parametrize `registry` indirectly
with `(database kind, auth mode)`. In token mode the test holds the signing key: `ensure_files`
writes a key pair into the registry's data dir, and `Registry.token` mints tokens with it, the way
the token service would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import backends, s3
from tests.support.grants import allow_push
from tests.support.processes import ServiceProcess, free_port, registry_process
from wharf_shared.config import Settings
from wharf_shared.setup import ensure_files
from wharf_shared.tokens import Access, TokenIssuer, load_private_key

SKOPEO_TIMEOUT = 180
# Straight to the registry, whatever *_proxy variables the shell has.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class HTTPResult:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Registry:
    """A running registry process and what a test needs to talk to it."""

    process: ServiceProcess
    auth: str
    db_kind: str
    data_dir: Path
    issuer: TokenIssuer | None
    storage: str = "filesystem"  # "filesystem", "s3" or "s3-redirect" (blob pulls sent to presigned URLs)
    database_url: str = ""

    @property
    def address(self) -> str:
        return f"{self.process.host}:{self.process.port}"

    @property
    def url(self) -> str:
        return self.process.url

    def ref(self, name: str) -> str:
        """A skopeo `docker://` reference to `name` (`repo:tag` or `repo@digest`) on this registry."""
        return f"docker://{self.address}/{name}"

    def token(self, *scopes: str, lifetime: int = 900, issuer: TokenIssuer | None = None) -> str | None:
        """A token granting `type:name:action,action` scopes; None when the registry runs without auth."""
        if self.issuer is None:
            return None
        access = []
        for scope in scopes:
            kind, rest = scope.split(":", 1)
            name, _, actions = rest.rpartition(":")
            access.append(Access(kind, name, frozenset(a for a in actions.split(",") if a)))
        pushed = [a.name for a in access if a.type == "repository" and {"push", "*"} & a.actions]
        if pushed:  # the registry re-checks pushes in the database, as the token service decided them
            allow_push(self.database_url, "e2e-tester", pushed)
        token, _ = (issuer or self.issuer).issue("e2e-tester", access, lifetime)
        return token

    def log_tail(self, lines: int = 60) -> str:
        return self.process.tail(lines)

    def explain(self, message: str) -> str:
        """An assertion message with the registry's recent log attached."""
        return f"{message}\n--- registry log ({self.process.log_path}) ---\n{self.log_tail()}"

    def get(self, path: str, token: str | None = None, timeout: float = 30) -> HTTPResult:
        """A plain HTTP GET (no client magic: no challenge handling, no retries)."""
        request = urllib.request.Request(self.url + path)  # noqa: S310 - our own http:// URL
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with _DIRECT.open(request, timeout=timeout) as response:
                return HTTPResult(response.status, dict(response.headers.items()), response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return HTTPResult(exc.code, dict(exc.headers.items()), exc.read())

    def request_counts(self) -> Counter[tuple[str, str, str]]:
        """HTTP requests served so far, by (method, route template, status), from `/metrics`."""
        result = self.get("/metrics")
        assert result.status == 200, self.explain(f"/metrics answered {result.status}")
        counts: Counter[tuple[str, str, str]] = Counter()
        for family in text_string_to_metric_families(result.body.decode()):
            if family.name != "wharf_registry_http_requests":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = sample.labels
                    counts[(labels["method"], labels["route"], labels["status"])] += int(sample.value)
        return counts


def start_registry(
    tmp_path: Path,
    db_kind: str,
    auth: str,
    database_url: str,
    redis_url: str,
    storage: str = "filesystem",
    storage_env: dict[str, str] | None = None,
) -> Registry:
    data_dir = tmp_path / "registry-data"
    issuer = None
    if auth == "token":
        # Exactly what `wharf init` does: a signing key and the trusted bundle with its public half.
        settings = Settings(data_dir=data_dir)
        ensure_files(settings)
        issuer = TokenIssuer(
            load_private_key(settings.token_private_key_path),
            service=settings.token.service,
            issuer=settings.token.issuer,
        )
    env = {
        "WHARF_DATA_DIR": str(data_dir),
        "WHARF_DATABASE_URL": database_url,
        "WHARF_REDIS_URL": redis_url,
        "WHARF_REGISTRY__AUTH": auth,
        # A realm nobody serves: a client without a token has nowhere to get one.
        "WHARF_EXTERNAL_URL": f"http://127.0.0.1:{free_port()}",
        "WHARF_DATABASE_POOL_SIZE": "5",
        **(storage_env or {}),
    }
    process = registry_process(env, tmp_path / "logs")
    registry = Registry(process, auth, db_kind, data_dir, issuer, storage, database_url)
    try:
        process.start()  # returns once /health/ready answers 200
    except BaseException:
        process.stop()
        raise
    return registry


@pytest.fixture
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    """A registry process; indirect param `(database kind, auth mode[, storage])`, default PostgreSQL,
    token, filesystem. Storage "s3" is a fresh bucket on the test process's moto server; "s3-redirect"
    the same with blob pulls redirected to presigned URLs."""
    db_kind, auth, *rest = getattr(request, "param", ("postgresql", "token"))
    storage = rest[0] if rest else "filesystem"
    storage_env = None
    if storage.startswith("s3"):
        endpoint, bucket = request.getfixturevalue("moto_endpoint"), request.getfixturevalue("s3_bucket")
        storage_env = s3.storage_env(endpoint, bucket, redirect=str(storage == "s3-redirect").lower())
    with (
        backends.fresh_database(db_kind, str(tmp_path)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        registry = start_registry(tmp_path, db_kind, auth, database_url, redis_url, storage, storage_env)
        try:
            yield registry
        finally:
            registry.process.stop()
        # A registry that crashed or would not stop on SIGTERM is a failure even if the test passed.
        code = registry.process.process.returncode if registry.process.process else None
        if code != 0:
            pytest.fail(registry.explain(f"registry exit status {code} after SIGTERM"), pytrace=False)


@dataclass
class Skopeo:
    """skopeo with an empty auth file, home and registries config of its own, and TLS checks off."""

    binary: str
    env: dict[str, str]
    registries_d: Path
    registry: Registry

    def argv(self, *args: str) -> list[str]:
        return [
            self.binary,
            "--insecure-policy",
            "--registries.d",
            str(self.registries_d),
            "--command-timeout",
            f"{SKOPEO_TIMEOUT}s",
            *args,
        ]

    def run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.argv(*args), env=self.env, capture_output=True, timeout=SKOPEO_TIMEOUT + 30, check=False
        )

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """skopeo running in the background (its output in pipes): for a test that watches it."""
        return subprocess.Popen(
            self.argv(*args), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def describe(self, result: subprocess.CompletedProcess[bytes]) -> str:
        argv = _redact(result.args)
        return self.registry.explain(
            f"$ {' '.join(argv)}\nexit {result.returncode}\n"
            f"--- stderr ---\n{result.stderr.decode(errors='replace')[-4000:]}"
        )

    @staticmethod
    def mentions(result: subprocess.CompletedProcess[bytes], *phrases: str) -> bool:
        """Whether stderr holds any of `phrases` (case-insensitive)."""
        text = result.stderr.decode(errors="replace").lower()
        return any(phrase.lower() in text for phrase in phrases)

    def ok(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        result = self.run(*args)
        assert result.returncode == 0, self.describe(result)
        return result

    def fails(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        result = self.run(*args)
        assert result.returncode != 0, self.describe(result)
        return result

    # Argument builders: TLS verification off, and a bearer token when the registry wants one.

    @staticmethod
    def copy_args(
        source: str,
        dest: str,
        *,
        src_token: str | None = None,
        dest_token: str | None = None,
        all_images: bool = False,
    ) -> list[str]:
        args = ["copy", "--src-tls-verify=false", "--dest-tls-verify=false"]
        if all_images:
            args.append("--all")
        if src_token is not None:
            args.append(f"--src-registry-token={src_token}")
        if dest_token is not None:
            args.append(f"--dest-registry-token={dest_token}")
        return [*args, source, dest]

    @staticmethod
    def registry_args(command: str, ref: str, token: str | None, *extra: str) -> list[str]:
        args = [command, "--tls-verify=false", *extra]
        if token is not None:
            args.append(f"--registry-token={token}")
        return [*args, ref]

    def copy(
        self,
        source: str,
        dest: str,
        *,
        src_token: str | None = None,
        dest_token: str | None = None,
        all_images: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        args = self.copy_args(source, dest, src_token=src_token, dest_token=dest_token, all_images=all_images)
        return self.ok(*args)

    def inspect_raw(self, ref: str, token: str | None) -> bytes:
        return self.ok(*self.registry_args("inspect", ref, token, "--raw")).stdout

    def inspect(self, ref: str, token: str | None) -> dict[str, Any]:
        info: dict[str, Any] = json.loads(self.ok(*self.registry_args("inspect", ref, token)).stdout)
        return info

    def list_tags(self, ref: str, token: str | None) -> list[str]:
        out = json.loads(self.ok(*self.registry_args("list-tags", ref, token)).stdout)
        return sorted(out["Tags"] or [])

    def delete(self, ref: str, token: str | None) -> None:
        self.ok(*self.registry_args("delete", ref, token))


def _redact(argv: Sequence[str] | str) -> list[str]:
    items = [argv] if isinstance(argv, str) else list(argv)
    return [a.split("=", 1)[0] + "=<token>" if "registry-token=" in a else a for a in items]


@pytest.fixture
def skopeo(registry: Registry, tmp_path: Path) -> Skopeo:
    return make_skopeo(registry, tmp_path / "skopeo-home")


def make_skopeo(registry: Registry, home: Path) -> Skopeo:
    """A Skopeo whose failures show `registry`'s log; its config, auth and temp files live in `home`."""
    binary = shutil.which("skopeo")
    if binary is None:
        backends.unavailable("skopeo", FileNotFoundError("skopeo is not on PATH"))
    assert binary is not None
    for sub in ("run", "config", "docker", "tmp", "registries.d"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    auth_file = home / "auth.json"
    auth_file.write_text('{"auths": {}}')
    registries_conf = home / "registries.conf"
    registries_conf.write_text("# no search registries, mirrors or blocks: references are used as written\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(home / "run"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "DOCKER_CONFIG": str(home / "docker"),
        "REGISTRY_AUTH_FILE": str(auth_file),
        "CONTAINERS_REGISTRIES_CONF": str(registries_conf),
        "TMPDIR": str(home / "tmp"),
    }
    return Skopeo(binary, env, home / "registries.d", registry)
