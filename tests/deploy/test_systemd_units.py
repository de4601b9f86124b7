"""Every systemd unit the roles write, rendered as the roles render it and checked with
`systemd-analyze verify` (systemd's own parser: unknown keys, bad values, missing binaries).

A small playbook runs on localhost (`connection: local`) into a temporary root and includes the
same task files the roles use (common's unit.yml per Wharf service, nginx's and haproxy's
unit.yml), with each service's variables read from its role's `Run wharf-<svc>` task, so the
units are the roles' and not a copy. `wharf_bin` is this checkout's virtualenv, whose bin/ has
every wharf-* program: verify wants each ExecStart binary to exist.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy import ANSIBLE_DIR, BIN

pytestmark = [pytest.mark.slow]

SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"
SERVICES = ("registry", "token", "ui", "jobservice", "proxy")
FRONTS = ("nginx", "haproxy")


def service_vars(service: str) -> dict[str, Any]:
    """The variables the service's role passes to common's service.yml (its unit's inputs)."""
    tasks = yaml.safe_load((ANSIBLE_DIR / "roles" / service / "tasks" / "main.yml").read_text())
    for task in tasks:
        include = task.get("ansible.builtin.include_role", {})
        if include.get("name") == "common" and include.get("tasks_from") == "service":
            found: dict[str, Any] = task["vars"]
            return found
    raise AssertionError(f"roles/{service}/tasks/main.yml includes no common/service task")


def render_units(folder: Path, extra_vars: dict[str, Any]) -> Path:
    """Run the roles' unit tasks on localhost into `folder`/root; the units' folder."""
    root = folder / "root"
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    tasks: list[dict[str, Any]] = [
        {
            "name": f"unit of wharf-{service}",
            "ansible.builtin.include_role": {"name": "common", "tasks_from": "unit"},
            "vars": service_vars(service),
        }
        for service in SERVICES
    ]
    tasks += [
        {
            "name": f"unit of wharf-{front}",
            "ansible.builtin.include_role": {"name": front, "tasks_from": "unit"},
        }
        for front in FRONTS
    ]
    playbook = folder / "units.yml"
    playbook.write_text(
        json.dumps(
            [
                {
                    "name": "Render every unit",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "vars": {
                        "ansible_python_interpreter": sys.executable,
                        "wharf_root": str(root),
                        "wharf_service_manager": "systemd",
                        "wharf_bin": str(BIN),
                        "wharf_storage": {
                            "driver": "filesystem",
                            "filesystem": {"root": str(root / "storage")},
                        },
                        **extra_vars,
                    },
                    "tasks": tasks,
                }
            ],
            indent=2,
        )
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WHARF_", "ANSIBLE_"))},
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_LOCAL_TEMP": str(folder / "ansible-tmp"),
        # the units notify their roles' restart handlers, which this playbook has not
        "ANSIBLE_ERROR_ON_MISSING_HANDLER": "False",
        "ANSIBLE_NOCOLOR": "1",
    }
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook)],
        cwd=ANSIBLE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return units


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    if not Path(SYSTEMD_ANALYZE).exists():
        pytest.skip(f"{SYSTEMD_ANALYZE} missing (apt install systemd)")
    return SYSTEMD_ANALYZE


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "extra_vars",
    [
        pytest.param({}, id="defaults"),
        # a proxy on a privileged port gets CAP_NET_BIND_SERVICE; a TLS front door listens on 443
        pytest.param(
            {"wharf_proxy_port": 443, "wharf_nginx_tls_certificate": "/etc/wharf/tls/fullchain.pem"},
            id="privileged-ports",
        ),
    ],
)
def test_every_unit_passes_systemd_analyze_verify(
    tmp_path: Path, systemd_analyze: str, extra_vars: dict[str, Any]
) -> None:
    units = render_units(tmp_path, extra_vars)
    names = sorted(path.name for path in units.glob("*.service"))
    assert names == sorted(f"wharf-{name}.service" for name in SERVICES + FRONTS)
    for front in FRONTS:
        if shutil.which(front) is None and not Path(f"/usr/sbin/{front}").exists():
            pytest.skip(f"{front} is not installed: its unit's ExecStart cannot be verified")
    result = subprocess.run(
        [systemd_analyze, "verify", "--man=no", *(str(units / name) for name in names)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # verify says nothing about a good unit; anything it prints is a finding
    findings = (result.stdout + result.stderr).strip()
    assert not findings, findings
    assert result.returncode == 0, findings
    proxy = (units / "wharf-proxy.service").read_text()
    privileged = extra_vars.get("wharf_proxy_port", 8080) < 1024
    assert ("AmbientCapabilities=CAP_NET_BIND_SERVICE" in proxy) == privileged, proxy
