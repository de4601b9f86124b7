"""Replication between sites, as a new user sets it up: two `wharf run`s side by side (what two
`make run`s start: each its own SQLite, storage, private Redis, job service worker and scheduler;
they differ only in WHARF_DATA_DIR and WHARF_HTTP_PORT) and Debian's docker-registry, driven with
curl-like calls to Harbor's API and skopeo.

On site A: registry B (type harbor: the other Wharf) and registry D (docker-registry); an
event-based push policy A → B for `library/**` that replicates deletes, a manual one A → D, and a
pull-based scheduled one B → A for `incoming/**` (every 2 s). A push to A reaches B by itself, the
manual execution copies it to D, an image pushed to B shows up on A, digests identical everywhere;
a tag added and removed through A's API is added and removed on B; deleting the artifact on A
removes it from B. Every execution ends Succeed, with its tasks and logs.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Registry, Skopeo, make_skopeo
from tests.e2e.test_harbor_routine import Curl, _eventually
from tests.images import make_image, write_layout
from tests.support.distribution import distribution
from tests.support.processes import ServiceProcess, free_port, service_env
from tests.support.wharf_run import Run

pytestmark = pytest.mark.e2e

PASSWORD = "Site-admin-1"


class Site:
    """One `wharf run`, started with only its data dir, its front port and the admin's password."""

    def __init__(self, tmp: Path, name: str) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        env = service_env(
            {
                "WHARF_DATA_DIR": str(tmp / name),
                "WHARF_HTTP_PORT": str(self.port),
                "WHARF_ADMIN_PASSWORD": PASSWORD,
            }
        )
        env.pop("WHARF_REDIS_URL", None)  # the private Redis, as make run
        self.run = Run(tmp, env, name)
        self.api = Curl(self.url)
        self.admin = ("admin", PASSWORD)

    def started(self) -> None:
        self.run.wait_for(re.escape(f"Wharf is running at {self.url}"), timeout=120)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
        return self.api(method, "/api/v2.0" + path, self.admin, body)

    def created(self, path: str, body: Any) -> int:
        status, headers, answer = self.call("POST", path, body)
        assert status == 201, (path, status, answer)
        return int(headers["location"].rsplit("/", 1)[1])


def digest(skopeo: Skopeo, ref: str, creds: str | None = PASSWORD) -> str | None:
    args = ["inspect", "--tls-verify=false", "--format", "{{.Digest}}"]
    if creds is not None:
        args += ["--creds", f"admin:{creds}"]
    result = skopeo.run(*args, ref)
    return result.stdout.decode().strip() if result.returncode == 0 else None


def executions(site: Site, policy_id: int) -> list[dict[str, Any]]:
    status, _, found = site.call("GET", f"/replication/executions?policy_id={policy_id}")
    assert status == 200
    return list(found)


def ended(site: Site, policy_id: int, count: int = 1) -> list[dict[str, Any]]:
    """The policy's first `count` executions once none of them is in progress."""

    def check() -> list[dict[str, Any]] | None:
        found = executions(site, policy_id)
        if len(found) >= count and all(e["status"] != "InProgress" for e in found):
            return found
        return None

    result: list[dict[str, Any]] = _eventually(check, f"policy {policy_id}'s executions ending", timeout=90)
    return result


