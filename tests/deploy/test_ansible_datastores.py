"""The roles that install a site's datastores (ansible/roles/redis, ansible/roles/postgres), run
for real: ansible-playbook over SSH (a private sshd on loopback) onto one host, 127.0.0.2, with a
root prefix of its own, under supervisor.

- redis: site.yml on one host in the groups redis, registry and token starts Wharf's own
  redis-server on a free port; the password opens it, nothing else does; the registry and the
  token service use it through the default wharf_redis_url and are ready; a second run changes
  nothing; a changed setting restarts it, and what it held survives (append-only file).
- postgres: the role, against the machine's running PostgreSQL (not reconfigured:
  wharf_postgres_configure_server false, no install), creates a fresh login role and database
  from the vault's database URL; the password logs in (its stored SCRAM verifier is the
  password's); a second run changes nothing; a new password in the vault is set. Both are
  dropped at the end.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support import deploy
from tests.support.deploy import Recap, Site

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ADDRESS = "127.0.0.2"
PG_ADMIN = [
    *("psql", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", "postgres"),
    *("-X", "-A", "-t", "-q"),
]


def changes(recap: Recap) -> str:
    return "\n".join(line for line in recap.output.splitlines() if line.startswith(("changed:", "TASK [")))


def readiness(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}/health/ready", timeout=10) as response:  # noqa: S310
            return int(response.status), json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, {}


# -- redis


def redis_password(site: Site, host: deploy.Host) -> str:
    conf = (site.root(host) / "etc" / "wharf" / "redis.conf").read_text()
    found = re.search(r'^requirepass "([^"]+)"$', conf, re.M)
    assert found, conf
    return found.group(1)


@pytest.mark.timeout(1500)
def test_wharfs_own_redis_serves_the_site_and_a_second_run_changes_nothing(release: Path) -> None:
    with deploy.site([ADDRESS]) as site:
        site.release = release
        host = site.add_host("one", ADDRESS, "redis", "registry", "token")
        port = site.ports["redis"]

        first = site.playbook("site.yml", log_name="site-1")
        assert first.returncode == 0, first.explain()
        pid = site.running_pid(host, "redis")
        assert pid is not None, site.service_log(host, "redis")

        # The password opens it; no password, or a wrong one, does not.
        password = redis_password(site, host)
        with redis.Redis(host=ADDRESS, port=port, password=password) as client:
            assert client.set("wharf-deploy-test", "kept")
            assert client.get("wharf-deploy-test") == b"kept"
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
            assert client.config_get("appendonly") == {"appendonly": "yes"}
        for wrong in (None, "not-the-password"):
            with (
                redis.Redis(host=ADDRESS, port=port, password=wrong) as stranger,
                pytest.raises(redis.AuthenticationError),
            ):
                stranger.get("wharf-deploy-test")
        assert (site.root(host) / "var" / "lib" / "wharf" / "redis" / "appendonly").is_dir()

        # The services took the default wharf_redis_url (this host's Redis) and are ready on it.
        for service in ("registry", "token"):
            settings = tomllib.loads((site.root(host) / "etc" / "wharf" / f"{service}.toml").read_text())
            assert settings["redis_url"] == f"redis://:{password}@{ADDRESS}:{port}/0"
            status, body = readiness(site.url(host, service))
            assert status == 200, (body, site.service_log(host, service))
            assert body["checks"]["redis"] == "ok", body

        second = site.playbook("site.yml", log_name="site-2")
        assert second.returncode == 0, second.explain()
        assert not any(second.changed.values()), (
            f"site.yml again changed {second.changed}:\n{changes(second)}"
        )
        assert site.running_pid(host, "redis") == pid

        # A changed setting restarts it (only it); what it held is still there.
        site.settings["wharf_redis_maxmemory"] = "256mb"
        third = site.playbook("playbooks/datastores.yml", log_name="datastores-3")
        assert third.returncode == 0, third.explain()
        assert site.running_pid(host, "redis") not in (None, pid), changes(third)
        with redis.Redis(host=ADDRESS, port=port, password=password) as client:
            assert client.config_get("maxmemory") == {"maxmemory": str(256 * 1024 * 1024)}
            assert client.get("wharf-deploy-test") == b"kept"
        # The services' pooled connections to the old process fail once, then reconnect.
        for service in ("registry", "token"):
            deadline = time.monotonic() + 30
            while (status := readiness(site.url(host, service)))[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert status[0] == 200, (status, site.service_log(host, service))


# -- postgres


def pg_admin(sql: str) -> str:
    """psql as postgres (the names in `sql` are the test's own: wharf_pg_<hex>)."""
    result = subprocess.run([*PG_ADMIN, "-c", sql], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        pytest.fail(f"psql as postgres: {result.stderr.strip()}")
    return result.stdout.strip()


def verifier_of(role: str) -> str:
    return pg_admin(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'")  # noqa: S608


def owner_of(database: str) -> str:
    return pg_admin(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{database}'")  # noqa: S608


def scram_matches(verifier: str, password: str) -> bool:
    """Whether a SCRAM-SHA-256 verifier (pg_authid.rolpassword) is this password's."""
    method, rest = verifier.split("$", 1)
    params, keys = rest.split("$", 1)
    iterations, salt = params.split(":", 1)
    stored_key, server_key = keys.split(":", 1)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return (
        method == "SCRAM-SHA-256"
        and base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key
        and base64.b64encode(hmac.new(salted, b"Server Key", "sha256").digest()).decode() == server_key
    )


def login(name: str, password: str) -> str:
    """`SELECT current_user` as the role, with its password, in its database."""
    result = subprocess.run(
        [*("psql", "-h", "127.0.0.1", "-p", "5432", "-U", name, "-d", name), "-XAtc", "SELECT current_user"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PGPASSWORD": password, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.timeout(600)
def test_postgres_role_creates_wharfs_login_and_database_once() -> None:
    name = f"wharf_pg_{uuid.uuid4().hex[:12]}"
    password = secrets.token_urlsafe(18)
    with deploy.site([ADDRESS]) as site:
        site.database_url = f"postgresql://{name}:{password}@127.0.0.1:5432/{name}"
        site.write_vault()
        # The machine's server: leave its configuration alone (and install nothing).
        site.settings["wharf_postgres_configure_server"] = False
        site.add_host("db", ADDRESS, "postgres")
        try:
            first = site.playbook("playbooks/datastores.yml", log_name="datastores-1")
            assert first.returncode == 0, first.explain()
            assert first.changed["db"] > 0
            assert login(name, password) == name
            verifier = verifier_of(name)
            assert scram_matches(verifier, password), verifier
            assert owner_of(name) == name

            second = site.playbook("playbooks/datastores.yml", log_name="datastores-2")
            assert second.returncode == 0, second.explain()
            assert second.changed == {"db": 0}, changes(second)
            assert verifier_of(name) == verifier

            # A new password in the vault is set (and only that).
            new_password = secrets.token_urlsafe(18)
            site.database_url = f"postgresql://{name}:{new_password}@127.0.0.1:5432/{name}"
            site.write_vault()
            third = site.playbook("playbooks/datastores.yml", log_name="datastores-3")
            assert third.returncode == 0, third.explain()
            assert third.changed == {"db": 1}, changes(third)
            verifier = verifier_of(name)
            assert scram_matches(verifier, new_password), verifier
            assert not scram_matches(verifier, password)
        finally:
            pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            pg_admin(f'DROP ROLE IF EXISTS "{name}"')
