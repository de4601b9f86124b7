"""The LDAP group sync: each LDAP user group Wharf knows gets exactly the members the directory
lists now (Harbor never re-reads groups, so people removed from a group kept its access).

Per group (one transaction each): the directory's members (`LdapDirectory.group_members`) are
mapped to the local directory users of those names (rows without a password; people who never
signed in have none and are skipped: their first login adds them), then
`groups.replace_group_members`. A group the directory no longer has is emptied. A directory
failure (`LdapError`) changes NOTHING for that group (an outage must not strip everyone): it is
logged and counted, and the next run tries again. Each group whose members changed writes one
`user_group.sync` event (the audit log: who was added and removed) in its transaction.

The job service's leader runs it on `ldap_group_sync_schedule` and when asked (`request`: an
admin's `POST /api/v2.0/ldap/groups/sync`); the report of the last run is kept in Redis for
`GET /api/v2.0/ldap/groups/sync`. The ui and the job service meet only on these Redis keys.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.auth.ldap import LdapDirectory, LdapError
from wharf_shared.db import groups
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.errors.domain import NotFound
from wharf_shared.events import new_event, write_events
from wharf_shared.logging import get_logger
from wharf_shared.rbac import JOBSERVICE
from wharf_shared.runtime import LdapSettings

log = get_logger(__name__)

PREFIX = "wharf:ldap_group_sync"  # of its Redis keys (the job service's scheduling adds its own)
REQUEST_KEY = f"{PREFIX}:requested"  # a run asked for (its request id)
REPORT_KEY = f"{PREFIX}:report"  # the last run's report (JSON)
REPORT_TTL_SECONDS = 30 * 24 * 3600
SYNC_EVENT = "user_group.sync"
_PAGE = 500


@dataclass
class SyncReport:
    """One run: when and why, the groups read, those the directory could not answer for (left
    unchanged), and the memberships added and removed."""

    trigger: str  # "schedule" or "manual"
    started_at: str
    request_id: str = ""  # the manual request it answers
    finished_at: str = ""  # "" while it runs
    groups: int = 0
    failed: list[str] = field(default_factory=list)  # DNs of the groups left as they were
    added: int = 0
    removed: int = 0
    error: str = ""  # why the whole run could not be done (settings, database)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Report(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


# The Redis side of a sync, shared with the OIDC group sync (`wharf_shared.oidc_group_sync`),
# which passes its own keys.


async def request(redis: Redis, key: str = REQUEST_KEY) -> str:
    """Ask the job service's leader for a run now; the request id its report will carry."""
    request_id = os.urandom(8).hex()
    await redis.set(key, request_id)
    return request_id


async def take_request(redis: Redis, key: str = REQUEST_KEY) -> str | None:
    """The pending request's id (taken: one run answers it), None when there is none."""
    raw = await redis.getdel(key)
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


async def save_report(redis: Redis, report: Report, key: str = REPORT_KEY) -> None:
    await redis.set(key, json.dumps(report.as_dict()), ex=REPORT_TTL_SECONDS)


async def last_report(redis: Redis, key: str = REPORT_KEY) -> dict[str, Any] | None:
    raw = await redis.get(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def sync_event(
    group_name: str, group_id: int, group_type: groups.GroupType, *, added: list[str], removed: list[str]
) -> dict[str, Any]:
    """The audit event of a group's members changed by a sync (LDAP's or OIDC's): the usernames
    added and removed, by the job service."""
    return new_event(
        SYNC_EVENT,
        operator=JOBSERVICE.username,
        group=group_name,
        group_id=group_id,
        group_type=int(group_type),
        added=added,
        removed=removed,
    )


async def _ldap_groups(db: Database) -> list[groups.UserGroup]:
    found: list[groups.UserGroup] = []
    async with db.read() as conn:
        while True:
            page, _ = await groups.search_groups(
                conn, offset=len(found), limit=_PAGE, group_type=groups.GroupType.LDAP
            )
            found += page
            if len(page) < _PAGE:
                return found


async def _directory_users(conn: AsyncConnection, names: Sequence[str]) -> dict[int, str]:
    """Ids and names of the directory users (no local password) among `names`."""
    u = t.user_account.c
    users: dict[int, str] = {}
    for start in range(0, len(names), _PAGE):
        chunk = list(names[start : start + _PAGE])
        rows = await conn.execute(
            select(u.id, u.username).where(u.username.in_(chunk), u.password_hash.is_(None))
        )
        users.update((int(row[0]), str(row[1])) for row in rows)
    return users


async def _names(conn: AsyncConnection, user_ids: Sequence[int]) -> list[str]:
    if not user_ids:
        return []
    u = t.user_account.c
    rows = await conn.execute(select(u.username).where(u.id.in_(list(user_ids))).order_by(u.username))
    return [str(row[0]) for row in rows]


async def sync_group(
    db: Database, directory: LdapDirectory, config: LdapSettings, group: groups.UserGroup
) -> tuple[int, int]:
    """One group made as the directory lists it: (added, removed). LdapError: nothing changed."""
    dn = group.ldap_group_dn or ""
    members = await directory.group_members(config, dn)  # [] when the group is gone: emptied
    names = sorted({member.username for member in members if member.username})

    async def go(conn: AsyncConnection) -> tuple[int, int]:
        wanted = await _directory_users(conn, names)
        before = set(await groups.members_of(conn, group.id))
        try:
            await groups.replace_group_members(conn, group.id, list(wanted))
        except NotFound:
            return 0, 0  # deleted meanwhile
        added = sorted(set(wanted) - before)
        removed = sorted(before - set(wanted))
        if added or removed:
            event = sync_event(
                group.group_name,
                group.id,
                group.group_type,
                added=[wanted[i] for i in added],
                removed=await _names(conn, removed),
            )
            await write_events(conn, [event])
        return len(added), len(removed)

    return await db.run(go)


async def sync_ldap_groups(
    db: Database,
    directory: LdapDirectory,
    config: LdapSettings,
    *,
    trigger: str,
    request_id: str = "",
    now: Callable[[], dt.datetime],
) -> SyncReport:
    """Every LDAP group synced from the directory (see the module's docstring)."""
    report = SyncReport(trigger=trigger, started_at=now().isoformat(), request_id=request_id)
    found = await _ldap_groups(db)
    report.groups = len(found)
    for group in found:
        try:
            added, removed = await sync_group(db, directory, config, group)
        except LdapError as exc:
            report.failed.append(group.ldap_group_dn or "")
            log.warning("ldap_group_sync_failed", group=group.ldap_group_dn, error=str(exc))
            continue
        report.added += added
        report.removed += removed
        if added or removed:
            log.info("ldap_group_synced", group=group.ldap_group_dn, added=added, removed=removed)
    report.finished_at = now().isoformat()
    return report
