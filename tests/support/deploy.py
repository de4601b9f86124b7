"""A site rolled out with the real playbooks (ansible/) over real SSH onto loopback "hosts".

Each host is an address 127.0.0.N reached through one private sshd (tests/support/sshd.py), with
a root prefix of its own (`wharf_root`) under the site's folder, so that hosts share no file but
the storage folder (the site's shared mount) and services of the same kind may listen on the same
port on different addresses. Services run under the roles' supervisor mode (no systemd here).
PostgreSQL and Redis are the machine's (a fresh database and a leased Redis DB number), unless a
host is in the group `redis`: then the services use Wharf's own Redis there (roles/redis, on
`ports["redis"]`), by the default `wharf_redis_url`.

Every process the site started (supervisord per host and the services under it) is found by its
command line and killed at the end, whatever state the test left them in.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.support import backends
from tests.support.processes import ROOT, free_port
from tests.support.sshd import Sshd, running_sshd

ANSIBLE_DIR = ROOT / "ansible"
BIN = Path(sys.executable).parent
GROUPS = ("proxy", "ui", "token", "registry", "jobservice", "nginx", "haproxy")
# Optional groups: PostgreSQL and Redis installed by the rollout (playbooks/datastores.yml).
DATASTORE_GROUPS = ("postgres", "redis")
PLAYBOOK_TIMEOUT = 1200
ADMIN_PASSWORD = "Deploy-admin-1"
_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@dataclass
class Host:
    name: str
    address: str
    groups: tuple[str, ...]


@dataclass
class Recap:
    """A playbook run: its exit status, output, and per host the tasks that changed something."""

    returncode: int
    output: str
    changed: dict[str, int]
    failed: dict[str, int]

    def explain(self) -> str:
        return f"exit {self.returncode}\n{self.output[-8000:]}"

    def changes_under(self, task_prefix: str) -> list[str]:
        """The hosts (with the loop item, if any) on which a task whose name starts with
        `task_prefix` changed something: e.g. which services were drained."""
        found, inside = [], False
        for line in self.output.splitlines():
            if line.startswith("TASK ["):
                inside = line[len("TASK [") :].startswith(task_prefix)
            elif inside and line.startswith("changed: ["):
                found.append(line[len("changed: [") :].split("]", 1)[0])
        return found


@dataclass
class Site:
    folder: Path
    sshd: Sshd
    database_url: str
    redis_url: str
    ports: dict[str, int]
    hosts: list[Host] = field(default_factory=list)
    release: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # group_vars/all extras

    # -- layout

    @property
    def storage(self) -> Path:
        return self.folder / "storage"

    @property
    def vault_password_file(self) -> Path:
        return self.folder / "vault-password.txt"

    def root(self, host: Host) -> Path:
        return self.folder / "hosts" / host.name

    def in_group(self, group: str) -> list[Host]:
        return [h for h in self.hosts if group in h.groups]

    def url(self, host: Host, group: str) -> str:
        return f"http://{host.address}:{self.ports[group]}"

    def add_host(self, name: str, address: str, *groups: str) -> Host:
        host = Host(name, address, tuple(groups))
        self.hosts.append(host)
        return host

    # -- inventory

    def write_inventory(self) -> Path:
        children: dict[str, Any] = {g: {"hosts": {}} for g in GROUPS + DATASTORE_GROUPS}
        for host in self.hosts:
            for group in host.groups:
                children[group]["hosts"][host.name] = {
                    "ansible_host": host.address,
                    "wharf_root": str(self.root(host)),
                }
        inventory = {
            "all": {
                "vars": {
                    "ansible_user": "root",
                    "ansible_port": self.sshd.port,
                    "ansible_ssh_private_key_file": str(self.sshd.key),
                    "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                    "ansible_python_interpreter": "/usr/bin/python3",
                },
                "children": children,
            }
        }
        folder = self.folder / "inventory"
        (folder / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
        path = folder / "hosts.yml"
        path.write_text(json.dumps(inventory, indent=2))  # JSON is YAML
        site_vars = {
            "wharf_service_manager": "supervisor",
            # The packages are the test machine's (scripts/bootstrap.sh test installs them).
            "wharf_install_packages": False,
            "wharf_external_url": self.settings.get("external_url", ""),
            "wharf_redis_port": self.ports["redis"],
            "wharf_workers": 1,
            "wharf_proxy_workers": 2,
            "wharf_database_pool_size": 5,
            "wharf_proxy_port": self.ports["proxy"],
            "wharf_ui_port": self.ports["ui"],
            "wharf_token_port": self.ports["token"],
            "wharf_registry_port": self.ports["registry"],
            "wharf_jobservice_port": self.ports["jobservice"],
            "wharf_nginx_port": self.ports["nginx"],
            "wharf_haproxy_port": self.ports["haproxy"],
            "wharf_storage": {"driver": "filesystem", "filesystem": {"root": str(self.storage)}},
            "wharf_settings": {
                "proxy": {"health_interval_seconds": 0.5, "eject_seconds": 2.0},
                "log_level": "info",
            },
            "wharf_drain_timeout": 60,
        }
        if not self.in_group("redis"):
            # the machine's Redis; with a host in the group redis, the default: Wharf's own there
            site_vars["wharf_redis_url"] = self.redis_url
        if self.release is not None:
            site_vars["wharf_release_archive"] = str(self.release)
        site_vars.update({k: v for k, v in self.settings.items() if k.startswith("wharf_")})
        (folder / "group_vars" / "all" / "main.yml").write_text(json.dumps(site_vars, indent=2))
        return path

    def write_vault(self) -> None:
        """The site's vault (new keys every time), for its `database_url`."""
        self.vault_password_file.write_text("deploy-test-vault-password\n")
        subprocess.run(
            [
                str(BIN / "python"),
                str(ANSIBLE_DIR / "scripts" / "new-secrets.py"),
                "--database-url",
                self.database_url,
                "--admin-password",
                ADMIN_PASSWORD,
                "--vault-password-file",
                str(self.vault_password_file),
                "--force",
                str(self.folder / "inventory" / "group_vars" / "all" / "vault.yml"),
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"},
        )

    # -- runs

    def playbook(self, name: str, *extra: str, log_name: str | None = None) -> Recap:
        inventory = self.write_inventory()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("WHARF_", "ANSIBLE_"))},
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.folder / "cp"),
            "ANSIBLE_LOCAL_TEMP": str(self.folder / "ansible-tmp"),
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
        }
        result = subprocess.run(
            [
                str(BIN / "ansible-playbook"),
                "-i",
                str(inventory),
                "--vault-password-file",
                str(self.vault_password_file),
                str(ANSIBLE_DIR / name),
                *extra,
            ],
            cwd=ANSIBLE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=PLAYBOOK_TIMEOUT,
            check=False,
        )
        output = result.stdout + result.stderr
        (self.folder / f"{log_name or name}.log").write_text(output)
        changed: dict[str, int] = {}
        failed: dict[str, int] = {}
        for host, _ok, n_changed, unreachable, n_failed in _RECAP.findall(output):
            changed[host] = int(n_changed)
            failed[host] = int(n_failed) + int(unreachable)
        return Recap(result.returncode, output, changed, failed)

    # -- looking at the hosts

    def service_log(self, host: Host, service: str, lines: int = 40) -> str:
        path = self.root(host) / "var" / "log" / "wharf" / f"{service}.log"
        if not path.exists():
            return f"({path} missing)"
        return f"--- {host.name} {service} ---\n" + "\n".join(
            path.read_text(errors="replace").splitlines()[-lines:]
        )

    def logs(self, lines: int = 20) -> str:
        return "\n".join(self.service_log(h, g, lines) for h in self.hosts for g in h.groups)

    def supervisorctl(self, host: Host, *args: str) -> subprocess.CompletedProcess[str]:
        conf = self.root(host) / "etc" / "wharf" / "supervisord.conf"
        return subprocess.run(
            ["supervisorctl", "-c", str(conf), *args], capture_output=True, text=True, timeout=60, check=False
        )

    def running_pid(self, host: Host, service: str) -> int | None:
        """The service's main process, as supervisor knows it (None while it is not running)."""
        out = self.supervisorctl(host, "pid", f"wharf-{service}").stdout.strip()
        return int(out) if out.isdigit() and out != "0" else None

    def main_pid(self, host: Host, service: str) -> int:
        pid = self.running_pid(host, service)
        if pid is None:
            raise AssertionError(f"wharf-{service} on {host.name} is not running")
        return pid

    def kill(self, host: Host, service: str) -> int:
        """SIGKILL the service's main process and its workers, as a crash would; supervisor
        starts it again."""
        pid = self.main_pid(host, service)
        parent = psutil.Process(pid)
        for process in [*parent.children(recursive=True), parent]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        return pid

    def processes(self) -> Iterable[psutil.Process]:
        marker = str(self.folder)
        for process in psutil.process_iter(["cmdline", "environ"]):
            try:
                cmdline = " ".join(process.info["cmdline"] or [])
                environ = process.info["environ"] or {}
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if marker in cmdline or marker in environ.get("WHARF_CONFIG_FILE", ""):
                yield process

    def stop_everything(self) -> None:
        """SIGKILL every process the site started: the tests are over, a graceful stop (drains,
        grace periods, one host after another) would only cost minutes."""
        for _ in range(3):  # supervisord may restart a program between two kills
            found = list(self.processes())
            if not found:
                return
            for process in list(found):
                # nginx's and HAProxy's workers name no folder: found through their master
                with contextlib.suppress(psutil.NoSuchProcess):
                    found.extend(process.children(recursive=True))
            for process in found:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
            psutil.wait_procs(found, timeout=10)


