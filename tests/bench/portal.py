"""The portal bench: a project's repositories page (`/harbor/projects/{p}/repositories`, rendered
by the real page handler in a started `wharf-ui` process) over a project of 10,000
repositories (issue 14: pagination and search that stay fast at that size).

Seeded straight into the metadata tables in bulk: project `portal` with `portal/app-00000` …
`app-09999`, each holding one artifact (a manifest and one layer, so the page's artifact counts
and sizes read real rows). The admin signs in through `/c/login` as the browser does and the
pages are asked with the session cookie.

Each case is one URL asked `samples` times in a row on one keep-alive connection after a
warm-up; the figure is the median wall time per page as the client sees it (and the 95th
percentile). Figures only: nothing here fails the bench but a page that does not render.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import sqlalchemy as sa

from tests.bench.http import Connection, HTTPError, expect, timed_gets
from tests.support.backends import fresh_database, leased_redis_db
from tests.support.processes import ui_process
from tests.support.suite import init_site
from wharf_shared.config import Settings
from wharf_shared.db import accounts, projects
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database

PROJECT = "portal"
ADMIN_PASSWORD = "Bench-admin-1"
PAGE_SIZE = 15
_BATCH = 1000
_ROWS = re.compile(rb'<td data-label="Name">')
_TOTAL = re.compile(rb"(\d+) in all")


@dataclass
class PortalCase:
    label: str
    path: str
    median_ms: float = 0.0
    p95_ms: float = 0.0
    total: int = 0  # the page's "N in all"
    items: int = 0


async def seed(settings: Settings, repositories: int) -> None:
    db = Database(settings.effective_database_url, pool_size=1)
    now = dt.datetime.now(dt.UTC)
    names = [f"{PROJECT}/app-{i:05d}" for i in range(repositories)]
    try:
        async with db.transaction() as conn:
            admin = await accounts.find_user(conn, "admin")
            assert admin is not None
            await projects.create_project(conn, PROJECT, admin.id, public=False)
            layer = await conn.execute(
                sa.insert(t.blob).values(digest=f"sha256:{'1' * 64}", size=3 * 1024 * 1024, created_at=now)
            )
            blob_id = layer.inserted_primary_key[0] if layer.inserted_primary_key else None
            assert blob_id is not None
        for start in range(0, repositories, _BATCH):
            chunk = names[start : start + _BATCH]
            async with db.transaction() as conn:
                rows = [{"name": n, "created_at": now, "updated_at": now} for n in chunk]
                await conn.execute(sa.insert(t.repository), rows)
                ids = [
                    row.id
                    for row in await conn.execute(
                        sa.select(t.repository.c.id).where(t.repository.c.name.in_(chunk))
                    )
                ]
                await conn.execute(
                    sa.insert(t.repository_blob),
                    [{"repository_id": i, "blob_id": blob_id, "created_at": now} for i in ids],
                )
                await conn.execute(
                    sa.insert(t.manifest),
                    [
                        {
                            "repository_id": i,
                            "digest": f"sha256:{i:064x}",
                            "media_type": "application/vnd.oci.image.manifest.v1+json",
                            "size": 700,
                            "created_at": now,
                        }
                        for i in ids
                    ],
                )
                manifests = await conn.execute(
                    sa.select(t.manifest.c.id, t.manifest.c.repository_id).where(
                        t.manifest.c.repository_id.in_(ids)
                    )
                )
                links = [
                    {"manifest_id": m.id, "repository_id": m.repository_id, "blob_id": blob_id}
                    for m in manifests
                ]
                await conn.execute(sa.insert(t.manifest_blob), links)
        async with db.transaction() as conn:
            await conn.execute(sa.text("ANALYZE"))  # fresh statistics, as autovacuum would leave
    finally:
        await db.close()


def cases(repositories: int) -> list[PortalCase]:
    path = f"/harbor/projects/{PROJECT}/repositories"
    last = max(1, -(-repositories // PAGE_SIZE))
    tenth = f"app-{repositories // 2:05d}"[: -len(str(repositories // 10 - 1))]  # `app-05` of 10,000
    chosen = [
        ("page 1", {}),
        ("middle page", {"page": str((last + 1) // 2)}),
        ("last page", {"page": str(last)}),
        (f"name search {tenth!r}, page 1", {"name": tenth}),
        ("recently updated, page 1", {"sort": "-update_time"}),
    ]
    return [
        PortalCase(f"repositories, {label}", f"{path}?{urlencode(query)}" if query else path)
        for label, query in chosen
    ]


def sign_in(base_url: str) -> dict[str, str]:
    """The admin's session cookie, from `/c/login` as the sign-in page posts it."""
    with Connection(base_url) as conn:
        body = urlencode({"principal": "admin", "password": ADMIN_PASSWORD}).encode()
        answer = expect(
            conn.request(
                "POST",
                "/c/login",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                body=body,
            ),
            200,
            what="POST /c/login",
        )
    found = re.search(r"(?:^|[\s,])sid=([^;,\s]+)", answer.header("Set-Cookie"))
    if found is None:
        raise HTTPError("POST /c/login: no sid cookie")
    return {"Cookie": f"sid={found.group(1)}"}


def measure(base_url: str, cookie: dict[str, str], case: PortalCase, *, samples: int, warmup: int) -> None:
    answer, case.median_ms, case.p95_ms = timed_gets(
        base_url, case.path, cookie, samples=samples, warmup=warmup
    )
    case.items = len(_ROWS.findall(answer.body))
    total = _TOTAL.search(answer.body)
    case.total = int(total.group(1)) if total else 0
    if case.items == 0:
        raise HTTPError(f"GET {case.path}: no repository on the page")


def run_portal(
    stack: ExitStack,
    work: Path,
    logs: Path,
    *,
    db_kind: str,
    repositories: int = 10_000,
    samples: int = 30,
    warmup: int = 3,
    out: Callable[[str], None] = print,
) -> list[PortalCase]:
    """Seed, start one `wharf-ui` process, time every case; returns them measured."""
    db_url = stack.enter_context(fresh_database(db_kind, str(work)))
    redis_url = stack.enter_context(leased_redis_db())
    started = time.monotonic()

    async def populate(settings: Settings) -> None:
        await seed(settings, repositories)

    data_dir = init_site(work / "portal", db_url, redis_url, admin_password=ADMIN_PASSWORD, populate=populate)
    out(f"  seeded {repositories:,} repositories of one artifact each in {time.monotonic() - started:.0f} s")
    env = {
        "WHARF_DATA_DIR": str(data_dir),
        "WHARF_DATABASE_URL": db_url,
        "WHARF_DATABASE_POOL_SIZE": "5",
        "WHARF_REDIS_URL": redis_url,
    }
    process = ui_process(env, logs, name="ui-portal")
    stack.callback(process.stop)
    process.start(timeout=60)
    cookie = sign_in(process.url)
    measured = cases(repositories)
    for case in measured:
        measure(process.url, cookie, case, samples=samples, warmup=warmup)
        out(
            f"  {case.label:44} median {case.median_ms:7.2f} ms  p95 {case.p95_ms:7.2f} ms"
            f"  ({case.items} of {case.total})"
        )
    return measured
