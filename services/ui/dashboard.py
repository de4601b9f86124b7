"""What the portal's dashboard shows, read as plain data: storage per project, pushes and pulls
per day from the audit log, the counts `/statistics` gives, and (for system admins) the
instances behind each proxy as the proxy's `/health/upstreams` reports them.

Everything a user reads is limited to the projects they may see (`projects.visible_to`): a
system admin sees every project. Storage per project counts each stored object once per project
(a layer that two repositories of the project share counts once): the blobs its repositories
link and its manifests, summed over distinct digests, as `statistics.storage_consumption` counts
the whole registry.

Pushes and pulls come from the audit log's artifact rows (`create` is a push, `pull` a manifest
GET; wharf_jobservice.audit maps the events), counted per UTC day in one query: a sum of CASE
per day, which every database runs alike (no dialect's date function).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from sqlalchemy import and_, case, desc, func, select, union
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.rbac import Identity
from wharf_ui.projects import repositories_of, visible_to, with_membership

p, r, a = t.project.c, t.repository.c, t.audit_log.c
PUSH, PULL = "create", "pull"  # the audit log's operations on artifacts
DAYS = 14
UPSTREAMS_PATH = "/health/upstreams"
PROXY_SECONDS = 2.0
_BODY_MAX = 256 * 1024


# -- storage per project -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProjectStorage:
    name: str
    size: int


async def storage_by_project(conn: AsyncConnection, identity: Identity) -> list[ProjectStorage]:
    """The projects the caller sees that hold something, largest first."""
    b, rb, mf = t.blob.c, t.repository_blob.c, t.manifest.c
    repos = with_membership(t.project, identity).join(t.repository, repositories_of(p.name))
    blobs = (
        select(p.id.label("project_id"), b.digest.label("digest"), b.size.label("size"))
        .select_from(repos.join(t.repository_blob, rb.repository_id == r.id).join(t.blob, b.id == rb.blob_id))
        .where(visible_to(identity))
    )
    manifests = (
        select(p.id.label("project_id"), mf.digest.label("digest"), mf.size.label("size"))
        .select_from(repos.join(t.manifest, mf.repository_id == r.id))
        .where(visible_to(identity))
    )
    stored = union(blobs, manifests).subquery()  # UNION: each (project, digest) once
    total = func.sum(stored.c.size)
    rows = await conn.execute(
        select(p.name, total)
        .select_from(t.project.join(stored, stored.c.project_id == p.id))
        .group_by(p.id, p.name)
        .order_by(desc(total), p.name)
    )
    return [ProjectStorage(name, int(size or 0)) for name, size in rows]


# -- pushes and pulls per day ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DayActivity:
    day: dt.date
    pushes: int
    pulls: int


async def daily_activity(
    conn: AsyncConnection, identity: Identity, today: dt.date, days: int = DAYS
) -> list[DayActivity]:
    """Pushes and pulls on each of the `days` UTC days up to `today`, oldest first."""
    first = today - dt.timedelta(days=days - 1)
    starts = [
        dt.datetime.combine(first + dt.timedelta(days=i), dt.time(), tzinfo=dt.UTC) for i in range(days + 1)
    ]
    per_day = [
        func.sum(case((and_(a.op_time >= starts[i], a.op_time < starts[i + 1]), 1), else_=0))
        for i in range(days)
    ]
    where = [
        a.resource_type == "artifact",
        a.operation.in_((PUSH, PULL)),
        a.op_time >= starts[0],
        a.op_time < starts[-1],
    ]
    if not identity.sysadmin:
        seen = select(p.id).select_from(with_membership(t.project, identity)).where(visible_to(identity))
        where.append(a.project_id.in_(seen))
    rows = await conn.execute(select(a.operation, *per_day).where(*where).group_by(a.operation))
    counts = {row[0]: [int(x or 0) for x in row[1:]] for row in rows}
    zero = [0] * days
    pushes, pulls = counts.get(PUSH, zero), counts.get(PULL, zero)
    return [DayActivity(first + dt.timedelta(days=i), pushes[i], pulls[i]) for i in range(days)]


# -- the instances behind each proxy -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpstreamHealth:
    url: str
    in_rotation: bool
    request_failures: int
    check_failures: int
    out_seconds: float | None


@dataclass(frozen=True, slots=True)
class ProxyHealth:
    url: str
    reachable: bool
    problem: str = ""  # why it could not be read
    pools: dict[str, list[UpstreamHealth]] = field(default_factory=dict)


def _upstreams(report: Any) -> dict[str, list[UpstreamHealth]]:
    """The pools of a `/health/upstreams` answer (ValueError for anything else)."""
    if not isinstance(report, dict) or not isinstance(report.get("pools"), dict):
        raise ValueError("not a /health/upstreams answer")
    pools: dict[str, list[UpstreamHealth]] = {}
    for name, pool in report["pools"].items():
        pools[str(name)] = [
            UpstreamHealth(
                str(u["url"]),
                bool(u["in_rotation"]),
                int(u.get("request_failures") or 0),
                int(u.get("check_failures") or 0),
                float(u["out_seconds"]) if u.get("out_seconds") is not None else None,
            )
            for u in pool.get("upstreams", [])
        ]
    return pools


async def proxy_health(
    session: aiohttp.ClientSession, url: str, token: str | None, seconds: float = PROXY_SECONDS
) -> ProxyHealth:
    """One proxy's view of its upstreams, or why it could not be had (never raises)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with session.get(
            url.rstrip("/") + UPSTREAMS_PATH, headers=headers, timeout=aiohttp.ClientTimeout(total=seconds)
        ) as resp:
            if resp.status != 200:
                hint = " (the metrics token or address is not allowed)" if resp.status == 404 else ""
                return ProxyHealth(url, False, f"answered {resp.status}{hint}")
            body = await resp.content.read(_BODY_MAX)
        return ProxyHealth(url, True, "", _upstreams(json.loads(body)))
    except TimeoutError:
        return ProxyHealth(url, False, f"no answer within {seconds:g} s")
    except (aiohttp.ClientError, OSError) as exc:
        return ProxyHealth(url, False, f"{type(exc).__name__}: {exc}"[:200])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return ProxyHealth(url, False, f"an answer that is not a report: {exc}"[:200])


async def proxies_health(
    session: aiohttp.ClientSession, urls: list[str], token: str | None
) -> list[ProxyHealth]:
    """Every proxy at once: a dead one costs its timeout, not the sum of them."""
    return list(await asyncio.gather(*(proxy_health(session, url, token) for url in urls)))
