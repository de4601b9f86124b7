"""Harbor's daily routine through `wharf run` (what `make run` starts), as a new user does it from a
shell: curl with Basic auth through the one front door, skopeo for the image.

Create a user and a private project, add the user as a developer, push as that user, find the
repository, the artifact and its tag, search for it, read the audit log, delete the tag. A second
user, no member, sees none of it."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Registry, make_skopeo
from tests.images import make_image, write_layout
from tests.support.processes import ServiceProcess, free_port, service_env
from tests.support.wharf_run import Run

pytestmark = pytest.mark.e2e

DEV_PASSWORD = "Dev-secret-1"
EVE_PASSWORD = "Eve-secret-1"


class Curl:
    """curl against one front door, as `user:password`; answers (status, headers, parsed body)."""

    def __init__(self, front: str) -> None:
        self.front = front

    def __call__(
        self, method: str, path: str, auth: tuple[str, str] | None, body: Any = None
    ) -> tuple[int, dict[str, str], Any]:
        argv = ["curl", "-sS", "--noproxy", "*", "-X", method, "-D", "-", "-o", "/dev/stdout"]
        argv += ["--max-time", "60", self.front + path]
        if auth is not None:
            argv += ["-u", f"{auth[0]}:{auth[1]}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        result = subprocess.run(argv, capture_output=True, check=True, timeout=90)
        head, _, payload = result.stdout.decode().partition("\r\n\r\n")
        lines = head.split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        return status, headers, json.loads(payload) if payload.strip() else None


def _eventually(check: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout} s")
        time.sleep(0.2)


def test_the_harbor_routine_with_curl_and_skopeo(tmp_path: Path) -> None:
    http_port = free_port()
    env = service_env(
        {
            "WHARF_DATA_DIR": str(tmp_path / "var"),
            "WHARF_HTTP_PORT": str(http_port),
            "WHARF_REGISTRY__PORT": str(free_port()),
            "WHARF_TOKEN__PORT": str(free_port()),
            "WHARF_UI__PORT": str(free_port()),
            "WHARF_JOBSERVICE__PORT": str(free_port()),
        }
    )
    env.pop("WHARF_REDIS_URL", None)  # the private Redis, as make run
    address = f"127.0.0.1:{http_port}"
    curl = Curl(f"http://{address}")
    layout = tmp_path / "layout"
    write_layout(layout, [make_image("routine")])

    run = Run(tmp_path, env, "run")
    try:
        run.wait_for(re.escape(f"Wharf is running at http://{address}"))
        admin = ("admin", run.wait_for(r"admin:\s+admin / (\S+)\s+\(generated now").group(1))
        dev, eve = ("dev", DEV_PASSWORD), ("eve", EVE_PASSWORD)

        # A user (and a second one who will be no member), a private project, dev as developer.
        for name, password in (dev, eve):
            new_user = {
                "username": name,
                "password": password,
                "email": f"{name}@example.test",
                "realname": name,
            }
            status, headers, _ = curl("POST", "/api/v2.0/users", admin, new_user)
            assert status == 201, (status, headers)
        status, headers, _ = curl(
            "POST", "/api/v2.0/projects", admin, {"project_name": "team", "metadata": {"public": "false"}}
        )
        assert status == 201, status
        project_id = int(headers["location"].rsplit("/", 1)[1])
        status, _, _ = curl(
            "POST",
            "/api/v2.0/projects/team/members",
            admin,
            {"role_id": 2, "member_user": {"username": "dev"}},
        )
        assert status == 201, status

        # dev pushes with skopeo through the same front door.
        process = ServiceProcess("wharf-run", [], {}, "127.0.0.1", http_port, run.log)
        skopeo = make_skopeo(Registry(process, "token", "sqlite", tmp_path, None), tmp_path / "skopeo")
        skopeo.ok("login", "--tls-verify=false", "-u", dev[0], "-p", dev[1], address)
        skopeo.ok(
            "copy", "--dest-tls-verify=false", f"oci:{layout}:latest", f"docker://{address}/team/app:v1"
        )
        skopeo.ok("inspect", "--raw", "--tls-verify=false", f"docker://{address}/team/app:v1")  # a pull

        # The repository, its artifact and the tag, as dev sees them.
        status, headers, repos = curl("GET", "/api/v2.0/projects/team/repositories", dev)
        assert (status, [r["name"] for r in repos]) == (200, ["team/app"])
        assert headers["x-total-count"] == "1"
        status, _, artifacts = curl(
            "GET", "/api/v2.0/projects/team/repositories/app/artifacts?with_tag=true", dev
        )
        assert status == 200
        (artifact,) = artifacts
        assert artifact["digest"].startswith("sha256:")
        assert artifact["size"] > 0
        assert [t["name"] for t in artifact["tags"]] == ["v1"]
        assert artifact["push_time"]
        assert artifact["project_id"] == project_id

        # Search finds it for dev, not for eve; eve does not see the private project at all.
        status, _, found = curl("GET", "/api/v2.0/search?q=app", dev)
        assert (status, [r["repository_name"] for r in found["repository"]]) == (200, ["team/app"])
        status, _, found = curl("GET", "/api/v2.0/search?q=app", eve)
        assert (status, found["repository"], found["project"]) == (200, [], [])
        status, _, listed = curl("GET", "/api/v2.0/projects?name=team", eve)
        assert (status, listed) == (200, [])

        # The audit log shows dev's push and pull, with dev as the operator.
        def dev_logs() -> list[dict[str, Any]] | None:
            status, _, logs = curl("GET", "/api/v2.0/audit-logs?page_size=100", admin)
            assert status == 200, status
            mine = [x for x in logs if x["username"] == "dev" and x["resource"].startswith("team/app")]
            return mine if {x["operation"] for x in mine} >= {"create", "pull"} else None

        _eventually(dev_logs, "dev's push and pull in the audit log")

        # dev may not delete (developers push, maintainers delete); the admin deletes the tag.
        tag_path = "/api/v2.0/projects/team/repositories/app/artifacts/v1/tags/v1"
        status, _, body = curl("DELETE", tag_path, dev)
        assert (status, body["errors"][0]["code"]) == (403, "FORBIDDEN")
        status, headers, body = curl("DELETE", tag_path, admin)
        assert (status, body) == (200, None)
        status, _, tags = curl(
            "GET", f"/api/v2.0/projects/team/repositories/app/artifacts/{artifact['digest']}/tags", dev
        )
        assert (status, tags) == (200, [])
        skopeo.fails("inspect", "--raw", "--tls-verify=false", f"docker://{address}/team/app:v1")

        def tag_deleted() -> bool:
            query = urllib.parse.quote("operation=delete")
            status, _, logs = curl("GET", f"/api/v2.0/projects/team/logs?q={query}", admin)
            assert status == 200, status
            return any(x["username"] == "admin" and x["resource"] == "team/app:v1" for x in logs)

        _eventually(tag_deleted, "the admin's tag delete in the project's log")
    finally:
        code = run.interrupt()
    assert code == 0, run.text()[-3000:]
