"""A real CAS server for the CAS tests: django-mama-cas (tests/peers/cas_server_app.py) in the
SSO peers' venv, on a free loopback port, with the users and groups the test seeds.

Services on 127.0.0.1 (any port and path) may use it, and get single-logout POSTs.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.peers import APPS, peer_python, running_peer

SERVICES = (r"^http://127\.0\.0\.1:\d+/",)


@dataclass(frozen=True)
class CasUserSeed:
    password: str
    name: str
    email: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class CasServer:
    url: str  # the CAS base URL (cas_url)

    def set_groups(self, username: str, groups: Sequence[str]) -> None:
        """What CAS releases as the user's groups from their next sign-in on."""
        base = self.url.removesuffix("/cas")
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{base}/users/{username}/groups",
            data=json.dumps({"groups": list(groups)}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            assert response.status == 200

    def configuration(self, **overrides: Any) -> dict[str, Any]:
        """Runtime settings (`cas_*`) for this server."""
        return {
            "cas_url": self.url,
            "cas_version": "3.0",
            "cas_username_attribute": "",
            "cas_email_attribute": "mail",
            "cas_groups_attribute": "groups",
            **overrides,
        }


@contextmanager
def running_cas_server(folder: Path, users: Mapping[str, CasUserSeed]) -> Iterator[CasServer]:
    python = peer_python()
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "port_file": str(folder / "port"),
        "folder": str(folder),
        "services": list(SERVICES),
        "users": {
            name: {"password": u.password, "name": u.name, "email": u.email, "groups": list(u.groups)}
            for name, u in users.items()
        },
    }
    config_file = folder / "cas.json"
    config_file.write_text(json.dumps(config))
    argv = [str(python), str(APPS / "cas_server_app.py"), str(config_file)]
    with running_peer("the CAS server", argv, folder, "/health") as port:
        yield CasServer(f"http://127.0.0.1:{port}/cas")
