"""nginx and HAProxy as Wharf's front door, rolled out by site.yml (roles nginx and haproxy) over
real SSH onto loopback hosts, under the roles' supervisor mode (tests/support/deploy.py).

The site: app-1 (token, registry, ui), web-1 (nginx, sending blobs from the shared storage
itself), lb-1 (HAProxy); no wharf-proxy. A second registry host joins later. The tests run in
order on one site:

1. site.yml with the external URL at nginx: the rendered nginx.conf and haproxy.cfg pass
   `nginx -t` and `haproxy -c`, their pools are the inventory's, and skopeo logs in, pushes and
   pulls through nginx (blobs leave through nginx's internal redirect).
2. site.yml with the external URL at HAProxy (the registry's challenge names
   `<external URL>/service/token`, so each front is tried with the realm its own): skopeo logs in,
   pushes and pulls through HAProxy; a second site.yml changes nothing.
3. A registry host added to the inventory and site.yml run again while a client pulls through
   each front in a loop: nginx and HAProxy reload (same master process, new pools), the new
   instance serves through both, and no pull fails.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import Registry, Skopeo, make_skopeo
from tests.images import make_image, write_layout
from tests.support import backends, deploy
from tests.support.deploy import Host, Site
from tests.support.front_door import (
    DIRECT,
    ClientLoop,
    add_developer,
    pull_and_check,
    push,
    ready,
    wait_until,
)
from tests.support.processes import ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ADDRESSES = [f"127.0.0.{i}" for i in range(21, 25)]
PROJECT = "fronts"
DEVELOPER, DEVELOPER_PASSWORD = "dev-fronts", "Developer-secret-2"
NGINX = "/usr/sbin/nginx"
HAPROXY = "/usr/sbin/haproxy"


@dataclass
class Fronts:
    site: Site
    skopeo: Skopeo
    images: list[Path]
    folder: Path
    app: Host
    web: Host
    lb: Host

    def front(self, kind: str) -> str:
        """host:port of the nginx or HAProxy front door."""
        host = self.web if kind == "nginx" else self.lb
        return f"{host.address}:{self.site.ports[kind]}"

    def etc(self, host: Host) -> Path:
        return self.site.root(host) / "etc" / "wharf"

    def log(self, host: Host, name: str) -> Path:
        return self.site.root(host) / "var" / "log" / "wharf" / name


def challenge(front: str) -> str:
    """The WWW-Authenticate header of an anonymous GET /v2/ through `front`."""
    with pytest.raises(urllib.error.HTTPError) as raised:
        DIRECT.open(f"http://{front}/v2/", timeout=30).close()
    raised.value.close()
    assert raised.value.code == 401, raised.value.code
    return str(raised.value.headers.get("WWW-Authenticate", ""))


def bearer_token(front: str, scope: str) -> str:
    """A token from the realm that `front`'s challenge names, for the developer."""
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge(front)))
    query = urllib.parse.urlencode({"service": params["service"], "scope": scope})
    auth = base64.b64encode(f"{DEVELOPER}:{DEVELOPER_PASSWORD}".encode()).decode()
    assert params["realm"].startswith("http://"), params
    url = f"{params['realm']}?{query}"
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {auth}"})  # noqa: S310 - checked
    with DIRECT.open(request, timeout=30) as response:
        return str(json.load(response)["token"])


def forged_blob_get(front: str, repository: str, digest: str, token: str) -> tuple[dict[str, str], bytes]:
    """GET a blob through `front` with the front door's internal headers forged by the client."""
    request = urllib.request.Request(
        f"http://{front}/v2/{repository}/blobs/{digest}",
        headers={
            "Authorization": f"Bearer {token}",
            "X-Wharf-Accel": "blobs",
            "X-Accel-Redirect": "/_wharf/storage/blobs/../../etc/passwd",
        },
    )
    with DIRECT.open(request, timeout=30) as response:
        return {k.lower(): v for k, v in response.headers.items()}, response.read()


def push_image(fronts: Fronts, layout: Path, ref: str) -> str:
    """Push the layout's image to `ref`; its manifest digest."""
    digest_file = fronts.folder / "pushed-digest"
    failure = push(fronts.skopeo, layout, ref, digest_file)
    assert failure is None, failure + "\n" + fronts.site.logs(15)
    return digest_file.read_text().strip()


def config_servers(text: str) -> list[str]:
    """host:port of every `server` line of an nginx.conf or haproxy.cfg, in order."""
    return re.findall(r"^\s*server\s+(?:\S+\s+)?(\d+\.\d+\.\d+\.\d+:\d+)", text, re.M)


def pool_of(fronts: Fronts, group: str) -> list[str]:
    return [f"{h.address}:{fronts.site.ports[group]}" for h in fronts.site.in_group(group)]


