"""The dashboard's data, on each database: storage per project (each object once per project,
only projects the caller sees), pushes and pulls per UTC day from the audit log (other
operations, other days and unseen projects left out), a real proxy's `/health/upstreams` read
over HTTP (and one that is not there), and the page for an admin and for a user."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from tests.service.proxy.test_proxy import dead_url, proxy_settings
from tests.service.ui.conftest import ADMIN_PASSWORD, ALICE_PASSWORD, Ui
from tests.service.ui.test_portal_replication import html, sign_in
from tests.support.upstream import start_upstream
from wharf_proxy.app import create_app as create_proxy
from wharf_shared.db import projects
from wharf_shared.db import tables as t
from wharf_shared.db.types import utcnow
from wharf_shared.rbac import Identity, Role
from wharf_ui import dashboard
from wharf_ui.keys import HTTP

TODAY = dt.date(2026, 12, 5)
MEDIA = "application/vnd.oci.image.manifest.v1+json"


async def populate(ui: Ui) -> None:
    """`big` (private, alice a guest) holds two repositories sharing a layer; `pub` (public) one
    repository; `hidden` (private, alice not a member) one."""

    async def go(conn: Any) -> None:
        now = utcnow()
        blob_ids = {}
        for digest, size in {"sha256:l1": 1000, "sha256:l2": 500, "sha256:l3": 70, "sha256:l4": 9}.items():
            result = await conn.execute(t.blob.insert().values(digest=digest, size=size, created_at=now))
            blob_ids[digest] = result.inserted_primary_key[0]
        layout = {
            "big": (False, {"big/a": ["sha256:l1", "sha256:l2"], "big/b": ["sha256:l1"]}),
            "pub": (True, {"pub/x": ["sha256:l3"]}),
            "hidden": (False, {"hidden/y": ["sha256:l4"]}),
        }
        for name, (public, repos) in layout.items():
            project = await projects.create_project(conn, name, ui.admin_id, public=public)
            if name == "big":
                await projects.set_member(conn, project.id, ui.alice_id, Role.GUEST)
            for repo, layers in repos.items():
                result = await conn.execute(
                    t.repository.insert().values(name=repo, created_at=now, updated_at=now)
                )
                repo_id = result.inserted_primary_key[0]
                for digest in layers:
                    await conn.execute(
                        t.repository_blob.insert().values(
                            repository_id=repo_id, blob_id=blob_ids[digest], created_at=now
                        )
                    )
                await conn.execute(
                    t.manifest.insert().values(
                        repository_id=repo_id,
                        digest=f"sha256:m-{repo}",
                        media_type=MEDIA,
                        size=10,
                        created_at=now,
                    )
                )

    await ui.db_call(go)


async def audit(ui: Ui, rows: list[tuple[str, str, str, dt.datetime]]) -> None:
    """Audit rows of (resource_type, operation, project name, time)."""

    async def go(conn: Any) -> None:
        ids = {p.name: p.id for p in [await projects.find_project(conn, n) for n in ("big", "hidden")] if p}
        for resource_type, operation, project, at in rows:
            await conn.execute(
                t.audit_log.insert().values(
                    event_id=uuid.uuid4().hex,
                    project_id=ids.get(project),
                    resource_type=resource_type,
                    resource=f"{project}/a:v1",
                    operation=operation,
                    username="admin",
                    op_time=at,
                )
            )

    await ui.db_call(go)


def identity(user_id: int, username: str, *, sysadmin: bool = False) -> Identity:
    return Identity(user_id=user_id, username=username, sysadmin=sysadmin)


async def test_storage_per_project_counts_each_object_once_and_only_what_the_caller_sees(ui: Ui) -> None:
    await populate(ui)

    async def read(who: Identity) -> list[tuple[str, int]]:
        async def go(conn: Any) -> list[tuple[str, int]]:
            return [(x.name, x.size) for x in await dashboard.storage_by_project(conn, who)]

        result: list[tuple[str, int]] = await ui.db_call(go)
        return result

    # big: l1 once + l2 + two manifests; library (from init) holds nothing and is left out.
    admin = identity(ui.admin_id, "admin", sysadmin=True)
    assert await read(admin) == [("big", 1520), ("pub", 80), ("hidden", 19)]
    assert await read(identity(ui.alice_id, "alice")) == [("big", 1520), ("pub", 80)]


async def test_pushes_and_pulls_per_day(ui: Ui) -> None:
    await populate(ui)
    noon = dt.datetime(2026, 12, 5, 12, tzinfo=dt.UTC)
    await audit(
        ui,
        [
            ("artifact", "create", "big", noon),
            ("artifact", "create", "big", noon - dt.timedelta(hours=12)),  # 00:00 today
            ("artifact", "pull", "big", noon - dt.timedelta(hours=12, seconds=1)),  # yesterday
            ("artifact", "pull", "big", noon - dt.timedelta(days=13)),  # the first day shown
            ("artifact", "pull", "big", noon - dt.timedelta(days=14)),  # before it
            ("artifact", "pull", "big", noon + dt.timedelta(days=1)),  # tomorrow
            ("artifact", "delete", "big", noon),  # not a push
            ("tag", "create", "big", noon),  # not an artifact
            ("artifact", "create", "hidden", noon),  # alice does not see it
        ],
    )

    async def read(who: Identity) -> list[dashboard.DayActivity]:
        async def go(conn: Any) -> list[dashboard.DayActivity]:
            return await dashboard.daily_activity(conn, who, TODAY)

        result: list[dashboard.DayActivity] = await ui.db_call(go)
        return result

    days = await read(identity(ui.admin_id, "admin", sysadmin=True))
    assert len(days) == 14
    assert days[0] == dashboard.DayActivity(dt.date(2026, 11, 22), 0, 1)
    assert days[-2] == dashboard.DayActivity(dt.date(2026, 12, 4), 0, 1)
    assert days[-1] == dashboard.DayActivity(TODAY, 3, 0)
    assert sum(d.pushes + d.pulls for d in days[1:-2]) == 0
    alices = await read(identity(ui.alice_id, "alice"))
    assert alices[-1].pushes == 2


async def test_a_proxys_upstreams_over_http_and_a_proxy_that_is_not_there(ui: Ui, tmp_path: Path) -> None:
    live = await start_upstream("live")
    proxy = TestServer(
        create_proxy(proxy_settings(tmp_path, [f"http://{live.host}:{live.port}"], [dead_url()])),
        host="127.0.0.1",
    )
    await proxy.start_server()
    try:
        url = f"http://127.0.0.1:{proxy.port}"
        gone = dead_url()
        session = ui.client.app[HTTP]
        seen, missing = await dashboard.proxies_health(session, [url, gone], None)
        assert seen.reachable
        assert [u.in_rotation for u in seen.pools["registry"]] == [True]
        assert seen.pools["ui"] == []
        (token_upstream,) = seen.pools["token"]
        assert token_upstream.url.startswith("http://127.0.0.1:")
        assert not missing.reachable
        assert missing.url == gone
        assert "ClientConnector" in missing.problem
        # A path that is no proxy's (the upstream answers 200 with something else).
        other = await dashboard.proxy_health(session, f"http://{live.host}:{live.port}", None)
        assert not other.reachable
    finally:
        await proxy.close()
        await live.close()


async def test_the_page_for_an_admin_and_for_a_user(ui: Ui) -> None:
    await populate(ui)
    await sign_in(ui, "admin", ADMIN_PASSWORD)
    page = await html(ui, "/harbor/dashboard")
    assert 'role="img"' in page
    assert "Storage by project" in page
    assert '<h2 id="instances-heading">Instances</h2>' in page
    # The external URL (https://wharf.example.test) is no proxy here: shown as unreachable.
    assert "badge-unreachable" in page
    await sign_in(ui, "alice", ALICE_PASSWORD)
    page = await html(ui, "/harbor/dashboard")
    assert "Storage by project" in page
    assert ">hidden<" not in page
    assert 'id="instances-heading"' not in page
    assert ">big<" in page