def build_release(source: Path, archive: Path) -> Path:
    """The release archive of the tree at `source` (scripts/build-release.sh)."""
    subprocess.run(
        [str(source / "scripts" / "build-release.sh"), str(archive)],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return archive


def derive_release(base: Path, source: Path, archive: Path) -> Path:
    """`base`'s release with Wharf's own wheel rebuilt from `source` (the dependencies' wheels are
    the same): a second release in seconds rather than a whole build."""
    work = Path(tempfile.mkdtemp(prefix="wharf-release-"))
    try:
        wheels = work / "wheels"
        wheels.mkdir()
        subprocess.run(["tar", "-C", str(wheels), "-xf", str(base)], check=True)
        for old in wheels.glob("wharf-*.whl"):
            old.unlink()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--wheel-dir",
                str(wheels),
                str(source),
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
        subprocess.run(["tar", "-C", str(wheels), "-cf", str(archive), "."], check=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return archive


@contextmanager
def site(addresses: Iterable[str]) -> Iterator[Site]:
    """An empty site: its folder (outside pytest's private tmp: the service user must enter it),
    an sshd answering on `addresses`, a fresh PostgreSQL database and a Redis DB number."""
    if os.geteuid() != 0:
        backends.unavailable(
            "root", PermissionError("the deployment tests run sshd, supervisord and a service user")
        )
    if shutil.which("supervisord") is None:
        backends.unavailable(
            "supervisor", FileNotFoundError("supervisord is not on PATH (apt install supervisor)")
        )
    folder = Path(tempfile.mkdtemp(prefix="wharf-deploy-", dir="/var/tmp"))
    folder.chmod(0o755)
    ports = {group: free_port("0.0.0.0") for group in (*GROUPS, "redis")}  # noqa: S104 - free on every address
    try:
        with (
            running_sshd(folder / "sshd", list(addresses)) as sshd,
            backends.fresh_database("postgresql", str(folder), migrated=False) as database_url,
            backends.leased_redis_db() as redis_url,
        ):
            the_site = Site(folder, sshd, database_url, redis_url, ports)
            (folder / "inventory" / "group_vars" / "all").mkdir(parents=True)
            the_site.write_vault()
            try:
                yield the_site
            finally:
                the_site.stop_everything()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
