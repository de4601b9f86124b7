"""The audit trail end to end: skopeo logs in, pushes and pulls through the proxy as named users,
and deletes a manifest through the registry API; an admin creates a user through the management
API and that user signs in to the portal; the job service's events consumer records each with
its operator, the repository's pull count goes up, and the audit log read back through the API
(Basic credentials, through the proxy) shows them all. PostgreSQL, the production default."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.e2e.conftest import Registry, Skopeo, make_skopeo
from tests.images import make_image, write_layout
from tests.support import backends
from tests.support.suite import Suite, start_suite
from wharf_shared.config import Settings
from wharf_shared.db import accounts, projects
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.passwords import hash_password
from wharf_shared.rbac import Role

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "audit-admin-password"
PASSWORD = "audit-user-password"


async def populate(settings: Settings) -> None:
    db = Database(settings.effective_database_url, pool_size=1)
    try:
        async with db.transaction() as conn:
            library = await projects.find_project(conn, "library")
            assert library is not None
            alice = await accounts.create_user(conn, "alice", hash_password(PASSWORD))
            await projects.set_member(conn, library.id, alice.id, Role.DEVELOPER)
            await accounts.create_user(conn, "bob", hash_password(PASSWORD))
    finally:
        await db.close()


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[tuple[Suite, str]]:
    with (
        backends.fresh_database("postgresql", str(tmp_path)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        suite = start_suite(
            tmp_path,
            database_url,
            redis_url,
            admin_password=ADMIN_PASSWORD,
            populate=populate,
            ui_hosts=("127.0.0.1",),
        )
        try:
            yield suite, database_url
        finally:
            suite.stop()
        for process in suite.jobservices:  # a clean SIGTERM: the batch in hand finished
            assert process.process is not None
            assert process.process.returncode == 0, process.tail()


def skopeo_for(suite: Suite, home: Path) -> Skopeo:
    return make_skopeo(Registry(suite.registries[0], "token", "postgresql", suite.data_dir, None), home)


async def audit_and_pulls(database_url: str) -> tuple[list[Any], int, int]:
    db = Database(database_url, pool_size=1)
    try:
        async with db.read() as conn:
            rows = list(await conn.execute(sa.select(t.audit_log).order_by(t.audit_log.c.op_time)))
            pulls = (
                await conn.execute(
                    sa.select(t.repository.c.pull_count).where(t.repository.c.name == "library/audited")
                )
            ).scalar_one()
            library = (
                await conn.execute(sa.select(t.project.c.id).where(t.project.c.name == "library"))
            ).scalar_one()
        return rows, int(pulls), int(library)
    finally:
        await db.close()


def api(
    suite: Suite, method: str, path: str, *, user: str, password: str, body: Any = None
) -> tuple[int, Any, dict[str, str]]:
    """One call to the management API through the proxy with Basic credentials."""
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(suite.url + path, data=data, method=method)  # noqa: S310 - our http://
    request.add_header("Authorization", f"Basic {credentials}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        raw = response.read()
        parsed = json.loads(raw) if raw and "json" in response.headers.get("Content-Type", "") else None
        return response.status, parsed, dict(response.headers)


def portal_login(suite: Suite, user: str, password: str) -> str:
    """Signs in as the portal does (a form to /c/login through the proxy); the session id."""
    form = urllib.parse.urlencode({"principal": user, "password": password}).encode()
    request = urllib.request.Request(suite.url + "/c/login", data=form, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        assert response.status == 200
        cookies = response.headers.get_all("Set-Cookie") or []
    sid = next(c.split(";", 1)[0].split("=", 1)[1] for c in cookies if c.startswith("sid="))
    assert sid
    return sid


def audit_through_api(suite: Suite, path: str) -> set[tuple[str, str, str, str]]:
    status, rows, headers = api(suite, "GET", path, user="admin", password=ADMIN_PASSWORD)
    assert status == 200
    assert int(headers["X-Total-Count"]) == len(rows)
    return {(r["resource_type"], r["operation"], r["resource"], r["username"]) for r in rows}


def test_push_pull_and_delete_are_audited_with_their_operators(
    suite: tuple[Suite, str], tmp_path: Path
) -> None:
    site, database_url = suite
    layout = tmp_path / "layout"
    digest = write_layout(layout, [make_image("audited")])
    ref = site.ref("library/audited:v1")

    alice = skopeo_for(site, tmp_path / "alice")
    alice.ok("login", "--tls-verify=false", "-u", "alice", "-p", PASSWORD, site.address)
    alice.ok("copy", "--dest-tls-verify=false", f"oci:{layout}:latest", ref)
    bob = skopeo_for(site, tmp_path / "bob")
    bob.ok(
        "copy", "--src-tls-verify=false", "--src-creds", f"bob:{PASSWORD}", ref, f"oci:{tmp_path / 'out'}:x"
    )
    admin = skopeo_for(site, tmp_path / "admin")
    admin.ok(
        "delete",
        "--tls-verify=false",
        "--creds",
        f"admin:{ADMIN_PASSWORD}",
        site.ref(f"library/audited@{digest}"),
    )

    # A user made through the API, who then signs in to the portal (through the proxy).
    status, _, headers = api(
        site,
        "POST",
        "/api/v2.0/users",
        user="admin",
        password=ADMIN_PASSWORD,
        body={"username": "carol", "password": "Carol-secret-1", "email": "carol@example.test"},
    )
    assert status == 201
    assert headers["Location"].startswith("/api/v2.0/users/")
    sid = portal_login(site, "carol", "Carol-secret-1")
    cookie = {"Cookie": f"sid={sid}"}
    whoami = urllib.request.Request(site.url + "/api/v2.0/users/current", headers=cookie)  # noqa: S310
    with urllib.request.urlopen(whoami, timeout=30) as response:  # noqa: S310
        assert json.loads(response.read())["username"] == "carol"
        assert response.headers["X-Harbor-CSRF-Token"]

    expected = {
        ("user", "login", "alice", "alice"),
        ("artifact", "create", "library/audited:v1", "alice"),
        ("artifact", "pull", "library/audited:v1", "bob"),
        ("artifact", "delete", f"library/audited@{digest}", "admin"),
        ("user", "create", "carol", "admin"),
        ("user", "login", "carol", "carol"),
    }
    deadline = time.monotonic() + 60
    while True:
        rows, pull_count, library = asyncio.run(audit_and_pulls(database_url))
        seen = {(r.resource_type, r.operation, r.resource, r.username) for r in rows}
        if expected <= seen or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    logs = "\n".join(p.tail(20) for p in site.jobservices)
    assert expected <= seen, f"{sorted(seen)}\n{logs}"
    assert len({r.event_id for r in rows}) == len(rows)
    # skopeo's login (token service) and the portal's (ui) name the backend that checked them.
    assert {r.operation_description for r in rows if r.operation == "login"} == {"db_auth"}
    artifact_rows = [r for r in rows if r.resource_type == "artifact"]
    assert {r.project_id for r in artifact_rows} == {library}
    # Every manifest GET was one pull (skopeo fetches the manifest once per copy).
    assert pull_count == sum(1 for r in artifact_rows if r.operation == "pull") >= 1

    # The same, read through the API as a Harbor client would: the whole log, newest first ...
    everything = audit_through_api(site, "/api/v2.0/audit-logs?page_size=100")
    assert expected <= everything, sorted(everything)
    _, newest, _ = api(site, "GET", "/api/v2.0/audit-logs?page_size=1", user="admin", password=ADMIN_PASSWORD)
    assert newest[0]["op_time"] == max(r.op_time for r in rows).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )
    # ... one user's rows ...
    assert audit_through_api(site, "/api/v2.0/audit-logs?q=username%3Dbob") == {
        ("artifact", "pull", "library/audited:v1", "bob")
    }
    # ... and the project's log: its artifacts only, no logins or users.
    library_log = audit_through_api(site, "/api/v2.0/projects/library/logs?page_size=100")
    assert {
        ("artifact", "create", "library/audited:v1", "alice"),
        ("artifact", "pull", "library/audited:v1", "bob"),
        ("artifact", "delete", f"library/audited@{digest}", "admin"),
    } <= library_log
    assert {row[0] for row in library_log} == {"artifact"}
    # Alice (a developer of library) may not read its log.
    with pytest.raises(urllib.error.HTTPError) as refused:
        api(site, "GET", "/api/v2.0/projects/library/logs", user="alice", password=PASSWORD)
    assert refused.value.code == 403
    assert json.loads(refused.value.read())["errors"][0]["code"] == "FORBIDDEN"
