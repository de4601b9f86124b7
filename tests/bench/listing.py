"""The listing bench: pages of Harbor's list endpoints through a started `wharf-ui` process, over
a project holding 10,000 repositories and repositories holding 10,000 tags (issue 12's target:
under 100 ms a page, on SQLite and PostgreSQL).

Seeded straight into the metadata tables in bulk (the rows a registry push writes, without the
bytes, which a listing never reads): project `listing` with `listing/app-00000` … `app-09999`
(so the project holds 10,002 repositories), `listing/tags` with one artifact carrying 10,000
tags, and `listing/many` with 10,000 artifacts of one tag each. A developer of the (private)
project asks, with Basic auth (its login is cached after the warm-up, as for any script).

Each case is one URL asked `samples` times in a row on one keep-alive connection after a
warm-up; the figures are the median and the 95th percentile of the wall time per request, as
the client sees it (the first, a middle and the last page; with and without `q=name=~`).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import sqlalchemy as sa

from tests.bench.http import HTTPError, timed_gets
from tests.support.backends import fresh_database, leased_redis_db
from tests.support.processes import ui_process
from tests.support.suite import init_site
from wharf_shared.config import Settings
from wharf_shared.db import accounts, projects
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.passwords import hash_password
from wharf_shared.rbac import Role

PROJECT = "listing"
USER = "bench-lister"
PASSWORD = "Bench-lister-1"
ADMIN_PASSWORD = "Bench-admin-1"
TARGET_MS = 100.0
_BATCH = 1000


@dataclass
class ListingCase:
    label: str
    path: str
    median_ms: float = 0.0
    p95_ms: float = 0.0
    total: int = 0  # X-Total-Count
    items: int = 0


async def seed(settings: Settings, repositories: int, tags: int) -> None:
    db = Database(settings.effective_database_url, pool_size=1)
    now = dt.datetime.now(dt.UTC)
    try:
        async with db.transaction() as conn:
            admin = await accounts.find_user(conn, "admin")
            assert admin is not None
            project = await projects.create_project(conn, PROJECT, admin.id, public=False)
            user = await accounts.create_user(conn, USER, hash_password(PASSWORD))
            await projects.set_member(conn, project.id, user.id, Role.DEVELOPER)
        names = [f"{PROJECT}/app-{i:05d}" for i in range(repositories)] + [
            f"{PROJECT}/tags",
            f"{PROJECT}/many",
        ]
        for start in range(0, len(names), _BATCH):
            async with db.transaction() as conn:
                await conn.execute(
                    sa.insert(t.repository),
                    [
                        {"name": n, "created_at": now, "updated_at": now}
                        for n in names[start : start + _BATCH]
                    ],
                )
        async with db.read() as conn:
            ids = {
                row.name: row.id
                for row in await conn.execute(
                    sa.select(t.repository.c.id, t.repository.c.name).where(
                        t.repository.c.name.in_([f"{PROJECT}/tags", f"{PROJECT}/many"])
                    )
                )
            }

        def manifest(repository_id: int, i: int) -> dict[str, object]:
            return {
                "repository_id": repository_id,
                "digest": f"sha256:{i:064x}",
                "media_type": "application/vnd.docker.distribution.manifest.v2+json",
                "size": 1000 + i,
                "artifact_type": "application/vnd.docker.container.image.v1+json",
                "created_at": now - dt.timedelta(seconds=tags - i),
            }

        async with db.transaction() as conn:
            await conn.execute(sa.insert(t.manifest), [manifest(ids[f"{PROJECT}/tags"], 0)])
        for start in range(0, tags, _BATCH):
            async with db.transaction() as conn:
                rows = [manifest(ids[f"{PROJECT}/many"], i) for i in range(start, min(tags, start + _BATCH))]
                await conn.execute(sa.insert(t.manifest), rows)
        async with db.read() as conn:
            one = (
                await conn.execute(
                    sa.select(t.manifest.c.id).where(t.manifest.c.repository_id == ids[f"{PROJECT}/tags"])
                )
            ).scalar_one()
            many = [
                row.id
                for row in await conn.execute(
                    sa.select(t.manifest.c.id)
                    .where(t.manifest.c.repository_id == ids[f"{PROJECT}/many"])
                    .order_by(t.manifest.c.id)
                )
            ]
        for start in range(0, tags, _BATCH):
            async with db.transaction() as conn:
                span = range(start, min(tags, start + _BATCH))
                await conn.execute(
                    sa.insert(t.tag),
                    [
                        {
                            "repository_id": ids[f"{PROJECT}/tags"],
                            "name": f"t{i:05d}",
                            "manifest_id": one,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for i in span
                    ]
                    + [
                        {
                            "repository_id": ids[f"{PROJECT}/many"],
                            "name": f"v{i:05d}",
                            "manifest_id": many[i],
                            "created_at": now,
                            "updated_at": now,
                        }
                        for i in span
                    ],
                )
        async with db.transaction() as conn:
            await conn.execute(sa.text("ANALYZE"))  # fresh statistics, as autovacuum would leave
    finally:
        await db.close()


def cases(repositories: int, tags: int, page_size: int = 10) -> list[ListingCase]:
    repos = f"/api/v2.0/projects/{PROJECT}/repositories"
    tag_list = f"{repos}/tags/artifacts/t00000/tags"
    artifacts = f"{repos}/many/artifacts"
    out: list[ListingCase] = []

    def pages(label: str, path: str, count: int, query: dict[str, str] | None = None) -> None:
        last = max(1, -(-count // page_size))
        for where, page in (("first", 1), ("middle", (last + 1) // 2), ("last", last)):
            params = {**(query or {}), "page": str(page), "page_size": str(page_size)}
            out.append(ListingCase(f"{label}, {where} page", f"{path}?{urlencode(params)}"))

    def tenth(prefix: str, count: int) -> str:
        """A substring of a tenth of the names `prefix` + 5 digits (`app-05` of 10,000)."""
        return f"{prefix}{count // 2:05d}"[: -len(str(count // 10 - 1))]

    pages("repositories", repos, repositories + 2)
    pages("repositories by name", repos, repositories + 2, {"sort": "name"})
    pages("all repositories the caller may see", "/api/v2.0/repositories", repositories + 2)
    q = f"name=~{tenth('app-', repositories)}"
    pages(f"repositories, q={q}", repos, repositories // 10, {"q": q})
    pages("tags of an artifact", tag_list, tags)
    q = f"name=~{tenth('t', tags)}"
    pages(f"tags of an artifact, q={q}", tag_list, tags // 10, {"q": q})
    pages("artifacts with tags", artifacts, tags)
    return out


def measure(base_url: str, case: ListingCase, *, samples: int, warmup: int) -> None:
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}"}
    answer, case.median_ms, case.p95_ms = timed_gets(
        base_url, case.path, headers, samples=samples, warmup=warmup
    )
    case.total = int(answer.header("X-Total-Count", "0"))
    case.items = len(json.loads(answer.body))
    if case.items == 0:
        raise HTTPError(f"GET {case.path}: an empty page")


def run_listing(
    stack: ExitStack,
    work: Path,
    logs: Path,
    *,
    db_kind: str,
    repositories: int = 10_000,
    tags: int = 10_000,
    samples: int = 30,
    warmup: int = 3,
    out: Callable[[str], None] = print,
) -> list[ListingCase]:
    """Seed, start one `wharf-ui` process, time every case; returns them measured."""
    db_url = stack.enter_context(fresh_database(db_kind, str(work)))
    redis_url = stack.enter_context(leased_redis_db())
    site = work / "listing"
    started = time.monotonic()

    async def populate(settings: Settings) -> None:
        await seed(settings, repositories, tags)

    data_dir = init_site(site, db_url, redis_url, admin_password=ADMIN_PASSWORD, populate=populate)
    took = time.monotonic() - started
    out(f"  seeded {repositories:,} repositories and twice {tags:,} tags in {took:.0f} s")
    env = {
        "WHARF_DATA_DIR": str(data_dir),
        "WHARF_DATABASE_URL": db_url,
        "WHARF_DATABASE_POOL_SIZE": "5",
        "WHARF_REDIS_URL": redis_url,
    }
    process = ui_process(env, logs, name="ui-listing")
    stack.callback(process.stop)
    process.start(timeout=60)
    measured = cases(repositories, tags)
    for case in measured:
        measure(process.url, case, samples=samples, warmup=warmup)
        verdict = "met" if case.p95_ms < TARGET_MS else "MISSED"
        out(
            f"  {case.label:52} median {case.median_ms:7.2f} ms  p95 {case.p95_ms:7.2f} ms"
            f"  ({case.items} of {case.total})  < {TARGET_MS:.0f} ms: {verdict}"
        )
    return measured