def test_two_sites_and_a_docker_registry(tmp_path: Path) -> None:
    a, b = Site(tmp_path, "site-a"), Site(tmp_path, "site-b")
    layout_a, layout_b = tmp_path / "layout-a", tmp_path / "layout-b"
    write_layout(layout_a, [make_image("replicated-from-a", layer_sizes=(300_000, 70_000))])
    write_layout(layout_b, [make_image("replicated-from-b")])
    try:
        with distribution(tmp_path / "docker-registry") as plain:
            a.started()
            b.started()
            holder = ServiceProcess("wharf-run", [], {}, "127.0.0.1", a.port, a.run.log)
            skopeo = make_skopeo(Registry(holder, "token", "sqlite", tmp_path, None), tmp_path / "skopeo")

            # Site A's registries and policies, as an admin sets them up through the API.
            site_b = a.created(
                "/registries",
                {
                    "name": "site-b",
                    "type": "harbor",
                    "url": b.url,
                    "insecure": True,
                    "credential": {"type": "basic", "access_key": "admin", "access_secret": PASSWORD},
                },
            )
            plain_id = a.created(
                "/registries", {"name": "plain", "type": "docker-registry", "url": plain.url}
            )
            for registry_id in (site_b, plain_id):
                status, _, answer = a.call("POST", "/registries/ping", {"id": registry_id})
                assert status == 200, answer
            to_b = a.created(
                "/replication/policies",
                {
                    "name": "to-b",
                    "dest_registry": {"id": site_b},
                    "filters": [{"type": "name", "value": "library/**"}],
                    "trigger": {"type": "event_based"},
                    "replicate_deletion": True,
                    "override": True,
                    "enabled": True,
                },
            )
            to_plain = a.created(
                "/replication/policies",
                {"name": "to-plain", "dest_registry": {"id": plain_id}, "trigger": {"type": "manual"}},
            )
            from_b = a.created(
                "/replication/policies",
                {
                    "name": "from-b",
                    "src_registry": {"id": site_b},
                    "filters": [{"type": "name", "value": "incoming/**"}],
                    "trigger": {"type": "scheduled", "trigger_settings": {"cron": "*/2 * * * * *"}},
                },
            )

            # A push to A: the event-based policy copies it to B by itself.
            skopeo.ok(
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                f"admin:{PASSWORD}",
                f"oci:{layout_a}:latest",
                f"docker://{a.address}/library/app:v1",
            )
            pushed = digest(skopeo, f"docker://{a.address}/library/app:v1")
            assert pushed is not None
            _eventually(
                lambda: digest(skopeo, f"docker://{b.address}/library/app:v1") == pushed,
                "library/app:v1 on site B with the same digest",
                timeout=90,
            )
            (event_run,) = ended(a, to_b)
            assert (event_run["trigger"], event_run["status"]) == ("event_based", "Succeed"), event_run
            assert event_run["succeed"] >= 1

            # The manual policy, started through the API, copies it to the docker-registry.
            started = a.created("/replication/executions", {"policy_id": to_plain})
            (manual_run,) = ended(a, to_plain)
            assert manual_run["id"] == started
            assert (manual_run["trigger"], manual_run["status"]) == ("manual", "Succeed"), manual_run
            assert digest(skopeo, f"docker://{plain.host}:{plain.port}/library/app:v1", creds=None) == pushed
            status, _, tasks = a.call("GET", f"/replication/executions/{started}/tasks")
            assert status == 200
            assert [t["status"] for t in tasks] == ["Succeed"], tasks
            log_url = f"{a.url}/api/v2.0/replication/executions/{started}/tasks/{tasks[0]['id']}/log"
            log = subprocess.run(
                ["curl", "-sS", "--noproxy", "*", "-u", f"admin:{PASSWORD}", "-f", log_url],
                capture_output=True,
                check=True,
                timeout=60,
            ).stdout.decode()
            assert "library/app" in log, log

            # An image pushed to B under incoming/ is pulled into A by the scheduled policy.
            assert b.created("/projects", {"project_name": "incoming", "metadata": {"public": "false"}})
            skopeo.ok(
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                f"admin:{PASSWORD}",
                f"oci:{layout_b}:latest",
                f"docker://{b.address}/incoming/thing:v1",
            )
            from_b_digest = digest(skopeo, f"docker://{b.address}/incoming/thing:v1")
            assert from_b_digest is not None
            _eventually(
                lambda: digest(skopeo, f"docker://{a.address}/incoming/thing:v1") == from_b_digest,
                "incoming/thing:v1 pulled into site A with the same digest",
                timeout=90,
            )
            pulled = [e for e in executions(a, from_b) if e["succeed"] >= 1]
            assert pulled, executions(a, from_b)
            assert {e["trigger"] for e in executions(a, from_b)} == {"scheduled"}

            # A tag added through A's API reaches B; removed there, it goes from B, the artifact stays.
            status, _, answer = a.call(
                "POST", "/projects/library/repositories/app/artifacts/v1/tags", {"name": "v2"}
            )
            assert status == 201, answer
            _eventually(
                lambda: digest(skopeo, f"docker://{b.address}/library/app:v2") == pushed,
                "the tag v2 replicated to site B",
                timeout=90,
            )
            status, _, answer = a.call("DELETE", "/projects/library/repositories/app/artifacts/v1/tags/v2")
            assert status == 200, answer
            _eventually(
                lambda: digest(skopeo, f"docker://{b.address}/library/app:v2") is None,
                "the tag v2 deleted on site B",
                timeout=90,
            )
            assert digest(skopeo, f"docker://{b.address}/library/app:v1") == pushed

            # Deleting the artifact on A removes it from B (replicate_deletion).
            status, _, answer = a.call("DELETE", "/projects/library/repositories/app/artifacts/v1")
            assert status == 200, answer
            _eventually(
                lambda: digest(skopeo, f"docker://{b.address}/library/app:v1") is None,
                "library/app:v1 deleted on site B",
                timeout=90,
            )
            runs = ended(a, to_b, count=3)  # events that came together may share an execution
            assert {e["status"] for e in runs} == {"Succeed"}, runs
    finally:
        for site in (a, b):
            if site.run.process.poll() is None:
                assert site.run.interrupt() == 0, site.run.text()[-3000:]