def check_configs(fronts: Fronts) -> None:
    """The rendered files pass nginx's and HAProxy's own checks, and their pools are the inventory's."""
    nginx_conf = fronts.etc(fronts.web) / "nginx" / "nginx.conf"
    haproxy_cfg = fronts.etc(fronts.lb) / "haproxy" / "haproxy.cfg"
    checked = subprocess.run(
        [NGINX, "-t", "-e", "stderr", "-c", str(nginx_conf)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    checked = subprocess.run(
        [HAPROXY, "-c", "-f", str(haproxy_cfg)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    expected = pool_of(fronts, "registry") + pool_of(fronts, "token") + pool_of(fronts, "ui")
    assert config_servers(nginx_conf.read_text()) == expected
    assert config_servers(haproxy_cfg.read_text()) == expected


@pytest.fixture(scope="module")
def fronts(tmp_path_factory: pytest.TempPathFactory, release: Path) -> Iterator[Fronts]:
    for binary in (NGINX, HAPROXY):
        if not Path(binary).exists():
            backends.unavailable(binary, FileNotFoundError(f"{binary} missing (apt install nginx haproxy)"))
    folder = tmp_path_factory.mktemp("fronts")
    with deploy.site(ADDRESSES) as site:
        site.release = release
        app = site.add_host("app-1", ADDRESSES[0], "token", "registry", "ui")
        web = site.add_host("web-1", ADDRESSES[1], "nginx")
        lb = site.add_host("lb-1", ADDRESSES[2], "haproxy")
        # the storage folder is the site's shared mount: web-1 has it too
        site.settings["wharf_nginx_local_blobs"] = True
        # skopeo's failure messages show the registry's log
        log = site.root(app) / "var" / "log" / "wharf" / "registry.log"
        seen = ServiceProcess("app-1", [], {}, app.address, site.ports["registry"], log)
        skopeo = make_skopeo(Registry(seen, "token", "postgresql", site.folder, None), folder / "skopeo")
        images = []
        for i in range(2):
            layout = folder / "images" / str(i)
            write_layout(layout, [make_image(f"fronts-{i}", layer_sizes=(256 * 1024 * (1 + i), 8192))])
            images.append(layout)
        yield Fronts(site, skopeo, images, folder, app, web, lb)


def deploy_with_external_url(fronts: Fronts, kind: str) -> deploy.Recap:
    site = fronts.site
    site.settings["external_url"] = f"http://{fronts.front(kind)}"
    recap = site.playbook("site.yml", log_name=f"site-{kind}")
    assert recap.returncode == 0, recap.explain()
    for group in fronts.app.groups:
        wait_until(lambda: ready(site.url(fronts.app, group)), f"app-1's {group} is ready")  # noqa: B023
    return recap


@pytest.mark.timeout(1800)
def test_site_yml_puts_nginx_and_haproxy_in_front_and_nginx_serves(fronts: Fronts) -> None:
    site = fronts.site
    recap = deploy_with_external_url(fronts, "nginx")
    assert recap.changed.get("web-1"), recap.changed
    assert recap.changed.get("lb-1"), recap.changed
    for host, program in ((fronts.web, "nginx"), (fronts.lb, "haproxy")):
        status = site.supervisorctl(host, "status", f"wharf-{program}").stdout
        assert "RUNNING" in status, status + site.service_log(host, program)
    check_configs(fronts)

    front = fronts.front("nginx")
    assert f'realm="http://{front}/service/token"' in challenge(front)
    add_developer(front, PROJECT, DEVELOPER, DEVELOPER_PASSWORD)
    fronts.skopeo.ok("login", "--tls-verify=false", "-u", DEVELOPER, "-p", DEVELOPER_PASSWORD, front)
    ref = f"docker://{front}/{PROJECT}/via-nginx:1"
    digest = push_image(fronts, fronts.images[0], ref)
    failure = pull_and_check(fronts.skopeo, ref, fronts.folder / "pulled-nginx", digest)
    assert failure is None, failure + "\n" + site.logs(15)

    # Blob GETs left through nginx's internal redirect (its access log shows the final URI).
    access = fronts.log(fronts.web, "nginx-access.log").read_text()
    assert '"path":"/_wharf/storage/blobs/sha256/' in access, access[-3000:]


@pytest.mark.timeout(1800)
def test_haproxy_serves_with_its_own_realm_and_a_second_run_changes_nothing(fronts: Fronts) -> None:
    site = fronts.site
    deploy_with_external_url(fronts, "haproxy")
    front = fronts.front("haproxy")
    assert f'realm="http://{front}/service/token"' in challenge(front)
    fronts.skopeo.ok("login", "--tls-verify=false", "-u", DEVELOPER, "-p", DEVELOPER_PASSWORD, front)
    ref = f"docker://{front}/{PROJECT}/via-haproxy:1"
    digest = push_image(fronts, fronts.images[1], ref)
    for pulled in (ref, f"docker://{front}/{PROJECT}/via-nginx:1"):
        failure = pull_and_check(fronts.skopeo, pulled, fronts.folder / "pulled-haproxy", None)
        assert failure is None, failure + "\n" + site.logs(15)
    assert pull_and_check(fronts.skopeo, ref, fronts.folder / "pulled-haproxy", digest) is None
    # A client's forged internal headers change nothing: the whole blob comes back, no redirect.
    blob = next(
        p for p in (fronts.folder / "pulled-haproxy").iterdir() if re.fullmatch(r"[0-9a-f]{64}", p.name)
    )
    token = bearer_token(front, f"repository:{PROJECT}/via-haproxy:pull")
    for kind in ("nginx", "haproxy"):
        headers, body = forged_blob_get(
            fronts.front(kind), f"{PROJECT}/via-haproxy", f"sha256:{blob.name}", token
        )
        assert hashlib.sha256(body).hexdigest() == blob.name, (kind, headers)
        assert not {"x-accel-redirect", "x-wharf-blob-length"} & set(headers), (kind, headers)
    served = fronts.log(fronts.lb, "haproxy.log").read_text()
    assert '"path":"/service/token"' in served, served[-3000:]
    assert '"upstream":"registry/' in served, served[-3000:]

    second = site.playbook("site.yml", log_name="site-second")
    assert second.returncode == 0, second.explain()
    changed = {host: n for host, n in second.changed.items() if n}
    assert not changed, f"a second site.yml changed {changed}:\n" + "\n".join(
        line for line in second.output.splitlines() if line.startswith(("changed:", "TASK ["))
    )


def served_by(fronts: Fronts, registry: str) -> dict[str, bool]:
    """Whether each front's access log shows a request `registry` (host:port) answered."""
    nginx_log = fronts.log(fronts.web, "nginx-access.log").read_text()
    haproxy_log = fronts.log(fronts.lb, "haproxy.log").read_text()
    return {
        "nginx": registry in nginx_log,  # $upstream_addr: one address, or the ones tried
        "haproxy": f'"upstream":"registry/{registry}"' in haproxy_log,
    }


def workers(pid: int) -> set[int]:
    return {child.pid for child in psutil.Process(pid).children()}


@pytest.mark.timeout(1800)
def test_a_new_registry_host_reloads_both_fronts_without_a_failed_pull(fronts: Fronts) -> None:
    site = fronts.site
    masters = {
        kind: site.running_pid(host, kind) for kind, host in (("nginx", fronts.web), ("haproxy", fronts.lb))
    }
    assert None not in masters.values(), masters
    nginx_workers = workers(masters["nginx"] or 0)
    new = site.add_host("app-2", ADDRESSES[3], "registry")
    registry = f"{new.address}:{site.ports['registry']}"
    digest_file = fronts.folder / "pulled-haproxy" / "manifest.json"
    digest = "sha256:" + hashlib.sha256(digest_file.read_bytes()).hexdigest()
    loops = [
        ClientLoop(
            fronts.skopeo,
            fronts.folder,
            f"docker://{fronts.front(kind)}/{PROJECT}/via-haproxy",
            pull_only=True,
            pushed=("1", digest),
        )
        for kind in ("nginx", "haproxy")
    ]
    with loops[0], loops[1]:
        for loop in loops:
            loop.wait_for(2)
        recap = site.playbook("site.yml", log_name="site-scale")
        assert recap.returncode == 0, recap.explain()
        for kind in ("nginx", "haproxy"):
            assert f"RUNNING HANDLER [{kind} : reload wharf-{kind} (supervisor)]" in recap.output, (
                recap.output[-5000:]
            )
        check_configs(fronts)
        assert registry in pool_of(fronts, "registry")
        wait_until(
            lambda: all(served_by(fronts, registry).values()), "the new registry serves through both fronts"
        )
        for loop in loops:
            loop.wait_for(loop.operations + 3)
    for loop in loops:
        assert not loop.failures, loop.explain(site.logs(15))
    # Reloaded, not restarted: the same masters, nginx with new workers.
    for kind, host in (("nginx", fronts.web), ("haproxy", fronts.lb)):
        assert site.running_pid(host, kind) == masters[kind], f"wharf-{kind} was restarted, not reloaded"
    assert not (workers(masters["nginx"] or 0) & nginx_workers), "nginx kept its old workers"
    print(  # noqa: T201
        f"\nscaling behind nginx and HAProxy: {loops[0].operations} + {loops[1].operations} pulls, 0 failed"
    )
