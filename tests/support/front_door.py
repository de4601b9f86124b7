"""Clients of a rolled-out site's front door (a wharf-proxy, nginx or HAProxy): the admin's API
calls, health polls, and skopeo loops that push and pull while the site changes under them,
checking every digest and keeping every failure's story."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Skopeo
from tests.support.deploy import ADMIN_PASSWORD

# Direct HTTP, no proxy from the environment.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def admin_api(front: str, method: str, path: str, body: dict[str, Any] | None = None) -> int:
    """The status of an /api/v2.0 call as the site's admin."""
    auth = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    request = urllib.request.Request(
        f"http://{front}/api/v2.0{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
    )
    try:
        with DIRECT.open(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def add_developer(front: str, project: str, username: str, password: str) -> None:
    """A new user, a new private project, and the user its developer (role 2), by the admin."""
    user = {
        "username": username,
        "email": f"{username}@example.test",
        "realname": username,
        "password": password,
    }
    assert admin_api(front, "POST", "/users", user) == 201
    assert admin_api(front, "POST", "/projects", {"project_name": project, "public": False}) == 201
    member = {"role_id": 2, "member_user": {"username": username}}
    assert admin_api(front, "POST", f"/projects/{project}/members", member) == 201


def ready(url: str) -> bool:
    """Whether the service at `url` answers its readiness check."""
    try:
        with DIRECT.open(f"{url}/health/ready", timeout=5) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.2)


def push(skopeo: Skopeo, layout: Path, ref: str, digest_file: Path) -> str | None:
    """Push the OCI layout's image to `ref` (its digest into `digest_file`); a failure's story, or None."""
    digest_file.unlink(missing_ok=True)
    args = (
        "copy",
        "--retry-times=3",
        "--dest-tls-verify=false",
        f"--digestfile={digest_file}",
        f"oci:{layout}:latest",
        ref,
    )
    result = skopeo.run(*args)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")[-3000:]
        return f"$ skopeo {' '.join(args)}\nexit {result.returncode}\n{stderr}"
    return None


def pull_and_check(skopeo: Skopeo, ref: str, target: Path, expected: str | None) -> str | None:
    """Pull `ref` into `target` and check every digest (the manifest's against `expected` when
    given); a failure's story, or None."""
    shutil.rmtree(target, ignore_errors=True)
    result = skopeo.run("copy", "--retry-times=3", "--src-tls-verify=false", ref, f"dir:{target}")
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")[-3000:]
        return f"$ skopeo copy {ref}\nexit {result.returncode}\n{stderr}"
    manifest = "sha256:" + hashlib.sha256((target / "manifest.json").read_bytes()).hexdigest()
    if expected is not None and manifest != expected:
        return f"{ref}: pulled manifest {manifest}, pushed {expected}"
    for blob in target.iterdir():
        if (
            blob.name not in ("manifest.json", "version")
            and hashlib.sha256(blob.read_bytes()).hexdigest() != blob.name
        ):
            return f"{ref}: blob {blob.name} does not hash to its name"
    return None


@dataclass
class ClientLoop:
    """A client in a loop through the front door at `repository` (docker://host:port/project/name).

    Each round pushes the next image to tag <round> and pulls it back, every digest checked.
    `pull_only` pushes once (retried until it lands) and then only pulls; `pushed` names a
    (tag, digest) already there, to pull without any push. Counts operations and keeps every
    failure's story; `pace` seconds pass between rounds (steady traffic, CPU left for the rollout).
    """

    skopeo: Skopeo
    folder: Path
    repository: str
    images: list[Path] = field(default_factory=list)
    pull_only: bool = False
    pushed: tuple[str, str] | None = None
    pace: float = 0.0
    operations: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _count(self, failure: str | None) -> bool:
        self.operations += 1
        if failure is not None:
            self.failures.append(failure)
        return failure is None

    def _loop(self) -> None:
        files = self.folder / self.repository.rsplit("//", 1)[-1].replace("/", "-").replace(":", "-")
        round_ = 0
        while not self._stop.is_set():
            if self.pushed is None or not self.pull_only:
                tag = str(round_)
                layout = self.images[round_ % len(self.images)]
                ref = f"{self.repository}:{tag}"
                if not self._count(push(self.skopeo, layout, ref, files.with_name(files.name + "-digest"))):
                    round_ += 0 if self.pull_only else 1
                    self._stop.wait(self.pace)
                    continue
                self.pushed = (tag, files.with_name(files.name + "-digest").read_text().strip())
            tag, digest = self.pushed
            target = files.with_name(files.name + "-pulled")
            self._count(pull_and_check(self.skopeo, f"{self.repository}:{tag}", target, digest))
            round_ += 1
            self._stop.wait(self.pace)

    def __enter__(self) -> ClientLoop:
        self._thread = threading.Thread(target=self._loop, name=f"client-{self.repository}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=300)

    def wait_for(self, operations: int) -> None:
        wait_until(
            lambda: self.operations >= operations or self.failures,
            f"{operations} client operations on {self.repository}",
            300,
        )

    def explain(self, logs: str) -> str:
        return "\n\n".join(self.failures[:5]) + "\n\n" + logs
