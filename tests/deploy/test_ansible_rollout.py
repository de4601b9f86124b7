"""The Ansible rollout (ansible/), run for real: ansible-playbook over SSH (a private sshd on
loopback) onto hosts 127.0.0.2…, each with a root prefix of its own, services under supervisor,
PostgreSQL and Redis of the machine, a storage folder shared as a mount would be.

The site: two proxies (behind one balanced address, as a VIP or a DNS name with two addresses
gives), two ui+token hosts, two registry+jobservice hosts; a third registry host joins later.
The tests run in order on one site (they tell one story) and each leaves it serving:

1. site.yml deploys it; skopeo pushes and pulls through the front door as a project member (not
   an admin); a second site.yml changes nothing.
2. A registry host is added to the inventory and site.yml run again, while a client pulls in a
   loop: every proxy's pool gains it, with no failed pull.
3. upgrade.yml rolls a build with a new migration out, host by host, while a client pushes and
   pulls in a loop: no failed operation, every digest intact, every host on the new release.
4. Every instance of every service is killed in turn (SIGKILL, workers too; a proxy included)
   while the client loops: no failed operation.

skopeo runs with `--retry-times 3` (as docker retries a failed layer on its own): a proxy killed
mid-transfer cuts its connections, and the client's retry reaches the other proxy. How many
operations ran, and how many connections the balancer had to move, is printed for the record.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Registry, Skopeo, make_skopeo
from tests.images import make_image, write_layout
from tests.support import deploy
from tests.support.balancer import Balancer
from tests.support.deploy import Host, Site
from tests.support.front_door import DIRECT, ClientLoop, add_developer, ready, wait_until
from tests.support.processes import ROOT, ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ADDRESSES = [f"127.0.0.{i}" for i in range(2, 10)]
PROJECT = "rollout"
DEVELOPER, DEVELOPER_PASSWORD = "dev-1", "Developer-secret-1"
UPGRADE_VERSION = "0.1.1"
PACE_SECONDS = 0.2  # between a client's rounds: steady traffic, CPU left for the rollout


@dataclass
class Deployment:
    site: Site
    balancer: Balancer
    skopeo: Skopeo
    images: list[Path]
    folder: Path
    upgrade_release: Path
    first_recap: deploy.Recap | None = None
    second_recap: deploy.Recap | None = None

    @property
    def front(self) -> str:
        return self.balancer.address


def _upgrade_source(folder: Path) -> Path:
    """This tree with one more migration (an expand one: a nullable column) and a new version."""
    source = folder / "upgrade-source"
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "var", "dist", "test-results", "*.egg-info", "build", ".*_cache"
    )
    shutil.copytree(ROOT, source, ignore=ignore, symlinks=True)
    versions = source / "shared" / "db" / "migrations" / "versions"
    head = max(p.name.split("_", 1)[0] for p in versions.glob("[0-9]*.py"))
    revision = f"{int(head) + 1:04d}"
    (versions / f"{revision}_rollout_test.py").write_text(
        '"""rollout test: a nullable column (an expand migration)"""\n\n'
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        f'revision = "{revision}"\ndown_revision = "{head}"\ncompatible_with = "{head}"\n'
        "branch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade() -> None:\n"
        '    op.add_column("project", sa.Column("rollout_note", sa.String(length=64), nullable=True))\n\n\n'
        "def downgrade() -> None:\n"
        '    op.drop_column("project", "rollout_note")\n'
    )
    pyproject = source / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('version = "0.1.0"', f'version = "{UPGRADE_VERSION}"', 1)
    )
    return source


def metrics_token(site: Site, host: Host) -> str:
    settings = tomllib.loads((site.root(host) / "etc" / "wharf" / "proxy.toml").read_text())
    return str(settings["metrics"]["token"])


def pools(site: Site, proxy: Host) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310
        f"{site.url(proxy, 'proxy')}/health/upstreams",
        headers={"Authorization": f"Bearer {metrics_token(site, proxy)}"},
    )
    with DIRECT.open(request, timeout=10) as response:
        found: dict[str, Any] = json.load(response)["pools"]
        return found


def in_rotation_everywhere(site: Site, group: str, url: str) -> bool:
    for proxy in site.in_group("proxy"):
        try:
            upstreams = pools(site, proxy)[group]["upstreams"]
        except (OSError, urllib.error.URLError):
            return False
        if not any(u["url"] == url and u["in_rotation"] for u in upstreams):
            return False
    return True


def client_loop(deployment: Deployment, name: str, *, pull_only: bool = False) -> ClientLoop:
    return ClientLoop(
        deployment.skopeo,
        deployment.folder,
        f"docker://{deployment.front}/{PROJECT}/{name}",
        deployment.images,
        pull_only=pull_only,
        pace=PACE_SECONDS,
    )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, release: Path) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("rollout")
    with deploy.site(ADDRESSES) as site:
        site.release = release
        upgrade_release = deploy.derive_release(release, _upgrade_source(folder), folder / "release-2.tar")
        site.add_host("proxy-1", "127.0.0.2", "proxy")
        site.add_host("proxy-2", "127.0.0.3", "proxy")
        site.add_host("front-1", "127.0.0.4", "ui", "token")
        site.add_host("front-2", "127.0.0.5", "ui", "token")
        site.add_host("store-1", "127.0.0.6", "registry", "jobservice")
        site.add_host("store-2", "127.0.0.7", "registry", "jobservice")
        balancer = Balancer([(h.address, site.ports["proxy"]) for h in site.in_group("proxy")]).start()
        site.settings["external_url"] = f"http://{balancer.address}"
        try:
            # skopeo's failure messages show the first proxy's log
            proxy_1 = site.hosts[0]
            log = site.root(proxy_1) / "var" / "log" / "wharf" / "proxy.log"
            seen = ServiceProcess("proxy-1", [], {}, proxy_1.address, site.ports["proxy"], log)
            skopeo = make_skopeo(Registry(seen, "token", "postgresql", site.folder, None), folder / "skopeo")
            images = []
            for i in range(4):
                layout = folder / "images" / str(i)
                write_layout(layout, [make_image(f"rollout-{i}", layer_sizes=(512 * 1024 * (1 + i), 8192))])
                images.append(layout)
            yield Deployment(site, balancer, skopeo, images, folder, upgrade_release)
        finally:
            balancer.close()


@pytest.mark.timeout(1200)
def test_site_deploys_the_split_and_a_second_run_changes_nothing(deployment: Deployment) -> None:
    site = deployment.site
    first = site.playbook("site.yml", log_name="site-1")
    assert first.returncode == 0, first.explain()
    assert set(first.changed) == {h.name for h in site.hosts}

    # Every instance answers, and every proxy's pools are the inventory's.
    for host in site.hosts:
        for group in host.groups:
            assert ready(site.url(host, group)), site.service_log(host, group)
    for proxy in site.in_group("proxy"):
        seen = pools(site, proxy)
        for group in ("registry", "token", "ui"):
            assert sorted(u["url"] for u in seen[group]["upstreams"]) == sorted(
                site.url(h, group) for h in site.in_group(group)
            )
    # The signing key is on token hosts only; every registry host has the public bundle.
    for host in site.hosts:
        etc = site.root(host) / "etc" / "wharf"
        assert (etc / "token.key").exists() == ("token" in host.groups), host
        assert (etc / "token-keys.pem").exists() == ("registry" in host.groups), host

    # A project member (not an admin) pushes and pulls through the front door.
    front = deployment.front
    add_developer(front, PROJECT, DEVELOPER, DEVELOPER_PASSWORD)
    deployment.skopeo.ok("login", "--tls-verify=false", "-u", DEVELOPER, "-p", DEVELOPER_PASSWORD, front)
    with client_loop(deployment, "first-push") as loop:
        loop.wait_for(4)
    assert not loop.failures, loop.explain(site.logs(15))

    second = site.playbook("site.yml", log_name="site-2")
    assert second.returncode == 0, second.explain()
    changed = {host: n for host, n in second.changed.items() if n}
    assert not changed, f"a second site.yml changed {changed}:\n" + "\n".join(
        line for line in second.output.splitlines() if line.startswith(("changed:", "TASK ["))
    )
    print(f"\nsite.yml on {len(site.hosts)} hosts: first run {sum(first.changed.values())} changes, second 0")  # noqa: T201


@pytest.mark.timeout(1200)
def test_a_registry_host_added_to_the_inventory_joins_every_pool(deployment: Deployment) -> None:
    site = deployment.site
    new = site.add_host("store-3", "127.0.0.8", "registry")
    with client_loop(deployment, "scaling", pull_only=True) as loop:
        loop.wait_for(2)
        recap = site.playbook("site.yml", log_name="site-scale")
        assert recap.returncode == 0, recap.explain()
        # The new host was set up; elsewhere only the proxies' pool files changed: no restart.
        assert recap.changed["store-3"] > 0
        elsewhere = {h: n for h, n in recap.changed.items() if h != "store-3"}
        expected = {h.name: 1 if "proxy" in h.groups else 0 for h in site.hosts if h.name != "store-3"}
        assert elsewhere == expected, "\n".join(
            line for line in recap.output.splitlines() if line.startswith(("changed:", "TASK ["))
        )
        wait_until(
            lambda: in_rotation_everywhere(site, "registry", site.url(new, "registry")),
            "every proxy has the new registry in rotation",
        )
        before = loop.operations
        loop.wait_for(before + 6)
    assert not loop.failures, loop.explain(site.logs(15))
    print(f"\nscaling: {loop.operations} pulls while store-3 joined, 0 failed")  # noqa: T201


@pytest.mark.timeout(1200)
def test_upgrade_rolls_a_new_release_with_no_failed_operation(deployment: Deployment) -> None:
    site = deployment.site
    site.release = deployment.upgrade_release
    began = time.monotonic()
    with client_loop(deployment, "upgrade") as loop:
        loop.wait_for(2)
        recap = site.playbook("upgrade.yml", log_name="upgrade")
        assert recap.returncode == 0, recap.explain()
        loop.wait_for(loop.operations + 4)
    assert not loop.failures, loop.explain(site.logs(15))
    for host in site.hosts:
        version = subprocess.run(
            [str(site.root(host) / "opt" / "wharf" / "current" / "bin" / "wharf"), "--version"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert UPGRADE_VERSION in version, (host, version)
        for group in host.groups:
            assert ready(site.url(host, group)), site.service_log(host, group)
    drained = recap.changes_under("common : Drain wharf-")
    # Every instance behind the proxies went out of rotation before its restart.
    assert len(drained) == sum(len(site.in_group(g)) for g in ("registry", "token", "ui")), drained
    print(  # noqa: T201
        f"\nupgrade.yml ({time.monotonic() - began:.0f} s): {loop.operations} client operations during the "
        f"roll, 0 failed; {len(drained)} instances drained before their restart"
    )


@pytest.mark.timeout(1200)
def test_killing_any_instance_fails_no_operation(deployment: Deployment) -> None:
    site = deployment.site
    killed = []
    with client_loop(deployment, "kills") as loop:
        loop.wait_for(2)
        for host in site.hosts:
            for group in host.groups:
                before = loop.operations
                old = site.kill(host, group)
                killed.append(f"{host.name}/{group}")
                url = site.url(host, group)
                wait_until(
                    lambda: site.running_pid(host, group) not in (None, old) and ready(url),  # noqa: B023
                    f"{host.name}'s {group} is back",
                )
                if group in ("registry", "token", "ui"):
                    wait_until(
                        lambda: in_rotation_everywhere(site, group, url),  # noqa: B023
                        f"{host.name}'s {group} is back in rotation",
                    )
                loop.wait_for(before + 1)
    assert not loop.failures, loop.explain(site.logs(15))
    print(  # noqa: T201
        f"\nkills: {len(killed)} instances killed ({', '.join(killed)}); "
        f"{loop.operations} client operations, 0 failed; "
        f"the balancer moved {deployment.balancer.refused} connects to the other proxy"
    )
